# SPDX-License-Identifier: Apache-2.0
"""Request layouts and the response headers cached for them (pure functions, no server)."""

from __future__ import annotations

import json

import numpy as np

from inferplane.serving import protocol


def _binary_request(x: np.ndarray, *, request_id: str | None = None) -> tuple[bytes, int]:
    header: dict[str, object] = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(x.shape),
                "parameters": {"binary_data_size": x.nbytes},
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    if request_id is not None:
        header["id"] = request_id
    raw = json.dumps(header).encode()
    return raw + x.tobytes(), len(raw)


def _decode(body: bytes, header_length: int | None) -> tuple[dict[str, object], bytes]:
    if header_length is None:
        return json.loads(body), b""
    return json.loads(body[:header_length]), body[header_length:]


def test_from_layout_reads_the_same_places_of_another_body() -> None:
    first = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, length = _binary_request(first)
    template = protocol.parse_request(body, length)
    second = first + 100
    other, _ = _binary_request(second)
    inputs = protocol.from_layout(template, other)
    assert list(inputs) == ["x"]
    np.testing.assert_array_equal(inputs["x"], second)
    assert inputs["x"].dtype == np.float32


def test_a_cached_header_is_reused_only_for_the_same_output_shapes() -> None:
    body, length = _binary_request(np.zeros((2, 3), np.float32), request_id="r-7")
    request = protocol.parse_request(body, length)
    request.response_headers = {}
    two = np.arange(4, dtype=np.float32).reshape(2, 2)
    payload, header_length = protocol.encode_response("m", "1", request, {"y": two})
    assert header_length is not None and len(request.response_headers) == 1
    again, again_length = protocol.encode_response("m", "1", request, {"y": two + 1})
    message, data = _decode(again, again_length)
    assert again_length == header_length and again[:header_length] == payload[:header_length]
    assert message["id"] == "r-7"
    np.testing.assert_array_equal(np.frombuffer(data, np.float32).reshape(2, 2), two + 1)
    # Another shape: a new header, not the cached one.
    three = np.ones((3, 2), np.float32)
    reply, reply_length = protocol.encode_response("m", "1", request, {"y": three})
    message, data = _decode(reply, reply_length)
    assert message["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [3, 2], "parameters": {"binary_data_size": 24}}
    ]
    assert data == three.tobytes()
    assert len(request.response_headers) == 2


def test_variable_length_and_json_outputs_are_never_cached() -> None:
    body, length = _binary_request(np.zeros((1, 3), np.float32))
    request = protocol.parse_request(body, length)
    request.response_headers = {}
    words = np.array([[b"a"], [b"bcd"]], dtype=object)
    protocol.encode_response("m", "1", request, {"y": words})
    assert request.response_headers == {}
    reply, reply_length = protocol.encode_response(
        "m", "1", request, {"y": np.array([[b"longer"], [b"e"]], dtype=object)}
    )
    message, data = _decode(reply, reply_length)
    assert message["outputs"][0]["parameters"] == {"binary_data_size": len(data)}
    assert data == b"\x06\x00\x00\x00longer\x01\x00\x00\x00e"

    request.outputs = [("y", False)]
    reply, reply_length = protocol.encode_response(
        "m", "1", request, {"y": np.ones((1, 2), np.float32)}
    )
    assert reply_length is None and request.response_headers == {}
    assert json.loads(reply)["outputs"][0]["data"] == [1.0, 1.0]


def test_a_merged_batch_answers_each_request_with_its_own_rows() -> None:
    """Requests of one cached layout, of another (an id: never cached), of different row counts
    and with only one of two outputs: each answer equals encoding that request's rows alone."""
    cached_body, length = _binary_request(np.zeros((1, 3), np.float32))
    cached = protocol.parse_request(cached_body, length)
    cached.response_headers = {}
    tagged = protocol.parse_request(*_binary_request(np.zeros((2, 3), np.float32), request_id="t"))
    only_z = protocol.parse_request(*_binary_request(np.zeros((1, 3), np.float32)))
    only_z.outputs = [("z", True)]
    only_z.response_headers = {}
    requests = [cached, tagged, cached, only_z, cached, only_z]
    rows = [1, 2, 3, 1, 1, 1]
    merged = {
        "y": np.arange(9 * 2, dtype=np.float32).reshape(9, 2),
        "z": np.arange(9, dtype=np.int64).reshape(9, 1) * 7,
    }
    for _ in range(2):  # the second time from the cached headers
        replies = protocol.encode_batch("m", "1", requests, rows, merged)
        start = 0
        for request, n, reply in zip(requests, rows, replies, strict=True):
            own = {name: a[start : start + n] for name, a in merged.items()}
            assert reply == protocol.encode_response("m", "1", request, own)
            start += n
    assert len(cached.response_headers) == 2 and len(only_z.response_headers) == 1
    message, data = _decode(*replies[2])
    assert message["outputs"][0]["shape"] == [3, 2]
    np.testing.assert_array_equal(np.frombuffer(data[:24], np.float32), np.arange(6, 12))


def test_a_batch_of_one_layout_is_answered_from_slices_of_one_output() -> None:
    body, length = _binary_request(np.zeros((2, 3), np.float32))
    request = protocol.parse_request(body, length)
    request.response_headers = {}
    merged = {"y": np.arange(4 * 2 * 5, dtype=np.float32).reshape(8, 5)}
    alone = [{"y": merged["y"][i : i + 2]} for i in range(0, 8, 2)]
    expected = [protocol.encode_response("m", "1", request, own) for own in alone]
    assert len(request.response_headers) == 1
    assert protocol._sliced([request] * 4, [2] * 4, merged) == expected
    assert protocol.encode_batch("m", "1", [request] * 4, [2] * 4, merged) == expected
    # Rows that differ, or another request's template: not one layout, each encoded alone.
    assert protocol._sliced([request] * 2, [2, 6], merged) is None
    other = protocol.parse_request(body, length)
    other.response_headers = request.response_headers
    assert protocol._sliced([request, other, request, request], [2] * 4, merged) is None
