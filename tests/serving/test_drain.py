# SPDX-License-Identifier: Apache-2.0
"""A rollout loses no request: SIGTERM in the middle of a closed-loop load.

On SIGTERM the server answers ready with 503 at once, keeps accepting and answering for
``--drain-s`` (each answer closing its connection, so clients reconnect: in a cluster, to the
pods the Service routes to by then), then stops accepting, finishes what is in flight, cuts a
stalled client, and exits 0.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
from tests.serving.conftest import Server, StartServer, binary_output
from tests.serving.test_http import Reader
from tests.serving.test_server import run_ort

CLIENTS = 8
DRAIN_S = 3.0


def test_sigterm_under_load_fails_no_request(start_server: StartServer, mlp_onnx: Path) -> None:
    server = start_server(mlp_onnx, "--drain-s", str(DRAIN_S))
    x = np.random.default_rng(23).standard_normal((2, 64)).astype(np.float32)
    expected = run_ort(mlp_onnx, {"x": x})["y"]
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 64],
              "parameters": {"binary_data_size": x.nbytes}}  # fmt: skip
    wanted = [{"name": "y", "parameters": {"binary_data": True}}]
    header = json.dumps({"inputs": [tensor], "outputs": wanted}).encode()
    body = header + x.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    stop = threading.Event()
    done: list[tuple[float, int]] = []
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection(server.url, timeout=30)  # keep-alive, reconnects
        while not stop.is_set():
            try:
                conn.request("POST", "/v2/models/mlp/infer", body, headers)
                response = conn.getresponse()
                raw = response.read()
                if response.status != 200:
                    failures.append(f"{response.status}: {raw[:200]!r}")
                else:
                    np.testing.assert_allclose(binary_output(raw, 2, 10), expected, rtol=1e-5)
                done.append((time.monotonic(), response.status))
            except Exception as exc:  # every failure counts, whatever its kind
                failures.append(repr(exc))
                conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        _drain(server, stop)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [], failures[:5]
    after = [t for t, _ in done if t > _signalled[0] + 0.1]
    assert len(after) > CLIENTS, "no load ran during the drain: the test proves nothing"


_signalled: list[float] = []


def _drain(server: Server, stop: threading.Event) -> None:
    time.sleep(1.0)
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.sendall(b"GET /v2/health/live HTTP/1.1\r\n\r\n")
    idle_reader = Reader(idle)
    assert idle_reader.response()[0] == 200
    time.sleep(0.2)

    signalled = time.monotonic()
    _signalled.append(signalled)
    server.proc.send_signal(signal.SIGTERM)
    while (answer := server.request("GET", "/v2/health/ready"))[0] == 200:
        assert time.monotonic() - signalled < 0.5, "ready did not turn 503 at once"
    assert answer[0] == 503 and b"shutting down" in answer[2]
    idle.sendall(b"GET /v2/health/live HTTP/1.1\r\n\r\n")
    status, idle_headers, _ = idle_reader.response()
    assert status == 200 and idle_headers["connection"] == "close"

    time.sleep(DRAIN_S / 2)  # the load goes on inside the drain, on new connections too
    stop.set()
    code = server.proc.wait(timeout=10)
    exited = time.monotonic() - signalled
    stalled.close()
    idle.close()
    assert code == 0 and exited < 10, (code, exited)
