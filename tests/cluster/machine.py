# SPDX-License-Identifier: Apache-2.0
"""What a real node changes on the machine, and how to take each change back.

A kubelet node is not a set of processes only: it leaves a bridge, nftables tables, cgroups,
mounts (network namespaces, volumes, container root filesystems), kernel settings and shim
processes. Each of those has a reader here (``leftovers`` reports what remains) and an undo step,
so ``node.down`` can leave the machine as ``node.up`` found it, and a test can prove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
from pathlib import Path

LOCK = Path("/run/inferplane-real-node.lock")
"""Machine-wide: one real node at a time (bridge, DNS port, nftables, kubepods cgroups)."""

PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "nftables",
    "iptables",
    "conntrack",
    "gcc",
    "libc6-dev",
)
"""Debian packages the node needs (gcc and libc6-dev build the static pause binary)."""

CNI_BIN = Path("/usr/lib/cni")
"""Where Debian's containernetworking-plugins installs the plugins."""

SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""Kernel settings the node's parts write: the bridge plugin turns on forwarding, the kubelet sets
its kernel tunables (``protectKernelDefaults: false``), kube-proxy may touch route_localnet."""

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
"""The kubelet's pod cgroup (cgroupfs driver, cgroupRoot ``/``), in every hierarchy."""


class MachineError(RuntimeError):
    """The machine cannot run a real node, or another one holds it; the message says which."""


def host_address() -> str | None:
    """The machine's own address: the source of its default route (eth0 here), or None.

    Connecting a UDP socket sends nothing; it only asks the kernel which address it would use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def cannot_run() -> str | None:
    """Why this machine cannot run a real node, or None when it can."""
    if os.geteuid() != 0:
        return "a real kubelet node needs root (containerd, cgroups, network namespaces)"
    if not CGROUP_ROOT.is_dir():
        return f"no cgroup filesystem at {CGROUP_ROOT}"
    if host_address() is None:
        return "the machine has no address besides loopback (the kubelet refuses --node-ip=127.x)"
    if shutil.which("apt-get") is None and not all(map(_installed, PACKAGES)):
        return f"the Debian packages {', '.join(PACKAGES)} are missing and there is no apt-get"
    return None


def _installed(package: str) -> bool:
    result = subprocess.run(["dpkg", "-s", package], capture_output=True, text=True)
    return result.returncode == 0 and "Status: install ok installed" in result.stdout


def ensure_packages(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Install the missing Debian packages (idempotent); return what was installed.

    apt starts no daemon here (no systemd): the node starts containerd itself.
    """
    missing = [p for p in packages if not _installed(p)]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            result = subprocess.run(argv, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                raise MachineError(f"{' '.join(argv)} failed: {result.stderr.strip()[-2000:]}")
    return missing


def acquire_lock(directory: Path) -> int:
    """Take the machine-wide lock for the node in ``directory``; return the open descriptor.

    The caller passes the descriptor to containerd (the node's first and last process), so the
    lock lives exactly as long as the node does, whichever process started it.
    """
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Path(LOCK).read_text().strip() or "unknown"
        os.close(fd)
        raise MachineError(f"another real node runs on this machine ({LOCK}: {holder})") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{directory}\n".encode())
    return fd


def lock_owner() -> Path | None:
    """The state directory named in the lock file (the last node that ran), if any."""
    with contextlib.suppress(OSError):
        text = LOCK.read_text().strip()
        return Path(text) if text else None
    return None


def read_sysctls(names: tuple[str, ...] = SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = (Path("/proc/sys") / name).read_text().strip()
    return values


def restore_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        path = Path("/proc/sys") / name
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value)


def mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them)."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=lambda p: p.count("/"), reverse=True)


def unmount_under(directory: Path) -> None:
    for point in mounts_under(directory):
        subprocess.run(["umount", "--lazy", point], capture_output=True)


def remove_empty_tree(top: Path) -> None:
    """Remove ``top`` if it holds nothing but empty folders (a file keeps it, and shows)."""
    if not top.is_dir():
        return
    for folder, _, _ in sorted(os.walk(top), key=lambda w: len(Path(w[0]).parts), reverse=True):
        with contextlib.suppress(OSError):
            Path(folder).rmdir()


def pod_cgroups() -> list[Path]:
    """Every ``kubepods`` cgroup directory (and below), deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / KUBEPODS
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_pod_cgroups() -> None:
    """Remove the kubelet's cgroups, deepest first; a cgroup with live tasks stays (and shows
    in ``leftovers``)."""
    for group in pod_cgroups():
        with contextlib.suppress(OSError):
            group.rmdir()


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def delete_link(name: str) -> None:
    if link_exists(name):
        subprocess.run(["ip", "link", "delete", name], capture_output=True)


def nft_ruleset() -> str:
    """``nft list ruleset`` (empty when nft is missing): compared before and after the node."""
    if shutil.which("nft") is None:
        return ""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def _tables(ruleset: str) -> set[str]:
    """``"ip filter"``, ``"ip6 kube-proxy"``, ... of an ``nft list ruleset`` text."""
    return {
        line.removeprefix("table ").split("{")[0].strip()
        for line in ruleset.splitlines()
        if line.startswith("table ")
    }


def remove_new_tables(before: str) -> None:
    """Delete the nftables tables that were not there ``before`` (the ruleset text then): the
    kubelet's iptables canaries (``ip mangle``, ``ip nat``, ``ip filter`` through iptables-nft)
    and whatever ``kube-proxy --cleanup`` left. Tables that existed stay as they are."""
    for table in sorted(_tables(nft_ruleset()) - _tables(before)):
        subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)


def processes_mentioning(text: str) -> list[str]:
    """``PID cmdline`` of live processes whose command line contains ``text``."""
    found = []
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            if text in cmdline:
                found.append(f"{entry.name} {cmdline}")
    return found
