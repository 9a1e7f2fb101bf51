# SPDX-License-Identifier: Apache-2.0
"""The serving composition root: resolve what to serve, start the HTTP server, load, shut down.

Two entry points, both blocking until SIGINT or SIGTERM, then draining: ready answers 503 at
once, the server keeps accepting and answering for ``drain_s`` (each answer closing its
connection, so that clients reconnect to pods the Service still routes to), then stops
accepting, finishes every request begun (cutting stalled ones), and returns:

* ``serve(path=..., **options)``: what ``inferplane serve`` calls; PATH is a model file or an
  artifact directory.
* ``run(model, settings)``: for callers that resolved the model themselves (``inferplane run``);
  ``model`` is a ``ServedModel``, or use ``resolve(...)`` to get one from a path.

The socket listens before the model loads, so ``/v2/health/ready`` answers 503 until the backend
is loaded and warmed up; a load failure stops the server and raises (one line, no traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.manifest import MANIFEST_NAME, ArtifactManifest
from inferplane.devices import BACKEND_FOR_FORMAT, ArtifactFormat, BackendName, DeviceClass
from inferplane.serving import compiled
from inferplane.serving.app import App
from inferplane.serving.backends.base import Backend, ModelFiles
from inferplane.serving.dataplane import BatchSettings, DataPlane
from inferplane.serving.http import HttpServer
from inferplane.serving.limits import HttpLimits

log = logging.getLogger("inferplane.serving")

SUFFIXES: dict[str, ArtifactFormat] = {
    ".onnx": ArtifactFormat.ONNX,
    ".mindir": ArtifactFormat.MINDIR,
    ".ckpt": ArtifactFormat.MINDSPORE_CHECKPOINT,
    ".plan": ArtifactFormat.TENSORRT,
    ".engine": ArtifactFormat.TENSORRT,
    ".om": ArtifactFormat.OM,
    ".ms": ArtifactFormat.MS,
}

_BACKENDS: dict[BackendName, tuple[str, str, frozenset[ArtifactFormat]]] = {
    BackendName.ONNXRUNTIME: (
        "onnxruntime",
        "OnnxRuntimeBackend",
        frozenset({ArtifactFormat.ONNX}),
    ),
    BackendName.MINDSPORE: (
        "mindspore",
        "MindSporeBackend",
        frozenset({ArtifactFormat.MINDIR, ArtifactFormat.MINDSPORE_CHECKPOINT}),
    ),
    BackendName.TENSORRT: ("tensorrt", "TensorRTBackend", frozenset({ArtifactFormat.TENSORRT})),
    BackendName.ACL: ("acl", "AclBackend", frozenset({ArtifactFormat.OM})),
    BackendName.MSLITE: ("mslite", "MindSporeLiteBackend", frozenset({ArtifactFormat.MS})),
}
"""Backend -> (module under serving.backends, class, formats it serves)."""


@dataclass(frozen=True)
class ServedModel:
    """A resolved model: its name, the backend to run it and the files that backend loads."""

    name: str
    backend: BackendName
    files: ModelFiles


DRAIN_S = 5.0
"""Default drain: long enough for endpoint controllers and kube-proxy to stop routing to a
terminating pod (usually one to a few seconds)."""

GRACEFUL_TIMEOUT_S = 20.0
"""Default wait for requests begun; drain + this stays inside Kubernetes' default 30 s grace."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    batching: BatchSettings = field(default_factory=BatchSettings)
    http: HttpLimits = field(default_factory=HttpLimits)
    log_level: str = "warning"
    drain_s: float = DRAIN_S
    """After SIGTERM: how long ready answers 503 while the server still accepts and answers."""
    graceful_timeout_s: float = GRACEFUL_TIMEOUT_S
    """Then: how long shutdown waits for the requests begun to finish."""


def create_backend(model: ServedModel) -> Backend:
    """The backend object for a model (its runtime is imported only by ``load``)."""
    module_name, class_name, _ = _BACKENDS[model.backend]
    module = importlib.import_module(f"inferplane.serving.backends.{module_name}")
    backend: Backend = getattr(module, class_name)(model.files)
    return backend


