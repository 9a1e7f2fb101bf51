# SPDX-License-Identifier: Apache-2.0
"""Batching isolation: no client ever receives another's rows, and one bad request fails alone.

Many concurrent clients, each sending data that only it sends (its id and a counter encoded in
every value), against multi-input models of each kind: inputs sharing the batch dimension
(merged), inputs with independent first dimensions (never merged), and a model whose call fails
for one request's input inside a merged batch.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests import models
from tests.serving.conftest import Server, StartServer, metric_value

CLIENTS = 16
REQUESTS = 12
"""Per client: 16 x 12 = 192 requests, all in flight together in waves of 16."""


@pytest.fixture(scope="module")
def independent_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.independent_rows_onnx(tmp_path_factory.mktemp("ind") / "independent.onnx")


@pytest.fixture(scope="module")
def gather_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.gather_onnx(tmp_path_factory.mktemp("gather") / "gather.onnx")


def post(server: Server, model: str, inputs: list[dict[str, Any]]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(server.url, timeout=60)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", json.dumps({"inputs": inputs}))
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def tensor(name: str, array: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(array.shape),
            "data": array.ravel().tolist()}  # fmt: skip


def outputs(answer: Any) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}


def own_data(client: int, request: int, rows: int, cols: int, salt: int) -> np.ndarray:
    """Integers (exact in FP32 and JSON) that only this (client, request, input) sends, each
    element its own: which client, which request, which input (``salt``), which row and col."""
    assert rows <= 4 and cols <= 4 and salt in (0, 1)
    base = ((client * 100 + request) * 2 + salt) * 16
    return (base + np.arange(rows * cols).reshape(rows, cols)).astype(np.float32)


def hammer(call: Callable[[int, int], None]) -> None:
    """Every client sends its requests back to back, all clients at once."""

    def client(c: int) -> None:
        for r in range(REQUESTS):
            call(c, r)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))


def test_shared_batch_inputs_merge_and_each_client_gets_its_own_rows(
    start_server: StartServer, multi_onnx: Path
) -> None:
    """``a, b: [batch, 4]``: merged along the batch; every answer is the client's own."""
    server = start_server(multi_onnx, "--max-batch-size", "8", "--max-queue-delay-ms", "5")

    def call(c: int, r: int) -> None:
        rows = 1 + (c + r) % 3
        a = own_data(c, r, rows, 4, 0)
        b = own_data(c, r, rows, 4, 1)
        status, answer = post(server, "multi", [tensor("a", a), tensor("b", b)])
        assert status == 200, answer
        got = outputs(answer)
        np.testing.assert_array_equal(got["sum"], a + b)
        np.testing.assert_array_equal(got["prod"], np.round(a * b).astype(np.int64))

    hammer(call)
    text = server.metrics()
    merged = metric_value(text, "inferplane_batch_size_count")
    assert merged < CLIENTS * REQUESTS, "no request was merged: the test proves nothing"


def post_binary(
    server: Server, model: str, inputs: dict[str, np.ndarray], wanted: list[str]
) -> tuple[int, dict[str, np.ndarray]]:
    """One request with the binary extension both ways; the answer's outputs by name."""
    header = json.dumps(
        {
            "inputs": [{"name": n, "datatype": "FP32", "shape": list(a.shape),
                        "parameters": {"binary_data_size": a.nbytes}} for n, a in inputs.items()],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in wanted],
        }
    ).encode()  # fmt: skip
    body = header + b"".join(a.tobytes() for a in inputs.values())
    conn = http.client.HTTPConnection(server.url, timeout=60)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body,
                     {"Inference-Header-Content-Length": str(len(header))})  # fmt: skip
        response = conn.getresponse()
        raw = response.read()
        if response.status != 200:
            return response.status, {}
        length = int(response.getheader("Inference-Header-Content-Length", "0"))
    finally:
        conn.close()
    got, offset = {}, length
    for out in json.loads(raw[:length])["outputs"]:
        size = out["parameters"]["binary_data_size"]
        dtype = {"FP32": np.float32, "INT64": np.int64}[out["datatype"]]
        got[out["name"]] = np.frombuffer(raw[offset : offset + size], dtype).reshape(out["shape"])
        offset += size
    return 200, got


