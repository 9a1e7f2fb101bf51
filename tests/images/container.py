# SPDX-License-Identifier: Apache-2.0
"""Run an image as a pod would run it, with runc: read-only root, non-root user, host network.

The container's root is buildah's mount of a working container of the image, made read-only by
runc; ``/tmp`` is a fresh tmpfs (the pods' emptyDir), other mounts are read-only binds. The
process runs as the image's user with no capabilities and ``no_new_privs``, in its own PID, IPC,
UTS and mount namespaces but in the host's network namespace, so a test reaches a server on
127.0.0.1. Entry point, command, environment and working directory come from the image.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.images import tools


@dataclass
class Running:
    """A started container: its runc id, process and log (stdout and stderr together)."""

    id: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _config(image: str, log: Path) -> dict[str, object]:
    data = json.loads(tools.output(["buildah", "inspect", "--type", "image", image], log))
    config: dict[str, object] = data["OCIv1"]["config"]
    return config


def spec(
    rootfs: Path,
    image_config: Mapping[str, object],
    args: Sequence[str] | None,
    mounts: Mapping[str, Path],
    env: Mapping[str, str],
    *,
    writable: Mapping[str, Path] | None = None,
    entrypoint: Sequence[str] | None = None,
) -> dict[str, object]:
    """The OCI runtime spec (config.json) of one run. ``mounts`` are read-only binds,
    ``writable`` read-write ones; ``entrypoint`` replaces the image's."""
    if entrypoint is None:
        entrypoint = list(image_config.get("Entrypoint") or [])  # type: ignore[call-overload]
    command = list(image_config.get("Cmd") or []) if args is None else list(args)  # type: ignore[call-overload]
    user = str(image_config.get("User") or "")
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        raise tools.ToolError(f"the image's user {user!r} is not numeric")
    environment = list(image_config.get("Env") or []) + [f"{k}={v}" for k, v in env.items()]  # type: ignore[operator]
    no_caps: list[str] = []
    return {
        "ociVersion": "1.0.2",
        "root": {"path": str(rootfs), "readonly": True},
        "process": {
            "terminal": False,
            "user": {"uid": int(uid), "gid": int(gid or uid)},
            "args": [*entrypoint, *command],
            "env": environment,
            "cwd": str(image_config.get("WorkingDir") or "/"),
            "capabilities": {k: no_caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "hostname": "inferplane-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=1g"],
            },
            *(
                {
                    "destination": target,
                    "type": "bind",
                    "source": str(source),
                    "options": ["rbind", mode],
                }
                for binds, mode in ((mounts, "ro"), (writable or {}, "rw"))
                for target, source in binds.items()
            ),
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }


@contextmanager
def run(
    image: str,
    args: Sequence[str] | None = None,
    *,
    mounts: Mapping[str, Path] | None = None,
    writable: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
) -> Iterator[Running]:
    """Start ``image`` (its entry point with ``args``, or its CMD) and stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="inferplane-run-") as work:
        bundle = Path(work)
        log = bundle / "container.log"
        tool_log = bundle / "tools.log"
        container = tools.output(["buildah", "from", "--pull=never", image], tool_log)
        cid = f"inferplane-test-{uuid.uuid4().hex[:12]}"
        process: subprocess.Popen[bytes] | None = None
        try:
            rootfs = Path(tools.output(["buildah", "mount", container], tool_log))
            config = spec(
                rootfs,
                _config(image, tool_log),
                args,
                mounts or {},
                env or {},
                writable=writable,
                entrypoint=entrypoint,
            )
            (bundle / "config.json").write_text(json.dumps(config))
            with log.open("wb") as out:
                process = subprocess.Popen(
                    ["runc", "run", "--bundle", str(bundle), cid],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            yield Running(cid, process, log)
        finally:
            if process is not None:
                _stop(cid, process)
            _remove(container)


def _remove(container: str) -> None:
    """Unmount and remove the working container; a mount that runc only just released can be
    busy for a moment, so try a few times and say so if it stays."""
    for _ in range(10):
        subprocess.run(["buildah", "umount", container], capture_output=True, check=False)
        if subprocess.run(["buildah", "rm", container], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    tools.say(f"could not remove the working container {container}: `buildah rm {container}`")


def _stop(cid: str, process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        subprocess.run(["runc", "kill", cid, "TERM"], capture_output=True, check=False)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process.poll() is None:
            subprocess.run(["runc", "kill", cid, "KILL"], capture_output=True, check=False)
            process.wait(timeout=10)
    subprocess.run(["runc", "delete", "--force", cid], capture_output=True, check=False)


def run_to_end(
    image: str,
    args: Sequence[str],
    *,
    mounts: Mapping[str, Path] | None = None,
    writable: Mapping[str, Path] | None = None,
    env: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] | None = None,
    timeout_s: float = 300,
) -> tuple[int, str]:
    """Run ``image`` with ``args`` to its end: the exit status and the output."""
    with run(
        image, args, mounts=mounts, writable=writable, env=env, entrypoint=entrypoint
    ) as running:
        try:
            code = running.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise tools.ToolError(
                f"{image} {' '.join(args)}: still running after {timeout_s} s:\n"
                f"{running.output()[-3000:]}"
            ) from exc
        return code, running.output()