def resolve(
    path: str | Path,
    *,
    name: str | None = None,
    backend: str = "auto",
    device: str | None = None,
    network: str | None = None,
    inputs: Sequence[str] = (),
) -> ServedModel:
    """Work out what to serve from a model file or an artifact directory (no runtime needed)."""
    path = Path(path)
    specs = [TensorSpec.parse(text) for text in inputs]
    outputs: list[TensorSpec] = []
    if path.is_dir():
        if not (path / MANIFEST_NAME).is_file():
            raise errors.SpecError(f"{path}: a directory to serve needs its {MANIFEST_NAME}")
        manifest = ArtifactManifest.read(path)
        entry = path / manifest.entrypoint
        fmt = manifest.target.format
        name = name or manifest.model
        device = device or manifest.target.device_class.value
        specs = specs or list(manifest.inputs)
        outputs = list(manifest.outputs)
        network = network or manifest.source.network
    elif path.is_file():
        entry = path
        try:
            fmt = SUFFIXES[path.suffix.lower()]
        except KeyError:
            known = ", ".join(SUFFIXES)
            raise errors.SpecError(
                f"{path}: unknown model file type '{path.suffix}' (one of {known})"
            ) from None
        name = name or path.stem
    else:
        raise errors.SpecError(f"{path}: no such model file or artifact directory")
    chosen = BACKEND_FOR_FORMAT[fmt] if backend == "auto" else BackendName(backend)
    if fmt not in _BACKENDS[chosen][2]:
        raise errors.SpecError(f"backend '{chosen}' cannot serve a {fmt} model ({path})")
    if fmt is ArtifactFormat.MINDSPORE_CHECKPOINT and not network:
        raise errors.SpecError(f"{path}: a checkpoint needs --network module:callable and --input")
    files = ModelFiles(
        path=entry,
        device=DeviceClass(device or "cpu"),
        network=network,
        inputs=specs,
        outputs=outputs,
    )
    return ServedModel(name=name, backend=chosen, files=files)


def serve(
    *,
    path: str,
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    backend: str = "auto",
    device: str | None = None,
    network: str | None = None,
    inputs: Sequence[str] = (),
    max_batch_size: int | None = None,
    max_queue_delay_ms: float = 0.0,
    max_queue: int = 1024,
    max_queue_bytes: int = 256 << 20,
    max_request_bytes: int = HttpLimits.max_body_bytes,
    idle_timeout_s: float = HttpLimits.idle_timeout_s,
    head_timeout_s: float = HttpLimits.head_timeout_s,
    body_timeout_s: float = HttpLimits.body_timeout_s,
    max_connections: int = HttpLimits.max_connections,
    drain_s: float = DRAIN_S,
    graceful_timeout_s: float = GRACEFUL_TIMEOUT_S,
    log_level: str = "warning",
) -> None:
    """``inferplane serve``: resolve PATH, then serve it until SIGINT/SIGTERM.

    ``max_batch_size`` None: opportunistic batching up to ``BatchSettings``' default rows, a
    larger request running alone; given: a hard limit, a larger request is refused.
    """
    model = resolve(path, name=name, backend=backend, device=device, network=network, inputs=inputs)
    settings = ServerSettings(
        host=host,
        port=port,
        batching=BatchSettings(
            max_batch_size=max_batch_size or BatchSettings().max_batch_size,
            max_queue_delay_s=max_queue_delay_ms / 1000.0,
            max_queue=max_queue,
            max_queue_bytes=max_queue_bytes,
            refuse_larger=max_batch_size is not None,
        ),
        http=HttpLimits(
            max_body_bytes=max_request_bytes,
            idle_timeout_s=idle_timeout_s,
            head_timeout_s=head_timeout_s,
            body_timeout_s=body_timeout_s,
            max_connections=max_connections,
        ),
        drain_s=drain_s,
        graceful_timeout_s=graceful_timeout_s,
        log_level=log_level,
    )
    run(model, settings)


