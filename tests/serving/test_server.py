# SPDX-License-Identifier: Apache-2.0
"""The real server process over real HTTP: protocol, clients, errors, metrics."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tests.models import TYPED
from tests.serving.conftest import Server, StartServer, binary_infer, binary_output, metric_value


def run_ort(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


@pytest.fixture(scope="module")
def mlp_server(mlp_onnx: Path) -> Iterator[Server]:
    """One server shared by the module's tests (each error case is followed by a good request)."""
    server = Server([str(mlp_onnx), "--max-request-bytes", "100000"])
    server.wait_ready()
    yield server
    assert server.stop() == 0


def test_health_and_metadata(mlp_server: Server) -> None:
    assert mlp_server.request("GET", "/v2/health/live")[0] == 200
    status, _, body = mlp_server.request("GET", "/v2")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "inferplane"
    assert "binary_tensor_data" in meta["extensions"]
    for path in ("/v2/models/mlp", "/v2/models/mlp/versions/1"):
        status, _, body = mlp_server.request("GET", path)
        model = json.loads(body)
        assert status == 200
        assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
        assert model["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}]
    assert mlp_server.request("GET", "/v2/models/mlp/ready")[0] == 200
    assert mlp_server.request("GET", "/v2/models/mlp/versions/1/ready")[0] == 200


def test_json_flat_and_nested_equal_onnxruntime(mlp_server: Server, mlp_onnx: Path) -> None:
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    expected = run_ort(mlp_onnx, {"x": x})["y"]
    for data in (x.ravel().tolist(), x.tolist()):
        tensor = {"name": "x", "datatype": "FP32", "shape": [3, 64], "data": data}
        message = {"id": "r-1", "inputs": [tensor], "parameters": {"custom": 1}}
        status, reply = mlp_server.post_json("/v2/models/mlp/infer", message)
        assert status == 200, reply
        assert reply["id"] == "r-1" and reply["model_name"] == "mlp"
        (out,) = reply["outputs"]
        assert out["name"] == "y" and out["datatype"] == "FP32" and out["shape"] == [3, 10]
        np.testing.assert_array_equal(np.array(out["data"], np.float32).reshape(3, 10), expected)


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient(mlp_server: Server, mlp_onnx: Path, binary: bool) -> None:
    client = triton.InferenceServerClient(mlp_server.url)
    assert client.is_server_ready() and client.is_model_ready("mlp")
    x = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    inp = triton.InferInput("x", [2, 64], "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("y", binary_data=binary)
    result = client.infer("mlp", [inp], outputs=[out], request_id="t1")
    np.testing.assert_array_equal(result.as_numpy("y"), run_ort(mlp_onnx, {"x": x})["y"])
    assert result.get_response()["id"] == "t1"
    client.close()


def test_every_datatype_binary_and_json(start_server: StartServer, typed_onnx: Path) -> None:
    server = start_server(typed_onnx)
    client = triton.InferenceServerClient(server.url)
    rng = np.random.default_rng(3)
    arrays = {
        t: (rng.random((2, 3)) > 0.5 if t == "BOOL" else (rng.random((2, 3)) * 100)).astype(
            triton.triton_to_np_dtype(t)
        )
        for t in TYPED
    }
    for binary in (True, False):
        inputs = []
        for t, array in arrays.items():
            inp = triton.InferInput(f"in_{t}", [2, 3], t)
            inp.set_data_from_numpy(array, binary_data=binary or t == "FP16")
            inputs.append(inp)
        outputs = [triton.InferRequestedOutput(f"out_{t}", binary_data=binary or t == "FP16")
                   for t in TYPED]  # fmt: skip
        result = client.infer("typed", inputs, outputs=outputs)
        for t, array in arrays.items():
            got = result.as_numpy(f"out_{t}")
            assert got.dtype == array.dtype, t
            np.testing.assert_array_equal(got, array)
    client.close()


def test_multiple_inputs_outputs_subset(start_server: StartServer, multi_onnx: Path) -> None:
    server = start_server(multi_onnx)
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 1.5, np.float32)
    expected = run_ort(multi_onnx, {"a": a, "b": b})
    message = {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2, 4], "data": a.ravel().tolist()},
            {"name": "b", "datatype": "FP32", "shape": [2, 4], "data": b.ravel().tolist()},
        ],
        "outputs": [{"name": "prod"}],
    }
    status, reply = server.post_json("/v2/models/multi/infer", message)
    assert status == 200, reply
    assert [o["name"] for o in reply["outputs"]] == ["prod"]
    assert reply["outputs"][0]["datatype"] == "INT64"
    assert reply["outputs"][0]["data"] == expected["prod"].ravel().tolist()
    del message["outputs"]
    status, reply = server.post_json("/v2/models/multi/infer", message)
    assert {o["name"] for o in reply["outputs"]} == {"sum", "prod"}


