# SPDX-License-Identifier: Apache-2.0
"""Loopback helpers the tests and benchmarks share: a free port, and a real S3-compatible server
(moto's server mode) on one (on loopback, or on the machine's own address for pods of the real
node)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_moto(
    log: IO[Any] | int = subprocess.DEVNULL,
    *,
    host: str = "127.0.0.1",
    timeout_s: float = 30.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``moto_server`` on a free port of ``host`` (loopback, or the machine's own address
    that pods reach); return it and its endpoint once it accepts connections. Raises
    RuntimeError when it dies or does not answer within ``timeout_s``."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port(host)
    proc = subprocess.Popen([exe, "-H", host, "-p", str(port)], stdout=log, stderr=log)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return proc, f"http://{host}:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                name = getattr(log, "name", "its output")
                raise RuntimeError(f"moto_server did not start (see {name})") from None
            time.sleep(0.1)