def run(
    model: ServedModel | Backend,
    settings: ServerSettings,
    *,
    name: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. ``model`` may be an already loaded Backend (then give ``name``).

    ``on_ready`` gets the base URL once the model answers ready (default: one line on stderr).
    """
    logging.basicConfig(level=settings.log_level.upper(), format="inferplane: %(message)s")
    try:
        import uvloop

        uvloop.run(_main(model, settings, name, on_ready))
    except ImportError:  # uvloop is not on every platform; asyncio works, slower
        asyncio.run(_main(model, settings, name, on_ready))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise errors.SpecError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _load(model: ServedModel | Backend, plane: DataPlane) -> Backend:
    if isinstance(model, ServedModel):
        backend = create_backend(model)
        backend.load()
    else:
        backend = model
    plane.warm_up(backend)
    return backend


def _load_in_thread(model: ServedModel | Backend, plane: DataPlane) -> asyncio.Future[Backend]:
    """Load on a thread while the server answers (live: 200, ready: 503)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Backend] = loop.create_future()

    def settle(result: Backend | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: Backend | None = None
        error: BaseException | None = None
        try:
            result = _load(model, plane)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="inferplane-load", daemon=True).start()
    return future


async def _main(
    model: ServedModel | Backend,
    settings: ServerSettings,
    name: str | None,
    on_ready: Callable[[str], None] | None,
) -> None:
    if isinstance(model, ServedModel):
        served_name = model.name
    elif name:
        served_name = name
    else:
        raise errors.SpecError("serving a loaded backend needs a model name")
    plane = DataPlane(served_name, settings=settings.batching)
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    _fit_open_files(settings.http.max_connections)
    http = HttpServer(App(plane, max_request_bytes=settings.http.max_body_bytes), settings.http)
    await http.start(sock)
    with _stop_on_signals(http) as stopping:
        try:
            started = time.perf_counter()
            loading = _load_in_thread(model, plane)
            waiting: set[asyncio.Future[Any]] = {loading, stopping}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not loading.done():
                # A signal stopped the server while the model was loading: let the load finish
                # (a runtime interrupted half-way through its import can abort the interpreter
                # at exit), then release it, never answering ready.
                await http.shutdown(settings.graceful_timeout_s)
                with contextlib.suppress(Exception):
                    (await loading).close()
                return
            backend = loading.result()
            plane.attach(backend, load_seconds=time.perf_counter() - started)
        except BaseException:
            await http.shutdown(settings.graceful_timeout_s)
            await plane.close()
            raise
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        if on_ready is None:
            batching = (
                f"batching up to {settings.batching.max_batch_size} rows"
                if plane.batchable
                else "batching off"
            )
            path = "compiled request path" if compiled() else "request path in Python"
            print(
                f"inferplane: model '{served_name}' ready at {url} "
                f"({backend.platform}, {batching}, {path})",
                file=sys.stderr,
                flush=True,
            )
        else:
            on_ready(url)
        try:
            await stopping
            plane.draining = True
            await http.drain(settings.drain_s)
            await http.shutdown(settings.graceful_timeout_s)
        finally:
            await plane.close()


def _fit_open_files(connections: int) -> None:
    """Raise the soft open-files limit to fit ``connections`` (and the server's own files), as
    far as the hard limit allows; below it, accepting would fail with EMFILE instead of 503."""
    wanted = connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning(
                "open files limited to %d: fewer than --max-connections %d", target, connections
            )


@contextlib.contextmanager
def _stop_on_signals(http: HttpServer) -> Generator[asyncio.Future[None], None, None]:
    """A future set by SIGINT or SIGTERM (graceful stop); a second signal aborts what is left.

    Only the main thread can take signals: elsewhere the future is never set by one.
    """
    loop = asyncio.get_running_loop()
    stopping: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if stopping.done():
            http.abort()
        else:
            stopping.set_result(None)

    signals = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
    try:
        yield stopping
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                loop.remove_signal_handler(sig)
