# SPDX-License-Identifier: Apache-2.0
"""Start the cluster's processes with their logs in files, record their PIDs, stop them again."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGKILL when the parent dies, so a test
    session killed hard (SIGKILL, OOM) leaves no control plane behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def start(
    argv: list[str],
    *,
    log: Path,
    tie_to_parent: bool,
    env: dict[str, str] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> int:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log``;
    ``pass_fds`` stay open in it (a lock that must live as long as the process)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            pass_fds=pass_fds,
            preexec_fn=_die_with_parent if tie_to_parent else None,
        )
    return process.pid


def is_ours(pid: int, binary: str) -> bool:
    """Whether ``pid`` is alive and still runs ``binary`` (not a recycled PID).

    Reads the ``/proc/PID/exe`` link: right after exec, ``/proc/PID/cmdline`` can still be empty.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        _reap(pid)
        return False
    return exe == os.path.realpath(binary)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, binary: str, *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only if ``pid`` still runs ``binary``."""
    if not is_ours(pid, binary):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_ours(pid, binary):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while is_ours(pid, binary):
        time.sleep(0.05)


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
