# SPDX-License-Identifier: Apache-2.0
"""A real kubelet node beside the kwok nodes: containerd (Debian) + runc + the CNI bridge,
kubelet and kube-proxy built from the control plane's go.mod, CoreDNS for the cluster domain and
metrics-server for the HPA, all as host processes of this machine.

    node = real_node.up(cluster_state)          # NodeUnavailable says why, when it cannot run
    real_node.load_images(node, [archive, ...]) # OCI archives into containerd (k8s.io namespace)
    real_node.down(cluster_state.directory)     # and the machine is as up found it
    real_node.leftovers(...)                    # what would prove otherwise

Everything lives under ``<cluster dir>/node`` (``node.json``, ``logs/``, containerd's root and
state, the kubelet's root, CNI state). One node per machine: ``machine.LOCK``, held by
containerd's process for as long as the node runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tests.cluster import build, components, control_plane, machine, pause, pki, processes, versions
from tests.cluster import node_config as config
from tests.loopback import free_port

ORDER = ("containerd", "coredns", "kubelet", "kube-proxy", "metrics-server")
"""Start order (kube-proxy reports healthy once its Node exists); ``down`` stops the kubelet
first and tears the pods down before the rest."""
CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
CONTAINER_LOGS = Path("/var/log/containers")
"""Where the kubelet links container logs (a fixed path, not under its root)."""
SHIM_DIR = Path("/run/containerd")
"""Where containerd 1.6's shims put their sockets (a fixed path, not under its state)."""
NETNS_DIR = Path("/run/netns")
"""Where containerd's CRI plugin mounts the pods' network namespaces."""
FIXED_PATHS = (CONTAINER_LOGS, SHIM_DIR, NETNS_DIR)
"""Folders outside the node's own that its parts create: removed when empty and new."""


class NodeUnavailable(RuntimeError):
    """This machine cannot run a real node (not root, no address, ...): tests skip with it."""


