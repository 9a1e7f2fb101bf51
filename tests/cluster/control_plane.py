# SPDX-License-Identifier: Apache-2.0
"""Bring a loopback Kubernetes up (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok), fill it with simulated nodes, and take it down again.

Everything a cluster owns lives in its state directory::

    state.json          PIDs, ports, binaries, profile (what ``down`` and ``status`` read)
    kubeconfig          admin (system:masters) kubeconfig; also *.kubeconfig per component
    pki/                CA, serving and client certificates, service-account key pair
    etcd/               etcd's data
    logs/<process>.log  each process's output
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.cluster import build, components, machine, pki, processes, versions
from tests.cluster import profile as profile_mod
from tests.cluster.profile import Profile
from tests.loopback import free_port

ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
"""Start order; ``down`` stops in reverse."""


class ClusterError(RuntimeError):
    """The cluster could not be brought up or reached; the message names the logs to read."""


def default_dir(name: str = "default") -> Path:
    return build.cache_root() / "cluster" / name


@dataclasses.dataclass(frozen=True)
class State:
    """What ``up`` recorded: enough for ``down``/``status`` from another process."""

    directory: Path
    pids: dict[str, int]
    binaries: dict[str, str]
    ports: dict[str, int]
    profile: Profile

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    def log(self, process: str) -> Path:
        return self.directory / "logs" / f"{process}.log"

    def save(self) -> None:
        data = {
            "pids": self.pids,
            "binaries": self.binaries,
            "ports": self.ports,
            "profile": json.loads(self.profile.to_json()),
        }
        (self.directory / "state.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, directory: Path) -> State | None:
        path = directory / "state.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(
            directory=directory,
            pids={k: int(v) for k, v in data["pids"].items()},
            binaries=data["binaries"],
            ports={k: int(v) for k, v in data["ports"].items()},
            profile=Profile.from_json(json.dumps(data["profile"])),
        )

    def alive(self) -> dict[str, bool]:
        return {
            name: processes.is_ours(pid, self.binaries[name]) for name, pid in self.pids.items()
        }


def _ssl_context(directory: Path, *, verify: bool = True) -> ssl.SSLContext:
    p = directory / "pki"
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=str(p / "ca.crt"))
    context.load_cert_chain(str(p / "admin.crt"), str(p / "admin.key"))
    return context


def _get(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def healthy(state: State) -> bool:
    """Whether the API server answers ``/readyz`` with ``ok``."""
    status, body = _get(f"{state.server}/readyz", _ssl_context(state.directory))
    return status == 200 and body.strip() == b"ok"


def _wait(state: State, what: str, check: Any, timeout: float, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [name for name, ok in state.alive().items() if not ok]
        if dead:
            exited = ", ".join(dead)
            raise ClusterError(_failure(state, f"{exited} exited while waiting for {what}"))
        if check():
            return
        time.sleep(interval)
    raise ClusterError(_failure(state, f"timed out after {timeout:.0f} s waiting for {what}"))


def _failure(state: State, message: str) -> str:
    logs = "\n".join(f"  {state.log(name)}" for name in state.pids)
    return f"{message}; process logs:\n{logs}"


def kubectl(state: State, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [state.binaries["kubectl"], f"--kubeconfig={state.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ready_nodes(state: State) -> int:
    """How many nodes report Ready (read straight from the API: cheaper than kubectl at 1000)."""
    status, body = _get(f"{state.server}/api/v1/nodes", _ssl_context(state.directory))
    if status != 200:
        return 0
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node["status"].get("conditions", [])
        )
        for node in json.loads(body)["items"]
    )


def _apply_cluster_objects(state: State) -> None:
    """What a real accelerator cluster has besides its nodes: the GPU operator's RuntimeClass."""
    runtime_class = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    }
    result = kubectl(state, "apply", "-f", "-", stdin=json.dumps(runtime_class))
    if result.returncode != 0:
        raise ClusterError(f"creating RuntimeClass nvidia failed: {result.stderr.strip()}")


def _publish_devices(state: State) -> None:
    """For nodes offering devices through DRA: the DeviceClasses the drivers' charts install and
    the ResourceSlices their kubelet plugins would publish (the tooling acts as the drivers)."""
    if state.profile.dra:
        publish_devices(state, state.profile.nodes)


def publish_devices(state: State, nodes: Iterable[profile_mod.Node]) -> None:
    """Install the DRA drivers' DeviceClasses and publish the ResourceSlices of ``nodes`` (those
    of them offering devices through DRA); idempotent (server-side apply)."""
    slices = [s for s in (n.resource_slice() for n in nodes) if s is not None]
    items = [*profile_mod.DEVICE_CLASSES, *slices]
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    result = kubectl(state, "apply", "--server-side", "-f", "-", stdin=manifest)
    if result.returncode != 0:
        raise ClusterError(f"publishing DRA devices failed: {result.stderr.strip()}")


def _create_nodes(state: State, workers: int = 8) -> None:
    """POST every Node, ``workers`` keep-alive connections in parallel (kubectl would create a
    1000-node list one request at a time). The list is also written to ``nodes.json``."""
    manifest = state.profile.manifest()
    (state.directory / "nodes.json").write_text(json.dumps(manifest))
    context = _ssl_context(state.directory)
    port = state.ports["kube-apiserver"]
    items: list[dict[str, Any]] = manifest["items"]

    def post(chunk: list[dict[str, Any]]) -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)
        try:
            for node in chunk:
                connection.request(
                    "POST",
                    "/api/v1/nodes",
                    body=json.dumps(node),
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                body = response.read()
                if response.status != 201:
                    name = node["metadata"]["name"]
                    raise ClusterError(f"creating node {name} failed ({response.status}): {body!r}")
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(post, items[i::workers]) for i in range(workers)]:
            future.result()