def _bad_requests() -> list[tuple[str, int, bytes, dict[str, str], str]]:
    """(case, status, body, headers, a word the error must contain)."""

    def req(inputs: list[dict[str, object]], **extra: object) -> bytes:
        return json.dumps({"inputs": inputs, **extra}).encode()

    good = {"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}
    header = json.dumps(
        {"inputs": [{**good, "data": None, "parameters": {"binary_data_size": 256}}]}
    )
    header = header.replace('"data": null, ', "")
    return [
        ("malformed json", 400, b"{not json", {}, "JSON"),
        ("not an object", 400, b"[1, 2]", {}, "object"),
        ("no inputs", 400, b"{}", {}, "inputs"),
        ("unknown input", 400, req([{**good, "name": "z"}]), {}, "'z'"),
        ("missing input", 400, req([]), {}, "inputs"),
        ("wrong datatype", 400, req([{**good, "datatype": "INT32", "data": [0] * 64}]), {}, "'x'"),
        ("unknown datatype", 400, req([{**good, "datatype": "FLOAT"}]), {}, "'x'"),
        ("wrong shape", 400, req([{**good, "shape": [1, 32], "data": [0.0] * 32}]), {}, "'x'"),
        ("wrong rank", 400, req([{**good, "shape": [64]}]), {}, "'x'"),
        ("length mismatch", 400, req([{**good, "data": [0.0] * 63}]), {}, "'x'"),
        ("ragged nested", 400, req([{**good, "data": [[0.0] * 64, [1.0]]}]), {}, "'x'"),
        ("strings as FP32", 400, req([{**good, "data": ["a"] * 64}]), {}, "'x'"),
        ("unknown output", 400, req([good], outputs=[{"name": "nope"}]), {}, "'nope'"),
        ("binary size short", 400, header.encode() + b"\0" * 200,
         {"Inference-Header-Content-Length": str(len(header))}, "'x'"),
        ("binary size long", 400, header.encode() + b"\0" * 300,
         {"Inference-Header-Content-Length": str(len(header))}, "bytes"),
        ("bad header length", 400, header.encode() + b"\0" * 256,
         {"Inference-Header-Content-Length": "99999"}, "Inference-Header-Content-Length"),
        ("too large", 413, b"0" * 200_000, {}, "limit"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _bad_requests(), ids=lambda c: c[0])
def test_client_errors_then_good_request(mlp_server, case) -> None:  # type: ignore[no-untyped-def]
    _, expected_status, body, headers, word = case
    status, _, reply = mlp_server.request("POST", "/v2/models/mlp/infer", body, headers)
    assert status == expected_status, reply
    error = json.loads(reply)["error"]
    assert word in error, error
    good = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    assert mlp_server.post_json("/v2/models/mlp/infer", good)[0] == 200


def test_not_found(mlp_server: Server) -> None:
    for method, path in [
        ("POST", "/v2/models/other/infer"),
        ("POST", "/v2/models/mlp/versions/7/infer"),
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/mlp/versions/2"),
        ("GET", "/nothing"),
    ]:
        status, _, reply = mlp_server.request(method, path, b"{}" if method == "POST" else None)
        assert status == 404, (path, reply)
        assert "error" in json.loads(reply)


def test_metrics(start_server: StartServer, mlp_onnx: Path) -> None:
    mlp_server = start_server(mlp_onnx)
    good = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 64], "data": [0.0] * 128}]}
    for _ in range(3):
        mlp_server.post_json("/v2/models/mlp/infer", good)
    mlp_server.request("POST", "/v2/models/mlp/infer", b"{bad")
    text = mlp_server.metrics()
    assert metric_value(text, "inferplane_requests_total", model="mlp", outcome="success") == 3
    assert metric_value(text, "inferplane_requests_total", outcome="client_error") == 1
    assert metric_value(text, "inferplane_request_duration_seconds_count") == 4
    assert metric_value(text, "inferplane_batch_size_sum") == 6
    assert metric_value(text, "inferplane_compute_duration_seconds_count") == 3
    assert metric_value(text, "inferplane_in_flight_requests") == 0
    assert metric_value(text, "inferplane_model_load_seconds") > 0
    assert "inferplane_queue_depth" in text and "inferplane_queue_duration_seconds" in text


def test_repeated_binary_header_with_other_data(mlp_server: Server, mlp_onnx: Path) -> None:
    """Binary requests with a header seen before decode fast, and are still checked."""
    rng = np.random.default_rng(4)
    for _ in range(3):
        x = rng.standard_normal((2, 64)).astype(np.float32)
        status, body = binary_infer(mlp_server, "mlp", x)
        assert status == 200
        np.testing.assert_array_equal(binary_output(body, 2, 10), run_ort(mlp_onnx, {"x": x})["y"])
    tensor = {"name": "x", "datatype": "FP32", "shape": [2, 64]}
    tensor["parameters"] = {"binary_data_size": 512}
    header = json.dumps(
        {"inputs": [tensor], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}
    ).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    status, _, reply = mlp_server.request(
        "POST", "/v2/models/mlp/infer", header + bytes(500), headers
    )
    assert status == 400 and b"'x'" in reply


def test_chunked_bodies(mlp_server: Server, mlp_onnx: Path) -> None:
    """Bodies without Content-Length arrive in pieces; the size limit still holds."""
    x = np.random.default_rng(6).standard_normal((1, 64)).astype(np.float32)
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 64], "data": x.ravel().tolist()}
            ]
        }
    ).encode()
    conn = http.client.HTTPConnection(mlp_server.url, timeout=30)
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    conn.request("POST", "/v2/models/mlp/infer", body=iter(pieces), encode_chunked=True)
    response = conn.getresponse()
    reply = json.loads(response.read())
    assert response.status == 200, reply
    np.testing.assert_array_equal(
        np.array(reply["outputs"][0]["data"], np.float32), run_ort(mlp_onnx, {"x": x})["y"].ravel()
    )
    conn.close()
    conn = http.client.HTTPConnection(mlp_server.url, timeout=30)
    big = iter([b"[" + b"0," * 30_000] * 3 + [b"0]"])
    conn.request("POST", "/v2/models/mlp/infer", body=big, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and b"limit" in response.read()
    conn.close()
