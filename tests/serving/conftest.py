# SPDX-License-Identifier: Apache-2.0
"""The real server as a subprocess on a loopback port, and small HTTP helpers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """``python -m inferplane serve ...`` on 127.0.0.1, ready when started."""

    def __init__(
        self, args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        """``log``: write stderr to this file (read with ``log_text``) instead of a pipe that a
        long test might leave unread until it fills and blocks the server."""
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inferplane", "serve", *args, "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if log is None else log.open("w"),
            text=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"server exited {self.proc.returncode}: {stderr}")
            try:
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server not ready in time")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.url, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def post_json(self, path: str, message: Any) -> tuple[int, Any]:
        status, _, body = self.request("POST", path, json.dumps(message).encode())
        return status, json.loads(body)

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[2].decode()

    log = ""
    """The server's stderr, once stopped (or its log file's text)."""

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path is not None else self.log

    def rss_bytes(self) -> int:
        """The server's resident memory now (Linux)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) * 1024

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.log = self.proc.communicate(timeout=30)[1]  # read while it exits: no pipe stall
        return self.proc.wait(timeout=30)


StartServer = Callable[..., Server]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start servers (ready) for one test; every one must stop with status 0."""
    servers: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Server:
        server = Server([str(a) for a in args], env=env)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    running = [s for s in servers if s.proc.poll() is None]
    for server in servers:
        server.stop()
    assert [s.proc.returncode for s in running] == [0] * len(running), "unclean shutdown"


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def binary_infer(server: Server, name: str, x: Any, *, timeout: float = 60) -> tuple[int, bytes]:
    """POST one FP32 input ``x`` with the binary extension; returns (status, raw body)."""
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()  # fmt: skip
    conn = http.client.HTTPConnection(server.url, timeout=timeout)
    try:
        conn.request(
            "POST",
            f"/v2/models/{name}/infer",
            body=header + x.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def binary_output(body: bytes, rows: int, cols: int) -> Any:
    """The FP32 output ``y`` of a binary response from ``binary_infer``."""
    import numpy as np

    return np.frombuffer(body[-rows * cols * 4 :], np.float32).reshape(rows, cols)
