# SPDX-License-Identifier: Apache-2.0
"""The HTTP/1.1 layer (``serving.http``) over raw sockets against the real server process."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serving.conftest import Server


@pytest.fixture(scope="module")
def server(mlp_onnx: Path) -> Iterator[Server]:
    server = Server([str(mlp_onnx), "--max-request-bytes", "100000"])
    server.wait_ready()
    yield server
    assert server.stop() == 0


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


class Reader:
    """Reads HTTP/1.1 responses (Content-Length framed) off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed mid-response: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        return not self.buffer and not self._fill()


def infer_request(rows: int = 1, *, extra: str = "") -> bytes:
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [rows, 64], "data": [0.5] * 64 * rows}
            ]
        }
    ).encode()
    head = "POST /v2/models/mlp/infer HTTP/1.1\r\nHost: t\r\n"
    head += f"Content-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
            + infer_request(2)
            + b"GET /v2 HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"GET /v2/models/nope HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        reader = Reader(sock)
        answers = [reader.response() for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 404]
    assert json.loads(answers[0][2]) == {"live": True}
    assert json.loads(answers[1][2])["outputs"][0]["shape"] == [2, 10]
    assert json.loads(answers[2][2])["name"] == "inferplane"


def test_http10_closes_and_keep_alive_stays_open(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        reader = Reader(sock)
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert reader.closed()
    with connect(server) as sock:
        reader = Reader(sock)
        for _ in range(3):
            sock.sendall(infer_request())
            status, headers, _ = reader.response()
            assert status == 200 and "connection" not in headers
            assert headers["date"].endswith(" GMT")


def test_expect_100_continue(server: Server) -> None:
    request = infer_request(extra="Expect: 100-continue\r\n")
    head, body = request.split(b"\r\n\r\n", 1)
    with connect(server) as sock:
        sock.sendall(head + b"\r\n\r\n")
        reader = Reader(sock)
        assert reader.response()[0] == 100
        sock.sendall(body)
        assert reader.response()[0] == 200


def test_413_is_sent_before_the_body(server: Server) -> None:
    """Content-Length over the limit: the answer comes before a byte of the body is sent."""
    with connect(server) as sock:
        sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n")
        reader = Reader(sock)
        status, _, body = reader.response()
        assert status == 413 and "limit" in json.loads(body)["error"]
        sock.sendall(b"\0" * 5_000_000)  # discarded; the connection stays usable
        sock.sendall(infer_request())
        assert reader.response()[0] == 200


def test_malformed_request_is_400_and_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        reader = Reader(sock)
        status, _, body = reader.response()
        assert status == 400 and "malformed" in json.loads(body)["error"]
        assert reader.closed()
    assert server.request("GET", "/v2/health/live")[0] == 200


@pytest.mark.parametrize("where", ["headers", "url"])
def test_endless_headers_are_431_and_closed(server: Server, where: str) -> None:
    """A client cannot make the server buffer a request head without end."""
    filler = "a" * 8000
    with connect(server) as sock:
        if where == "url":
            sock.sendall(b"GET /v2?" + filler.encode() * 10 + b" HTTP/1.1\r\n")
        else:
            sock.sendall(b"GET /v2 HTTP/1.1\r\n")
            for i in range(10):
                sock.sendall(f"x-filler-{i}: {filler}\r\n".encode())
        sock.sendall(b"\r\n")
        reader = Reader(sock)
        status, _, body = reader.response()
        assert (status, json.loads(body)["error"]) in (
            (431, "request line and headers over 65536 bytes"),
            (414, "request target over 8192 bytes"),
        )
        assert reader.closed()
    assert server.request("GET", "/v2/health/live")[0] == 200


def test_idle_keep_alive_connections_are_closed(mlp_onnx: Path) -> None:
    server = Server([str(mlp_onnx), "--idle-timeout-s", "1"])
    try:
        server.wait_ready()
        with connect(server) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n\r\n")
            reader = Reader(sock)
            assert reader.response()[0] == 200
            started = time.monotonic()
            assert reader.closed()  # blocks until the server closes the idle connection
            assert 0.9 < time.monotonic() - started < 10
    finally:
        assert server.stop() == 0


def test_head_has_no_body(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"HEAD /v2 HTTP/1.1\r\nHost: t\r\n\r\nGET /v2/health/live HTTP/1.1\r\n\r\n")
        data = b""
        while data.count(b"\r\n\r\n") < 2 or not data.endswith(b"}"):
            data += sock.recv(65536)
    first, second = data.split(b"HTTP/1.1 200", 2)[1:]
    assert first.endswith(b"\r\n\r\n"), "HEAD answered with a body"
    assert second.endswith(b'{"live":true}')
