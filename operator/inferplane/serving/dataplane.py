# SPDX-License-Identifier: Apache-2.0
"""The transport-free core: health, metadata and inference over one backend.

The HTTP layer hands it bytes and gets bytes back; every client mistake is a ``ProtocolError``.
Metadata answers are serialized once, when the model is attached.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final

import numpy as np

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.serving import codecs, protocol
from inferplane.serving.backends.base import Backend
from inferplane.serving.batching import Batcher, Outcome, batch_key, concatenate
from inferplane.serving.metrics import Metrics

INLINE_BELOW_S: Final = 0.0002
"""Models whose warm-up run is faster than this run on the event loop thread itself."""


Reply = tuple[bytes, int | None]
"""A response body, and its JSON header's length when binary outputs follow it."""

_Layout = tuple[int, protocol.InferRequest, int, tuple[Any, ...]]
"""A cached layout: the body's length, the request template, its rows and batch key."""

Answer = Callable[[list[Any], "list[Reply | errors.InferplaneError]"], None]
"""Where replies go: requests' tokens (given to ``infer``) and each one's reply or error, a
batch at a time; every request is answered exactly once."""

LAYOUT_CACHE: Final = 256
"""Distinct binary request headers remembered (parsed and validated) before starting over."""

LAYOUT_CACHE_BYTES: Final = 256 << 10
"""The layout cache's byte budget (its keys, the JSON headers, summed): past it, it starts over."""

LAYOUT_HEADER_MAX: Final = 4096
"""Only JSON headers up to this size are cached: a layout is names, datatypes, shapes and
sizes; a larger header carries request data, which the cache must not keep."""


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 32
    """Rows merged into one backend call (1: batching off). On by default, opportunistically
    (no delay): a backend call then takes whatever queued while the previous one ran."""
    max_queue_delay_s: float = 0.0
    """How long the oldest request may wait for more rows (0: never wait, so c=1 latency does
    not grow)."""
    refuse_larger: bool = True
    """A request of more than ``max_batch_size`` rows is refused (400); False: it runs alone,
    unmerged (``inferplane serve`` without ``--max-batch-size``)."""
    max_queue: int = 1024
    """Requests waiting beyond this get 503 with Retry-After."""
    max_queue_bytes: int = 256 << 20
    """Bytes of request bodies waiting beyond this get 503 with Retry-After (one request is
    always admitted to an empty queue)."""