def test_binary_requests_merge_by_layout_and_each_client_gets_its_own_rows(
    start_server: StartServer, multi_onnx: Path
) -> None:
    """Binary bodies of one layout are merged by joining their bytes, and a batch of one
    layout is answered from slices of one output. First every client sends the same layout;
    then clients of two row counts, wanting one output or both, so that batches are mixed."""
    server = start_server(multi_onnx, "--max-batch-size", "8", "--max-queue-delay-ms", "5")

    def call(c: int, r: int, *, mixed: bool) -> None:
        rows = 2 if mixed and c % 4 == 0 else 1
        a = own_data(c, r, rows, 4, 0)
        b = own_data(c, r, rows, 4, 1)
        wanted = ["sum", "prod"] if mixed and c % 2 == 0 else ["sum"]
        status, got = post_binary(server, "multi", {"a": a, "b": b}, wanted)
        assert status == 200 and sorted(got) == sorted(wanted), (status, got)
        np.testing.assert_array_equal(got["sum"], a + b)
        if "prod" in got:
            np.testing.assert_array_equal(got["prod"], np.round(a * b).astype(np.int64))

    for mixed in (False, True):
        hammer(partial(call, mixed=mixed))
    merged = metric_value(server.metrics(), "inferplane_batch_size_count")
    assert merged < 2 * CLIENTS * REQUESTS, "no request was merged: the test proves nothing"


def test_inputs_disagreeing_on_the_batch_dimension_are_400(
    start_server: StartServer, multi_onnx: Path
) -> None:
    server = start_server(multi_onnx)
    a, b = np.ones((2, 4), np.float32), np.ones((3, 4), np.float32)
    status, answer = post(server, "multi", [tensor("a", a), tensor("b", b)])
    assert status == 400
    assert "'a' (2 rows) and 'b' (3 rows) disagree" in answer["error"]


def test_independent_first_dimensions_are_served_unbatched(
    start_server: StartServer, independent_onnx: Path
) -> None:
    """``a: [n, 2]``, ``b: [m, 2]``: different row counts per input, never mixed."""
    server = start_server(independent_onnx, "--max-batch-size", "8", "--max-queue-delay-ms", "5")
    assert "batching off" in server.proc.stderr.readline()  # type: ignore[union-attr]

    def call(c: int, r: int) -> None:
        a = own_data(c, r, 1 + (c + r) % 4, 2, 0)
        b = own_data(c, r, 1 + (c * r) % 3, 2, 1)
        status, answer = post(server, "independent", [tensor("a", a), tensor("b", b)])
        assert status == 200, answer
        got = outputs(answer)
        np.testing.assert_array_equal(got["ya"], a)
        np.testing.assert_array_equal(got["yb"], -b)

    hammer(call)


def test_a_failing_request_in_a_merged_batch_fails_alone(
    start_server: StartServer, gather_onnx: Path
) -> None:
    """One index out of the table makes the merged call fail: the batch is re-run request by
    request, so only that request fails (400: its input is the cause); the rest get their rows.
    """
    server = start_server(gather_onnx, "--max-batch-size", "16", "--max-queue-delay-ms", "300")
    indices = [np.array([i % 10, (i * 3) % 10], np.int64) for i in range(11)]
    indices.insert(5, np.array([1, 99], np.int64))

    def call(i: np.ndarray) -> tuple[int, Any]:
        return post(server, "gather", [tensor("i", i, "INT64")])

    with ThreadPoolExecutor(len(indices)) as pool:
        results = list(pool.map(call, indices))
    for i, (status, answer) in zip(indices, results, strict=True):
        if 99 in i:
            assert status == 400, answer
            assert "refused the input" in answer["error"] and "idx=99" in answer["error"]
        else:
            assert status == 200, answer
            expected = np.stack([i, -i], axis=1)
            np.testing.assert_array_equal(outputs(answer)["y"], expected)
    retried = metric_value(server.metrics(), "inferplane_batch_retries_total")
    assert retried >= 2, "the bad request was never merged: the re-run is not exercised"
    assert server.stop() == 0
    assert "Traceback" not in server.log
