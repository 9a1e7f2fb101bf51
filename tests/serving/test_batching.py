# SPDX-License-Identifier: Apache-2.0
"""Dynamic batching under real concurrency, the queue bound, and graceful shutdown under load."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tests import models
from tests.serving.conftest import StartServer, binary_infer, binary_output, metric_value
from tests.serving.test_server import run_ort


@pytest.fixture(scope="module")
def heavy_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2048 -> 2048 -> 10: slow enough (milliseconds per call) to build queues."""
    return models.mlp_onnx(tmp_path_factory.mktemp("heavy") / "heavy.onnx", (2048, 2048, 10))


def test_concurrent_clients_get_their_own_rows(start_server: StartServer, mlp_onnx: Path) -> None:
    server = start_server(mlp_onnx, "--max-batch-size", "4", "--max-queue-delay-ms", "20")
    rng = np.random.default_rng(7)
    requests = [rng.standard_normal((1 + i % 2, 64)).astype(np.float32) for i in range(48)]

    def call(x: np.ndarray) -> np.ndarray:
        status, body = binary_infer(server, "mlp", x)
        assert status == 200, body
        return binary_output(body, x.shape[0], 10)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, requests))
    for x, got in zip(requests, answers, strict=True):
        np.testing.assert_allclose(got, run_ort(mlp_onnx, {"x": x})["y"], rtol=1e-5, atol=1e-6)
    text = server.metrics()
    batches = metric_value(text, "inferplane_batch_size_count")
    assert metric_value(text, "inferplane_batch_size_sum") == sum(x.shape[0] for x in requests)
    assert metric_value(text, "inferplane_batch_size_bucket", le="4.0") == batches, "over 4 rows"
    assert metric_value(text, "inferplane_batch_size_bucket", le="1.0") < batches, "never merged"
    assert batches < len(requests)


def test_request_over_max_batch_is_refused(start_server: StartServer, mlp_onnx: Path) -> None:
    server = start_server(mlp_onnx, "--max-batch-size", "4")
    status, body = binary_infer(server, "mlp", np.zeros((5, 64), np.float32))
    assert status == 400 and b"max batch size" in body
    assert binary_infer(server, "mlp", np.zeros((4, 64), np.float32))[0] == 200


def test_no_batching_without_dynamic_batch(start_server: StartServer, fixed_onnx: Path) -> None:
    server = start_server(fixed_onnx, "--max-batch-size", "8")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    status, body = binary_infer(server, "fixed", x)
    assert status == 200
    np.testing.assert_array_equal(binary_output(body, 2, 3), 2 * x)
    assert "batching off" in server.proc.stderr.readline()  # type: ignore[union-attr]


def test_queue_full_is_503_with_retry_after(start_server: StartServer, heavy_onnx: Path) -> None:
    server = start_server(heavy_onnx, "--max-queue", "1")
    x = np.ones((64, 2048), np.float32)
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: binary_infer(server, "heavy", x), range(16)))
    codes = [s for s, _ in statuses]
    assert 503 in codes and 200 in codes, codes
    assert all(c in (200, 503) for c in codes)
    assert b"queue full" in next(b for s, b in statuses if s == 503)
    assert server.request("POST", "/v2/models/heavy/infer", b"{}")[0] == 400
    assert binary_infer(server, "heavy", x[:1])[0] == 200
    text = server.metrics()
    assert metric_value(text, "inferplane_requests_total", outcome="unavailable") == codes.count(
        503
    )


