# SPDX-License-Identifier: Apache-2.0
"""Property-based fuzzing (hypothesis) of V2 requests and raw HTTP heads, against the real server.

Properties: never a 5xx, never a connection dropped without an answer, never a crash (the server
answers afterwards and its log has no traceback). CI runs ``FUZZ_EXAMPLES`` cases per property;
the recorded fuzz run sets ``INFERPLANE_FUZZ_EXAMPLES`` (docs/benchmarks.md: 10,000 and more).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.serving.conftest import Server

FUZZ_EXAMPLES = int(os.environ.get("INFERPLANE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def server(multi_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The two-input model (``a, b: [batch, 4]`` FP32 -> FP32 and INT64), small limits."""
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    server = Server(
        [str(multi_onnx), "--max-request-bytes", "200000", "--head-timeout-s", "2",
         "--body-timeout-s", "2"],
        log=log,
    )  # fmt: skip
    server.wait_ready()
    yield server
    assert server.stop() == 0
    text = server.log_text()
    assert "Traceback" not in text, text[-3000:]


def exchange(server: Server, data: bytes) -> bytes:
    """Send ``data``, close our side, read everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def statuses(answer: bytes) -> list[int]:
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: fuzz\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + body


numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
)
scalars = st.one_of(numbers, st.text(max_size=8), st.none())
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)
dims = st.one_of(
    st.integers(min_value=0, max_value=5),
    st.sampled_from([-1, 2**31, 2**62, 2**63 - 1, 2**64]),
    scalars,
)
shapes = st.one_of(st.lists(dims, max_size=5), json_values)
datatypes = st.one_of(
    st.sampled_from(["FP32", "FP64", "FP16", "INT64", "INT8", "UINT8", "BOOL", "BYTES"]),
    st.text(max_size=6),
)
data = st.one_of(
    st.lists(numbers, max_size=24),
    st.lists(st.lists(numbers, max_size=4), max_size=6),
    st.lists(st.text(max_size=4), max_size=8),
    json_values,
)


@st.composite
def tensors(draw: st.DrawFn, binary: bool) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["a", "b", "c"]) | st.text(max_size=4)),
        "datatype": draw(datatypes),
        "shape": draw(shapes),
    }
    if binary:
        size = draw(st.integers(min_value=-4, max_value=300) | st.sampled_from([2**63, 2**64]))
        tensor["parameters"] = {"binary_data_size": size}
    else:
        tensor["data"] = draw(data)
    if draw(st.booleans()):
        return draw(st.dictionaries(st.sampled_from(list(tensor)), json_values)) | tensor
    return tensor


@st.composite
def requests(draw: st.DrawFn, binary: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"inputs": draw(st.lists(tensors(binary), max_size=3))}
    for key in ("id", "parameters", "outputs"):
        if draw(st.booleans()):
            message[key] = draw(json_values)
    return message


def assert_answered(answer: bytes, expected: int = 1) -> None:
    codes = statuses(answer)
    assert len(codes) >= expected, f"no answer: {answer[:300]!r}"
    assert all(code < 500 for code in codes), answer[:500]


@FUZZ
@given(message=requests(binary=False) | json_values)
def test_json_requests(server: Server, message: Any) -> None:
    body = json.dumps(message).encode()
    assert_answered(exchange(server, post("/v2/models/multi/infer", body)))


@FUZZ
@given(message=requests(binary=True), tail=st.binary(max_size=600), skew=st.integers(-8, 8))
def test_binary_requests(server: Server, message: Any, tail: bytes, skew: int) -> None:
    header = json.dumps(message).encode()
    length = str(len(header) + skew)
    data = post(
        "/v2/models/multi/infer", header + tail, {"Inference-Header-Content-Length": length}
    )
    assert_answered(exchange(server, data))


tokens = st.sampled_from(
    [b"GET", b"POST", b"HEAD", b"PUT", b" ", b"/", b"/v2", b"/v2/models/multi/infer",
     b"/v2/health/ready", b"?", b"%", b"%00", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"\r\n",
     b"\n", b"\r", b":", b": ", b"Host", b"Content-Length", b"Transfer-Encoding", b"chunked",
     b"Connection", b"close", b"keep-alive", b"Expect", b"100-continue", b"Upgrade",
     b"Inference-Header-Content-Length", b"0", b"5", b"-1", b"ffffffffffffffffff", b",",
     b"\t", b"\x00", b"\xff", b"{}", b'{"inputs":[]}', b"a" * 100]
)  # fmt: skip


@FUZZ
@given(parts=st.lists(tokens, max_size=40), end=st.booleans())
def test_raw_heads(server: Server, parts: list[bytes], end: bool) -> None:
    """Random HTTP-ish bytes: whatever was sent that begins a request gets an answer."""
    data = b"".join(parts) + (b"\r\n\r\n" if end else b"")
    answer = exchange(server, data)
    if data.strip(b"\r\n"):
        assert_answered(answer)
    else:
        assert not answer


def test_the_server_still_answers(server: Server) -> None:
    message = {"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
                          for n in ("a", "b")]}  # fmt: skip
    status, answer = server.post_json("/v2/models/multi/infer", message)
    assert status == 200 and answer["outputs"][0]["data"] == [2, 4, 6, 8]
