# SPDX-License-Identifier: Apache-2.0
"""The pure codecs and request parsing, table-driven, without a server."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from inferplane import errors
from inferplane.serving import codecs, protocol


@pytest.mark.parametrize(
    ("datatype", "data", "shape", "expected"),
    [
        ("FP32", [1, 2.5, 3, 4], [2, 2], np.array([[1, 2.5], [3, 4]], np.float32)),
        ("FP64", [[1.0, 2.0], [3.0, 4.0]], [2, 2], np.array([[1, 2], [3, 4]], np.float64)),
        ("INT8", [-128, 127], [2], np.array([-128, 127], np.int8)),
        ("UINT64", [2**64 - 1], [1], np.array([2**64 - 1], np.uint64)),
        ("INT64", [[1], [2]], [2, 1], np.array([[1], [2]], np.int64)),
        ("BOOL", [True, False, True], [1, 3], np.array([[True, False, True]])),
        ("FP32", [], [0, 4], np.zeros((0, 4), np.float32)),
        ("FP32", [0.1, 1e-40, True, 2**40], [4], np.array([0.1, 1e-40, 1, 2**40], np.float32)),
        ("FP64", [0.1, -3], [2], np.array([0.1, -3.0])),
    ],
)
def test_from_json(
    datatype: str, data: list[object], shape: list[int], expected: np.ndarray
) -> None:
    got = codecs.from_json("t", datatype, shape, data)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_bytes_from_json_nested() -> None:
    got = codecs.from_json("s", "BYTES", [2, 1], [["ab"], ["c"]])
    assert got.shape == (2, 1) and got.tolist() == [[b"ab"], [b"c"]]


@pytest.mark.parametrize(
    ("datatype", "data", "shape", "words"),
    [
        ("INT32", [1.5, 2], [2], "'t'"),
        ("UINT8", [300], [1], "out of range"),
        ("UINT8", [-1], [1], "out of range"),
        ("BOOL", [1, 0], [2], "'t'"),
        ("FP32", [1, 2, 3], [2, 2], "needs 4"),
        ("FP32", [[1, 2], [3]], [3], "'t'"),
        ("FP32", ["x"], [1], "'t'"),
        ("FP32", [1.0, "2.0"], [2], "not FP32"),
        ("FP64", [1.0, None], [2], "not FP64"),
        ("FP32", [1.0, [2.0]], [2], "'t'"),
        ("FP32", [1], [-1], "non-negative"),
        ("FP32", [1], "1", "non-negative"),
        ("FP16", [1.0], [1], "binary"),
        ("BYTES", [1], [1], "strings"),
        ("FP32", {"a": 1}, [1], "list"),
    ],
)
def test_from_json_errors(datatype: str, data: object, shape: object, words: str) -> None:
    with pytest.raises(errors.ProtocolError, match=words):
        codecs.from_json("t", datatype, shape, data)  # type: ignore[arg-type]


def test_from_binary_is_a_view_of_the_body() -> None:
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    body = b"HEADER" + x.tobytes()
    got = codecs.from_binary("x", "FP16", [2, 3], memoryview(body), 6, x.nbytes)
    np.testing.assert_array_equal(got, x)
    assert not got.flags.owndata and not got.flags.writeable


def test_binary_bytes_round_trip() -> None:
    array = np.array([b"a", b"", b"xyz"], dtype=object)
    raw = codecs.to_binary(array)
    assert raw == struct.pack("<I", 1) + b"a" + struct.pack("<I", 0) + struct.pack("<I", 3) + b"xyz"
    got = codecs.from_binary("s", "BYTES", [3], memoryview(raw), 0, len(raw))
    assert got.tolist() == [b"a", b"", b"xyz"]
    with pytest.raises(errors.ProtocolError, match="runs past"):
        codecs.from_binary("s", "BYTES", [3], memoryview(raw[:-1]), 0, len(raw) - 1)


def _binary_request(x: np.ndarray, **output: object) -> tuple[bytes, int]:
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape)}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = json.dumps({"id": "7", "inputs": [tensor], **output}).encode()
    return header + x.tobytes(), len(header)


def test_parse_and_encode_binary() -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    body, length = _binary_request(x, parameters={"binary_data_output": True})
    request = protocol.parse_request(body, length)
    np.testing.assert_array_equal(request.inputs["x"], x)
    assert request.id == "7" and request.outputs is None and request.binary_output
    payload, json_length = protocol.encode_response("m", "1", request, {"y": x * 2})
    assert json_length is not None
    header = json.loads(payload[:json_length])
    assert header["id"] == "7"
    assert header["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}
    ]
    np.testing.assert_array_equal(np.frombuffer(payload[json_length:], np.float32), [0, 2, 4, 6])


def test_per_output_binary_flag_overrides_default() -> None:
    x = np.ones((1, 2), np.float32)
    outputs = [{"name": "y", "parameters": {"binary_data": False}}]
    body, length = _binary_request(x, outputs=outputs, parameters={"binary_data_output": True})
    request = protocol.parse_request(body, length)
    payload, json_length = protocol.encode_response("m", "1", request, {"y": x})
    assert json_length is None
    assert json.loads(payload)["outputs"][0]["data"] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda b, n: (b + b"\0", n), "beyond"),
        (lambda b, n: (b[:-1], n), "past the end"),
        (lambda b, n: (b, len(b) + 1), "does not fit"),
        (lambda b, n: (b[n:], None), "not valid JSON"),
    ],
)
def test_binary_framing_errors(mutate, words: str) -> None:  # type: ignore[no-untyped-def]
    body, length = _binary_request(np.ones((1, 4), np.float32))
    with pytest.raises(errors.ProtocolError, match=words):
        protocol.parse_request(*mutate(body, length))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([0, 2**63 - 1], "too large"),
        ([0, 2**62, 2**62], "too large"),
        ([2**21, 2**20], "too large"),
        ([1] * 33, "at most 32"),
        ([1, -1], "non-negative"),
        ([1.5], "non-negative"),
        ("x" * 1000, "non-negative"),
    ],
)
@pytest.mark.parametrize("form", ["json", "binary"])
def test_absurd_shapes_are_protocol_errors(shape: object, message: str, form: str) -> None:
    """Checked before any reshape or allocation: a ProtocolError (400), never numpy's error."""
    with pytest.raises(errors.ProtocolError, match=message) as caught:
        if form == "json":
            codecs.from_json("t", "FP32", shape, [])  # type: ignore[arg-type]
        else:
            codecs.from_binary("t", "FP32", shape, memoryview(b""), 0, 0)  # type: ignore[arg-type]
    assert len(str(caught.value)) < 300, "client data echoed at length"