def test_retry_after_header(start_server: StartServer, heavy_onnx: Path) -> None:
    server = start_server(heavy_onnx, "--max-queue", "1")
    x = np.ones((64, 2048), np.float32)
    import http.client
    import json

    tensor = {"name": "x", "datatype": "FP32", "shape": [64, 2048]}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = json.dumps({"inputs": [tensor]}).encode()

    def call(_: int) -> tuple[int, str | None]:
        conn = http.client.HTTPConnection(server.url, timeout=60)
        conn.request("POST", "/v2/models/heavy/infer", header + x.tobytes(),
                     {"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, response.getheader("Retry-After")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert any(s == 503 and r is not None and int(r) >= 1 for s, r in results), results


def test_graceful_shutdown_under_load(start_server: StartServer, heavy_onnx: Path) -> None:
    server = start_server(heavy_onnx, "--max-batch-size", "8", "--max-queue-delay-ms", "1")
    rng = np.random.default_rng(9)
    requests = [rng.standard_normal((8, 2048)).astype(np.float32) for _ in range(24)]
    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(binary_infer, server, "heavy", x) for x in requests]
        deadline = time.monotonic() + 20
        while metric_value(server.metrics(), "inferplane_in_flight_requests") < 8:
            assert time.monotonic() < deadline, "requests never got in flight"
        server.proc.send_signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    assert [s for s, _ in results] == [200] * len(requests)
    for x, (_, body) in zip(requests, results, strict=True):
        expected = run_ort(heavy_onnx, {"x": x})["y"]
        np.testing.assert_allclose(binary_output(body, 8, 10), expected, rtol=1e-4, atol=1e-4)
    assert server.proc.wait(timeout=30) == 0
    with pytest.raises(OSError):
        server.request("GET", "/v2/health/live")


def test_batching_is_on_by_default(start_server: StartServer, mlp_onnx: Path) -> None:
    """Without options: opportunistic batching up to 32 rows; a larger request runs alone."""
    server = start_server(mlp_onnx)
    assert "batching up to 32 rows" in server.proc.stderr.readline()  # type: ignore[union-attr]
    x = np.random.default_rng(3).standard_normal((40, 64)).astype(np.float32)
    status, body = binary_infer(server, "mlp", x)
    assert status == 200, body
    np.testing.assert_allclose(
        binary_output(body, 40, 10), run_ort(mlp_onnx, {"x": x})["y"], rtol=1e-5, atol=1e-6
    )
    text = server.metrics()
    assert metric_value(text, "inferplane_batch_size_bucket", le="32.0") == 0
    assert metric_value(text, "inferplane_batch_size_sum") == 40


def test_batches_form_full_behind_a_slow_backend(
    start_server: StartServer, heavy_onnx: Path
) -> None:
    """32 requests sent together, max 8 rows: a few full batches, not a trickle of small ones."""
    server = start_server(heavy_onnx, "--max-batch-size", "8", "--max-queue-delay-ms", "200")
    x = np.ones((1, 2048), np.float32)
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2048],
                     "parameters": {"binary_data_size": x.nbytes}}]}
    ).encode()  # fmt: skip
    connections = [http.client.HTTPConnection(server.url, timeout=60) for _ in range(32)]
    for conn in connections:
        conn.connect()
    barrier = threading.Barrier(len(connections))

    def call(conn: http.client.HTTPConnection) -> int:
        barrier.wait()
        conn.request("POST", "/v2/models/heavy/infer", header + x.tobytes(),
                     {"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    with ThreadPoolExecutor(len(connections)) as pool:
        assert list(pool.map(call, connections)) == [200] * len(connections)
    text = server.metrics()
    batches = metric_value(text, "inferplane_batch_size_count")
    full = batches - metric_value(text, "inferplane_batch_size_bucket", le="4.0")
    assert metric_value(text, "inferplane_batch_size_bucket", le="8.0") == batches
    assert batches <= 6 and full >= 3, text


def test_a_full_batch_does_not_wait_out_the_delay(
    start_server: StartServer, mlp_onnx: Path
) -> None:
    """Four clients, max 4 rows, a 30 s delay: the fourth row runs the batch at once."""
    server = start_server(mlp_onnx, "--max-batch-size", "4", "--max-queue-delay-ms", "30000")
    rng = np.random.default_rng(11)
    requests = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(4)]
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda x: binary_infer(server, "mlp", x), requests))
    assert time.monotonic() - started < 15, "the batch waited out its delay"
    for x, (status, body) in zip(requests, results, strict=True):
        assert status == 200, body
        np.testing.assert_allclose(
            binary_output(body, 1, 10), run_ort(mlp_onnx, {"x": x})["y"], rtol=1e-5, atol=1e-6
        )
    text = server.metrics()
    assert metric_value(text, "inferplane_batch_size_count") == 1
    assert metric_value(text, "inferplane_batch_size_sum") == 4