def up(
    directory: Path,
    profile: Profile,
    *,
    tie_to_parent: bool = False,
    timeout: float = 180.0,
    phases: dict[str, float] | None = None,
) -> tuple[State, bool]:
    """Start a cluster in ``directory``, or reuse the healthy one already there.

    Returns the state and whether it was reused. ``tie_to_parent`` makes every process die with
    the calling process (for test sessions); the CLI leaves it off so the cluster outlives it.
    ``phases``, if given, receives the seconds from the start to ``api`` (``/readyz`` ok),
    ``controllers`` (scheduler and controller-manager healthy), ``created`` (nodes posted) and
    ``nodes`` (all Ready).
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    with build.locked(lock_file(directory)):
        return _up(directory, profile, tie_to_parent, timeout, {} if phases is None else phases)


def _up(
    directory: Path,
    profile: Profile,
    tie_to_parent: bool,
    timeout: float,
    marks: dict[str, float],
) -> tuple[State, bool]:
    started = time.monotonic()
    previous = State.load(directory)
    if previous is not None:
        if all(previous.alive().values()) and healthy(previous):
            return previous, True
        down(directory)
    build.ensure_built(versions.CONTROL_PLANE)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    advertise = machine.host_address()
    pki.generate(directory / "pki", advertise_address=advertise)
    ports = {name: free_port() for name in ("etcd-peer", *ORDER) if name != "kwok"}
    binaries = {name: str(build.binary_path(name)) for name in (*ORDER, "kubectl", "helm")}
    state = State(directory=directory, pids={}, binaries=binaries, ports=ports, profile=profile)
    server = state.server
    (directory / "kwok.yaml").write_text(json.dumps(components.KWOK_CONFIGURATION))
    for user in ("admin", "kube-controller-manager", "kube-scheduler"):
        target = state.kubeconfig if user == "admin" else directory / f"{user}.kubeconfig"
        components.write_kubeconfig(target, server=server, pki_dir=directory / "pki", user=user)
    plain = ssl.create_default_context()
    try:
        for name in ORDER:
            argv = components.argv(name, binaries[name], directory, ports, advertise=advertise)
            state.pids[name] = processes.start(
                argv, log=state.log(name), tie_to_parent=tie_to_parent
            )
            state.save()
            if name == "etcd":
                etcd = f"http://127.0.0.1:{ports['etcd']}/health"
                _wait(state, "etcd /health", lambda u=etcd: _get(u, plain)[0] == 200, timeout)
            if name == "kube-apiserver":
                _wait(state, "the API server's /readyz", lambda: healthy(state), timeout)
                marks["api"] = time.monotonic() - started
        context = _ssl_context(directory, verify=False)
        for name in ("kube-controller-manager", "kube-scheduler"):
            url = f"https://127.0.0.1:{ports[name]}/healthz"
            _wait(state, f"{name} /healthz", lambda u=url: _get(u, context)[0] == 200, timeout)
        marks["controllers"] = time.monotonic() - started
        _apply_cluster_objects(state)
        _create_nodes(state)
        _publish_devices(state)
        marks["created"] = time.monotonic() - started
        _wait(
            state,
            f"{profile.total} nodes Ready",
            lambda: _ready_nodes(state) >= profile.total,
            timeout,
            # Listing 1000 nodes costs the API server real CPU: poll less often at scale.
            interval=max(0.5, profile.total / 400),
        )
        marks["nodes"] = time.monotonic() - started
    except BaseException:
        down(directory)
        raise
    return state, False


def lock_file(directory: Path) -> Path:
    """The lock that serialises ``up`` on one state directory (kept beside it)."""
    return directory.with_name(f".{directory.name}.lock")


def down(directory: Path) -> bool:
    """Stop every process ``up`` recorded in ``directory``; returns whether there was a state."""
    # The real node goes first (its kubelet and kube-proxy talk to this API server); imported
    # here because the node builds on this module.
    from tests.cluster import node

    node.down(directory)
    state = State.load(directory)
    if state is None:
        return False
    for name in reversed(ORDER):
        pid = state.pids.get(name)
        if pid is not None:
            processes.stop(pid, state.binaries[name])
    with contextlib.suppress(FileNotFoundError):
        (directory / "state.json").unlink()
    shutil.rmtree(directory / "etcd", ignore_errors=True)
    return True


def memory_kib(state: State) -> dict[str, int]:
    """Resident memory of each control-plane process, in KiB."""
    return {name: processes.rss_kib(pid) for name, pid in state.pids.items()}


def environment(state: State) -> dict[str, str]:
    """``os.environ`` with KUBECONFIG set and the cluster's binaries first on PATH."""
    binary_dirs = list(dict.fromkeys(str(Path(b).parent) for b in state.binaries.values()))
    env = dict(os.environ)
    env["KUBECONFIG"] = str(state.kubeconfig)
    env["PATH"] = os.pathsep.join([*binary_dirs, env.get("PATH", "")])
    return env