class DataPlane:
    def __init__(self, name: str, *, version: str = "1", settings: BatchSettings) -> None:
        self.name = name
        self.answer: Answer = _unanswered
        """Where replies go: set once by the transport that serves this plane."""
        self.version = version
        self.settings = settings
        self.metrics = Metrics(name)
        self.server_metadata = protocol.server_metadata()
        self.model_metadata = b""
        self.backend: Backend | None = None
        self.batchable = False
        self.shared_batch = False
        """Every input's first dimension is the same batch dimension (the model refuses inputs
        that disagree on it): a request's inputs must agree on their rows."""
        self.draining = False
        """The server is shutting down: ready answers 503 so that endpoints move away."""
        self.inline = True
        self._batcher: Batcher | None = None
        self._signature: dict[str, tuple[str, tuple[int, ...]]] = {}
        """Each input's V2 datatype and shape (a tuple, compared with arrays' shapes)."""
        self._outputs: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._layouts: dict[bytes, _Layout] = {}
        """Binary requests by JSON header: a client sends the same header again and again.
        Only headers that are pure layout (no id, no parameters, small) are kept."""
        self._layout_bytes = 0
        self._last: tuple[bytes, _Layout] | None = None
        """The JSON header last found in ``_layouts``, with its entry: a client that repeats
        its layout matches it by comparing bytes in place, with no slice and no hash."""

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.draining

    def warm_up(self, backend: Backend) -> None:
        """Run the loaded model once (and twice more to time it), and probe batching.

        Blocking and possibly slow (MindSpore compiles a graph per new shape): call it from a
        worker thread, then ``attach`` on the event loop.
        """
        inputs = backend.inputs
        sample = {s.name: _zeros(s, 1) for s in inputs}
        backend.infer(sample)
        self.inline = _fastest_run(lambda: backend.infer(sample)) < INLINE_BELOW_S
        dynamic = all(s.dynamic_batch for s in inputs)
        self.shared_batch = dynamic and (len(inputs) == 1 or _refuses_disagreeing_rows(backend))
        self.batchable = (
            self.settings.max_batch_size > 1 and self.shared_batch and _splits_rows(backend, inputs)
        )

    def attach(self, backend: Backend, *, load_seconds: float) -> None:
        """Make a loaded, warmed-up backend live (on the event loop: it starts the batcher)."""
        inputs = backend.inputs
        self._signature = {s.name: (s.datatype.value, tuple(s.shape)) for s in inputs}
        self._outputs = {s.name for s in backend.outputs}
        self.model_metadata = protocol.model_metadata(
            self.name, self.version, backend.platform, inputs, backend.outputs
        )
        self.metrics.load_seconds = load_seconds
        if not self.inline:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="inferplane-backend")
        if self.batchable or not self.inline:
            self._batcher = Batcher(
                backend.infer,
                self._deliver,
                max_batch_size=self.settings.max_batch_size if self.batchable else 1,
                max_delay_s=self.settings.max_queue_delay_s if self.batchable else 0.0,
                max_queue=self.settings.max_queue,
                max_queue_bytes=self.settings.max_queue_bytes,
                metrics=self.metrics,
                executor=self._executor,
                merge=_merge,
            )
        self.backend = backend

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def check_model(self, name: str, version: str | None) -> None:
        if name != self.name:
            raise errors.ModelNotFound(f"unknown model '{name}'")
        if version is not None and version != self.version:
            raise errors.ModelNotFound(f"model '{name}' has no version '{version}'")

    def metadata(self) -> bytes:
        if self.backend is None:
            raise errors.Unavailable(f"model '{self.name}' is loading")
        return self.model_metadata

    def infer(self, body: bytes, header_length: int | None, token: Any) -> None:
        """Answer one request: ``answer(token, ...)`` gets the response body (and its JSON
        header's length when binary outputs follow it) or the error, now or once its batch
        has run.

        A client mistake found while decoding raises here, before anything is queued.
        """
        backend = self.backend
        if backend is None:
            raise errors.Unavailable(f"model '{self.name}' is loading")
        cached = None
        if header_length is not None:
            last = self._last
            if last is not None and len(last[0]) == header_length and body.startswith(last[0]):
                cached = last[1]
            else:
                header = body[:header_length]
                cached = self._layouts.get(header)
                if cached is not None:
                    self._last = (header, cached)
        if cached is not None and cached[0] == len(body):  # the common case
            _, request, rows, key = cached
            if self._batcher is not None:
                self._batcher.submit((request, body), rows, key, (request, token), len(body))
                return
            inputs = protocol.from_layout(request, body)
        else:
            request, inputs, rows, key = self._decode(body, header_length)
            if self._batcher is not None:
                self._batcher.submit((request, None), rows, key, (request, token), len(body))
                return
        started = perf_counter()
        try:
            outputs = backend.infer(inputs)
        except errors.InferplaneError as exc:
            self.answer([token], [exc])
            return
        self.metrics.compute_seconds.observe(perf_counter() - started)
        self.metrics.batch_size.observe(rows)
        self.answer([token], [self._encode(request, outputs)])

    def _deliver(
        self, pairs: list[tuple[protocol.InferRequest, Any]], rows: list[int], outcome: Outcome
    ) -> None:
        """A batch's outputs (or its error), encoded per request and answered; the batcher calls
        it with each request's (request, token) pair and rows."""
        if len(pairs) == 1:  # the common case at low concurrency: no lists to build
            ((request, token),) = pairs
            reply = (
                outcome
                if isinstance(outcome, errors.InferplaneError)
                else self._encode(request, outcome)
            )
            self.answer([token], [reply])
            return
        replies: list[Reply | errors.InferplaneError]
        if isinstance(outcome, errors.InferplaneError):
            replies = [outcome] * len(pairs)
        else:
            requests = [p[0] for p in pairs]
            replies = protocol.encode_batch(self.name, self.version, requests, rows, outcome)
        self.answer([p[1] for p in pairs], replies)

    def _encode(
        self, request: protocol.InferRequest, outputs: dict[str, np.ndarray]
    ) -> Reply | errors.InferplaneError:
        try:
            return protocol.encode_response(self.name, self.version, request, outputs)
        except errors.InferplaneError as exc:
            return exc

    def _decode(
        self, body: bytes, header_length: int | None
    ) -> tuple[protocol.InferRequest, dict[str, np.ndarray], int, tuple[Any, ...]]:
        """Parse and validate a request whose layout is not cached (caching it when it may be):
        the request, its inputs, rows and batch key."""
        request = protocol.parse_request(body, header_length)
        rows = self._validate(request)
        if request.outputs is not None:
            for name, _ in request.outputs:
                if name not in self._outputs:
                    raise errors.ProtocolError(f"unknown output '{name}'")
        key = batch_key(request.inputs)
        if _is_layout(request, header_length):
            if (
                len(self._layouts) >= LAYOUT_CACHE
                or self._layout_bytes + header_length > LAYOUT_CACHE_BYTES  # type: ignore[operator]
            ):
                self._layouts.clear()
                self._layout_bytes = 0
                self._last = None
            request.response_headers = {}
            template = request.template()
            self._layouts[body[:header_length]] = (len(body), template, rows, key)
            self._layout_bytes += header_length  # type: ignore[operator]
        return request, request.inputs, rows, key

    def _validate(self, request: protocol.InferRequest) -> int:
        """Check inputs against the signature; return the request's rows (batch dimension)."""
        signature = self._signature
        rows = -1
        first = ""
        for name, array in request.inputs.items():
            wanted = signature.get(name)
            if wanted is None:
                raise errors.ProtocolError(
                    f"unknown input '{name}' (the model takes {', '.join(signature)})"
                )
            datatype, model_shape = wanted
            got = codecs.DATATYPE_OF.get(array.dtype)
            if got != datatype:
                raise errors.ProtocolError(
                    f"input '{name}': datatype {got}, the model takes {datatype}"
                )
            shape = array.shape
            if not _fits(shape, model_shape):
                raise errors.ProtocolError(
                    f"input '{name}': shape {list(shape)} does not match the model's "
                    f"{list(model_shape)}"
                )
            if rows == -1:
                rows, first = (shape[0] if shape else 1), name
            elif self.shared_batch and shape[0] != rows:
                raise errors.ProtocolError(
                    f"inputs '{first}' ({rows} rows) and '{name}' ({shape[0]} rows) disagree "
                    "on the batch dimension (the first), which the model's inputs share"
                )
        if len(request.inputs) != len(signature):
            missing = [n for n in signature if n not in request.inputs]
            raise errors.ProtocolError(f"missing input '{', '.join(missing)}'")
        if self.batchable and self.settings.refuse_larger and rows > self.settings.max_batch_size:
            raise errors.ProtocolError(
                f"batch of {rows} rows is over the server's max batch size "
                f"{self.settings.max_batch_size}"
            )
        return rows