@dataclasses.dataclass
class NodeState:
    """What ``up`` recorded: enough for ``down`` from another process, and for ``leftovers``."""

    cluster_dir: Path
    address: str
    pids: dict[str, int] = dataclasses.field(default_factory=dict)
    binaries: dict[str, str] = dataclasses.field(default_factory=dict)
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    sysctls: dict[str, str] = dataclasses.field(default_factory=dict)
    """Kernel settings before ``up``: restored by ``down``."""
    ruleset: str = ""
    """``nft list ruleset`` before ``up``."""
    existed: list[str] = dataclasses.field(default_factory=list)
    """Fixed paths (``CONTAINER_LOGS``, ``SHIM_DIR``) that existed before ``up``."""

    @property
    def layout(self) -> config.Layout:
        return config.Layout(self.cluster_dir / "node")

    @property
    def directory(self) -> Path:
        return self.layout.root

    @property
    def pki(self) -> Path:
        return self.cluster_dir / "pki"

    def log(self, name: str) -> Path:
        return self.directory / "logs" / f"{name}.log"

    def save(self) -> None:
        data = dataclasses.asdict(self)
        data["cluster_dir"] = str(self.cluster_dir)
        (self.directory / "node.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, cluster_dir: Path) -> NodeState | None:
        path = cluster_dir / "node" / "node.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["cluster_dir"] = Path(data["cluster_dir"])
        return cls(**data)

    def alive(self) -> dict[str, bool]:
        return {n: processes.is_ours(p, self.binaries[n]) for n, p in self.pids.items()}


def cannot_run() -> str | None:
    """Why no real node can start here (None when it can)."""
    return machine.cannot_run()


def ctr(state: NodeState, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``ctr`` against the node's containerd, in the namespace the kubelet uses."""
    argv = [CTR, f"--address={state.layout.path('socket')}", "--namespace=k8s.io", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _archive_images(archive: Path) -> set[tuple[str, str]]:
    """(name, manifest digest) of each image an OCI archive's index names."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        index = json.load(member) if member else {}
    return {
        (m.get("annotations", {}).get("org.opencontainers.image.ref.name", ""), m["digest"])
        for m in index.get("manifests", [])
    }


def load_images(state: NodeState, archives: Iterable[Path]) -> None:
    """Import OCI image archives (``buildah push IMG oci-archive:FILE:NAME``) into containerd,
    under the names they carry; the kubelet then runs them with ``imagePullPolicy: Never``. An
    archive whose images containerd already holds (same name, same manifest) is skipped."""
    for archive in archives:
        listing = ctr(state, "images", "ls").stdout.splitlines()[1:]
        present = {(line.split()[0], line.split()[2]) for line in listing if len(line.split()) > 2}
        if _archive_images(archive) <= present:
            continue
        result = ctr(state, "images", "import", str(archive))
        if result.returncode != 0:
            raise control_plane.ClusterError(f"ctr images import {archive}: {result.stderr}")


def images(state: NodeState) -> list[str]:
    result = ctr(state, "images", "ls", "-q")
    return sorted(line for line in result.stdout.splitlines() if line)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status) == 200
    except OSError:
        return False


def _wait(state: NodeState, what: str, check: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [n for n, ok in state.alive().items() if not ok]
        if dead:
            logs = state.directory / "logs"
            raise control_plane.ClusterError(
                f"{', '.join(dead)} exited while waiting for {what}; logs in {logs}"
            )
        if check():
            return
        time.sleep(0.2)
    raise control_plane.ClusterError(
        f"timed out after {timeout:.0f} s waiting for {what}; logs in {state.directory / 'logs'}"
    )


def _node_ready(cluster: control_plane.State) -> bool:
    result = control_plane.kubectl(cluster, "get", "node", config.NODE_NAME, "-o", "json")
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _metrics_available(cluster: control_plane.State) -> bool:
    result = control_plane.kubectl(
        cluster, "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{config.NODE_NAME}"
    )
    return result.returncode == 0


def _write_files(state: NodeState, cluster: control_plane.State) -> None:
    layout, address, ports, p = state.layout, state.address, state.ports, state.pki
    for name in ("containerd_root", "containerd_state", "cni_conf", "cni_ipam", "kubelet_root"):
        layout.path(name).mkdir(parents=True, exist_ok=True)
    layout.path("containerd_config").write_text(config.containerd_config(layout))
    (layout.path("cni_conf") / "10-inferplane.conflist").write_text(
        json.dumps(config.cni_conflist(layout))
    )
    layout.path("resolv_conf").write_text(config.resolv_conf(address))
    pki.issue(p, "node", common_name=f"system:node:{config.NODE_NAME}", organization="system:nodes")
    pki.issue(p, "kube-proxy", common_name="system:kube-proxy")
    pki.issue(p, "coredns", common_name=config.COREDNS_USER)
    pki.issue(p, "metrics-server", common_name=config.METRICS_SERVER_USER)
    pki.issue(p, "kubelet-serving", common_name=config.NODE_NAME, server_addresses=(address,))
    pki.issue(
        p, "metrics-server-serving", common_name="metrics-server", server_addresses=(address,)
    )
    for user in ("node", "kube-proxy", "coredns", "metrics-server"):
        components.write_kubeconfig(
            state.directory / f"{user}.kubeconfig", server=cluster.server, pki_dir=p, user=user
        )
    layout.path("kubelet_config").write_text(
        config.as_json(
            config.kubelet_config(
                layout,
                address=address,
                port=ports["kubelet"],
                healthz_port=ports["kubelet-healthz"],
                pki=p,
            )
        )
    )
    layout.path("kube_proxy_config").write_text(
        config.as_json(
            config.kube_proxy_config(
                kubeconfig=state.directory / "kube-proxy.kubeconfig",
                healthz_port=ports["kube-proxy-healthz"],
                metrics_port=ports["kube-proxy-metrics"],
            )
        )
    )
    layout.path("corefile").write_text(
        config.corefile(
            address=address,
            ready_port=ports["coredns-ready"],
            kubeconfig=state.directory / "coredns.kubeconfig",
        )
    )


def _argv(state: NodeState, name: str) -> list[str]:
    layout, binary = state.layout, state.binaries[name]
    if name == "containerd":
        return [binary, f"--config={layout.path('containerd_config')}"]
    if name == "coredns":
        return [binary, f"-conf={layout.path('corefile')}"]
    if name == "kube-proxy":
        return config.kube_proxy_argv(binary, layout)
    if name == "kubelet":
        return config.kubelet_argv(
            binary, layout, kubeconfig=state.directory / "node.kubeconfig", address=state.address
        )
    return config.metrics_server_argv(
        binary,
        address=state.address,
        port=state.ports["metrics-server"],
        kubeconfig=state.directory / "metrics-server.kubeconfig",
        pki=state.pki,
    )


def up(
    cluster: control_plane.State,
    *,
    tie_to_parent: bool = False,
    timeout: float = 180.0,
    phases: dict[str, float] | None = None,
) -> NodeState:
    """Join a real node to the running ``cluster``; raises ``NodeUnavailable`` where the machine
    cannot run one, ``machine.MachineError`` when another node holds the machine."""
    reason = cannot_run()
    if reason:
        raise NodeUnavailable(reason)
    marks = {} if phases is None else phases
    started = time.monotonic()
    machine.ensure_packages()
    build.ensure_built(versions.REAL_NODE, echo=True)
    pause_archive = pause.ensure_built()
    marks["built"] = time.monotonic() - started
    previous = machine.lock_owner()
    lock = machine.acquire_lock(cluster.directory / "node")
    try:
        if previous is not None and previous.parent != cluster.directory:
            down(previous.parent)  # a node whose session died without its down
        down(cluster.directory)
        address = machine.host_address()
        assert address is not None  # cannot_run checked it
        state = NodeState(
            cluster_dir=cluster.directory,
            address=address,
            binaries={
                "containerd": CONTAINERD,
                "coredns": str(build.binary_path("coredns")),
                "kube-proxy": str(build.binary_path("kube-proxy")),
                "kubelet": str(build.binary_path("kubelet")),
                "metrics-server": str(build.binary_path("metrics-server")),
            },
            ports={
                name: free_port()
                for name in (
                    "kubelet",
                    "kubelet-healthz",
                    "kube-proxy-healthz",
                    "kube-proxy-metrics",
                    "coredns-ready",
                    "metrics-server",
                )
            },
            sysctls=machine.read_sysctls(),
            ruleset=machine.nft_ruleset(),
            existed=[str(p) for p in FIXED_PATHS if p.exists()],
        )
        shutil.rmtree(state.directory, ignore_errors=True)
        state.directory.mkdir(parents=True)
        state.save()
        _write_files(state, cluster)
        objects = config.cluster_objects(
            address=address, metrics_port=state.ports["metrics-server"]
        )
        result = control_plane.kubectl(
            cluster,
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        if result.returncode != 0:
            raise control_plane.ClusterError(f"applying the node's RBAC failed: {result.stderr}")
        _start_all(state, cluster, lock, pause_archive, timeout, marks, started, tie_to_parent)
    except BaseException:
        os.close(lock)
        down(cluster.directory)
        raise
    os.close(lock)  # containerd holds it now
    return state


def _start_all(
    state: NodeState,
    cluster: control_plane.State,
    lock: int,
    pause_archive: Path,
    timeout: float,
    marks: dict[str, float],
    started: float,
    tie_to_parent: bool,
) -> None:
    closed = {"HTTP_PROXY": config.CLOSED_PROXY, "HTTPS_PROXY": config.CLOSED_PROXY, "NO_PROXY": ""}
    for name in ORDER:
        env = {**os.environ, **closed} if name == "containerd" else None
        state.pids[name] = processes.start(
            _argv(state, name),
            log=state.log(name),
            tie_to_parent=tie_to_parent,
            env=env,
            pass_fds=(lock,) if name == "containerd" else (),
        )
        state.save()
        if name == "containerd":
            _wait(state, "containerd", lambda: ctr(state, "version").returncode == 0, timeout)
            load_images(state, [pause_archive])
            marks["containerd"] = time.monotonic() - started
        elif name == "coredns":
            url = f"http://127.0.0.1:{state.ports['coredns-ready']}/ready"
            _wait(state, "CoreDNS /ready", functools.partial(_http_ok, url), timeout)
        elif name == "kube-proxy":
            url = f"http://127.0.0.1:{state.ports['kube-proxy-healthz']}/healthz"
            _wait(state, "kube-proxy /healthz", functools.partial(_http_ok, url), timeout)
        elif name == "kubelet":
            _wait(state, f"node {config.NODE_NAME} Ready", lambda: _node_ready(cluster), timeout)
            marks["node"] = time.monotonic() - started
        else:
            _wait(state, "the metrics API", lambda: _metrics_available(cluster), timeout)
            marks["metrics"] = time.monotonic() - started


def _sandbox_netns(state: NodeState) -> list[str]:
    """The network namespaces containerd made for the node's pod sandboxes."""
    paths = []
    listing = ctr(state, "containers", "ls", "-q")
    for container in listing.stdout.split():
        info = ctr(state, "containers", "info", container)
        with contextlib.suppress(ValueError, KeyError, TypeError):
            for namespace in json.loads(info.stdout)["Spec"]["linux"]["namespaces"]:
                if namespace.get("type") == "network" and namespace.get("path"):
                    paths.append(namespace["path"])
    return paths


def _remove_containers(state: NodeState) -> None:
    """Kill and delete every container (tasks, snapshots) and its network namespace."""
    netns = _sandbox_netns(state)
    for container in ctr(state, "containers", "ls", "-q").stdout.split():
        ctr(state, "tasks", "kill", "--signal=SIGKILL", container)
        ctr(state, "tasks", "delete", "--force", container)
        ctr(state, "containers", "delete", container)
    for path in netns:
        subprocess.run(["umount", "--lazy", path], capture_output=True)
        with contextlib.suppress(OSError):
            os.unlink(path)


def down(cluster_dir: Path) -> bool:
    """Stop the node recorded under ``cluster_dir`` and undo what it did to the machine; returns
    whether there was one. Safe to repeat, and after a crash."""
    state = NodeState.load(cluster_dir)
    if state is None:
        return False
    for name in ("metrics-server", "kubelet"):
        if name in state.pids:
            processes.stop(state.pids[name], state.binaries[name])
    if "containerd" in state.pids and processes.is_ours(state.pids["containerd"], CONTAINERD):
        _remove_containers(state)
    for name in ("kube-proxy", "coredns", "containerd"):
        if name in state.pids:
            processes.stop(state.pids[name], state.binaries[name])
    kube_proxy = state.binaries.get("kube-proxy")
    if kube_proxy and Path(kube_proxy).is_file():
        subprocess.run([kube_proxy, "--cleanup", "--v=0"], capture_output=True, timeout=120)
    machine.remove_new_tables(state.ruleset)
    for shim in machine.processes_mentioning(str(state.layout.path("socket"))):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(shim.split()[0]), 9)
    machine.unmount_under(state.directory)
    machine.remove_pod_cgroups()
    machine.delete_link(config.BRIDGE)
    machine.restore_sysctls(state.sysctls)
    for link in _log_links(state):
        link.unlink()
    for fixed in FIXED_PATHS:
        if str(fixed) not in state.existed:
            machine.remove_empty_tree(fixed)
    for heavy in ("containerd_root", "containerd_state", "kubelet_root"):
        shutil.rmtree(state.layout.path(heavy), ignore_errors=True)
    (state.directory / "node.json").unlink(missing_ok=True)
    return True


def _log_links(state: NodeState) -> list[Path]:
    """The node's links in ``CONTAINER_LOGS``: the kubelet links each container's log there and
    unlinks it when it removes the container, so containers removed after the kubelet stopped
    (``down``) leave theirs, pointing into the node's own folder."""
    if not CONTAINER_LOGS.is_dir():
        return []
    ours = f"{state.directory}/"
    return [
        link
        for link in CONTAINER_LOGS.iterdir()
        if link.is_symlink() and os.readlink(link).startswith(ours)
    ]


def leftovers(state: NodeState) -> list[str]:
    """What of the node is still on the machine after ``down`` (empty when nothing is)."""
    found = [f"process {p}" for p in machine.processes_mentioning(str(state.directory))]
    found += [f"mount {m}" for m in machine.mounts_under(state.directory)]
    found += [f"cgroup {g}" for g in machine.pod_cgroups()]
    if machine.link_exists(config.BRIDGE):
        found.append(f"link {config.BRIDGE}")
    ruleset = machine.nft_ruleset()
    if ruleset != state.ruleset:
        found.append(f"nftables ruleset changed:\n{ruleset}")
    changed = {k: v for k, v in machine.read_sysctls().items() if state.sysctls.get(k) != v}
    found += [f"sysctl {k}={v} (was {state.sysctls.get(k)})" for k, v in changed.items()]
    found += (
        [f"netns {p}" for p in Path("/run/netns").glob("cni-*")]
        if Path("/run/netns").is_dir()
        else []
    )
    found += [f"log link {link}" for link in _log_links(state)]
    for fixed in (CONTAINER_LOGS, SHIM_DIR):
        if str(fixed) not in state.existed and fixed.exists():
            found.append(f"path {fixed}")
    return found


def as_dict(state: NodeState) -> dict[str, Any]:
    return dataclasses.asdict(state)