def _merge(payloads: list[tuple[protocol.InferRequest, bytes | None]]) -> dict[str, np.ndarray]:
    """The batcher's ``Merge``: a payload is a decoded request and None, or the template of a
    cached layout and a body (its inputs at the template's places). Bodies of one layout merge
    by joining their bytes, one array per input, without an array per request."""
    first, body = payloads[0]
    if len(payloads) == 1:
        return first.inputs if body is None else protocol.from_layout(first, body)
    if body is not None and all(r is first and b is not None for r, b in payloads):
        bodies = [b for _, b in payloads if b is not None]
        inputs = {}
        for name, dtype, shape, offset in first.layout or ():
            end = offset + dtype.itemsize * math.prod(shape)
            data = b"".join([b[offset:end] for b in bodies])
            inputs[name] = np.frombuffer(data, dtype).reshape((shape[0] * len(bodies), *shape[1:]))
        return inputs
    return concatenate([r.inputs if b is None else protocol.from_layout(r, b) for r, b in payloads])


def _unanswered(tokens: list[Any], replies: list[Reply | errors.InferplaneError]) -> None:
    raise RuntimeError("DataPlane.answer was not set")


def _fits(shape: tuple[int, ...], model: tuple[int, ...]) -> bool:
    """Whether a shape matches the model's (-1: any size). Tuples compare in C, so the common
    case (only the first dimension dynamic) costs one comparison and no generator."""
    if len(shape) != len(model):
        return False
    if shape[1:] == model[1:]:
        return model[0] in (-1, shape[0]) if model else True
    return all(s == -1 or d == s for d, s in zip(shape, model, strict=True))


def _fastest_run(run: Callable[[], object], *, runs: int = 20, budget_s: float = 0.05) -> float:
    """The fastest of up to ``runs`` calls (within ``budget_s``): robust on a busy machine."""
    best = float("inf")
    deadline = perf_counter() + budget_s
    for _ in range(runs):
        started = perf_counter()
        run()
        best = min(best, perf_counter() - started)
        if started > deadline:
            break
    return best


def _zeros(spec: TensorSpec, rows: int) -> np.ndarray:
    shape = [
        rows if d == -1 and i == 0 else (1 if d == -1 else d) for i, d in enumerate(spec.shape)
    ]
    if spec.datatype.value == "BYTES":
        array = np.empty(shape, dtype=object)
        array.fill(b"")
        return array
    return np.zeros(shape, codecs.DTYPES[spec.datatype.value])


def _is_layout(request: protocol.InferRequest, header_length: int | None) -> bool:
    """Whether a binary request's JSON header is pure layout, and so may key the layout cache:
    no id and no parameters (request data the cache must never keep), and small."""
    return (
        request.layout is not None
        and header_length is not None
        and header_length <= LAYOUT_HEADER_MAX
        and request.id is None
        and (not request.parameters or request.parameters.keys() <= _LAYOUT_PARAMETERS)
    )


_LAYOUT_PARAMETERS: Final = {"binary_data_output"}
"""Request parameters that are part of a layout (they choose the answer's form)."""


def _refuses_disagreeing_rows(backend: Backend) -> bool:
    """Whether the model refuses inputs whose first dimensions differ (2 rows, then 3 rows):
    then its inputs share one batch dimension. A model that takes them has independent first
    dimensions (``a: [n, 2]``, ``b: [m, 2]``), and merging requests would mix their rows."""
    inputs = backend.inputs
    probe = {s.name: _zeros(s, 2 if i == 0 else 3) for i, s in enumerate(inputs)}
    try:
        backend.infer(probe)
    except Exception:  # the runtime's own error: the dimensions are tied
        return True
    return False


def _splits_rows(backend: Backend, inputs: list[TensorSpec]) -> bool:
    """Batching is safe only if every output's first dimension follows the rows given."""
    two = backend.infer({s.name: _zeros(s, 2) for s in inputs})
    return all(a.ndim > 0 and a.shape[0] == 2 for a in two.values())
