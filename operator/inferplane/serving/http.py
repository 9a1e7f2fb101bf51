# SPDX-License-Identifier: Apache-2.0
"""HTTP/1.1 for the data plane: one asyncio ``Protocol`` per connection on httptools, no ASGI.

Why not an ASGI server: for a small model its per-request layer (a scope dict, ``receive`` and
``send`` coroutines with message dicts, a task, two socket writes per response) cost the server
more CPU than the model and our own parsing together. Here httptools' callbacks collect one
request, the handler gets it as one object with a ``respond`` callback to call once, now or
when the model has run (no task, no future per request), and the response leaves in one write.

Kept from a general server: keep-alive (HTTP/1.1 default, HTTP/1.0 and ``Connection: close``),
chunked request bodies (httptools decodes them), ``Expect: 100-continue``, pipelined requests
answered in order, a body limit enforced before the body is read when Content-Length says so
(the handler answers at once, the rest of the body is discarded and the connection stays
usable), and graceful shutdown: stop accepting, finish every request begun, close the rest.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import httptools
import orjson

log = logging.getLogger("inferplane.serving")

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    413: b"Content Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}

_INTERNAL_ERROR = b'{"error":"internal error; see the server log"}'


@dataclass(slots=True)
class Request:
    method: bytes
    path: str
    headers: dict[bytes, bytes]
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes
    over_limit: bool = False
    """The body is over the server's limit: ``body`` is empty and the rest is discarded."""
    keep_alive: bool = True


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: bytes = b""
    """Further header lines, each ending in CRLF."""


Respond = Callable[[Response], None]
Handler = Callable[[Request, Respond], None]
"""Called once per request; it calls ``respond`` exactly once, at once or later."""


MAX_HEAD_BYTES = 64 << 10
"""A request line and headers larger than this get 400 and the connection closed (a client
cannot make the server buffer headers without end)."""

LINGER_S = 1.0
"""After the last answer on a connection the server closes its write side, then drains what the
client still sends for up to this long before closing: closing at once with unread input makes
the kernel reset the connection, and the client can lose the answer (a lingering close)."""

IDLE_TIMEOUT_S = 75.0
"""Default: keep-alive connections idle this long are closed. Longer than the usual proxy's idle
timeout (nginx 60 s), so that a proxy never reuses a connection the server is closing."""


class HttpServer:
    """Serves ``handler`` on a listening socket until ``shutdown``."""

    def __init__(
        self, handler: Handler, *, max_body: int, idle_timeout_s: float = IDLE_TIMEOUT_S
    ) -> None:
        self.handler = handler
        self.max_body = max_body
        self.idle_timeout_s = idle_timeout_s
        self.closing = False
        self.connections: set[Connection] = set()
        self.date = b""
        """The ``date`` header line, renewed every second."""
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), sock=sock)
        self._tick()

    def _tick(self) -> None:
        """Once a second: renew the date line, close connections idle too long."""
        loop = asyncio.get_running_loop()
        self.date = b"date: %s\r\n" % email.utils.formatdate(usegmt=True).encode()
        stale = loop.time() - self.idle_timeout_s
        for connection in list(self.connections):
            if connection.idle_since is not None and connection.idle_since < stale:
                connection.close_if_idle()
        self._ticker = loop.call_later(1.0, self._tick)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let every request begun finish (up to ``timeout_s``), close all."""
        self.closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        deadline = time.monotonic() + timeout_s
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def abort(self) -> None:
        for connection in list(self.connections):
            connection.abort()


class Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._handler = server.handler
        self._max_body = server.max_body
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._head_bytes = 0
        self._refusal = ""
        """Why a callback stopped the parser (httptools reports only that one did)."""
        self._chunks: list[bytes] = []
        self._size = 0
        self._discarding = False
        self._receiving = False
        """A request has begun arriving and is not yet complete."""
        self._ending = False
        """The last answer is decided: no further request is read (see ``LINGER_S``)."""
        self._current: Request | None = None
        """The request being answered (at most one: later ones wait in ``_waiting``)."""
        self._waiting: collections.deque[Request] = collections.deque()
        self.idle_since: float | None = None
        """Loop time since when no request is in progress (None: one is)."""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)
        self.idle_since = self._loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._ending:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse("protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(self._refusal or f"malformed HTTP request: {exc}")

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._receiving = True
        self.idle_since = None
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._chunks = []
        self._size = 0
        self._discarding = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value
        self._count_head(len(name) + len(value))

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refusal = f"request line and headers over {MAX_HEAD_BYTES} bytes"
            raise ValueError(self._refusal)  # httptools stops parsing and raises to feed_data

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._max_body:
            self._over_limit()
        elif self._headers.get(b"expect", b"").lower() == b"100-continue":
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._discarding:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._chunks = []
            self._over_limit()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._receiving = False
        if self._discarding:  # answered already (413)
            if self._current is None and not self._waiting:
                self.idle_since = self._loop.time()
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._enqueue(self._request(body, over_limit=False))

    # answering

    def _request(self, body: bytes, *, over_limit: bool) -> Request:
        url = self._url.split(b"?", 1)[0]
        path = urllib.parse.unquote(url.decode("latin-1")) if b"%" in url else url.decode()
        return Request(
            self._parser.get_method(),
            path,
            self._headers,
            body,
            over_limit,
            self._parser.should_keep_alive(),
        )

    def _over_limit(self) -> None:
        """Answer now (before the body is read); discard the rest of the body as it comes."""
        self._discarding = True
        self._enqueue(self._request(b"", over_limit=True))

    def _enqueue(self, request: Request) -> None:
        if self._current is None:
            self._dispatch(request)
            return
        self._waiting.append(request)
        if self._transport is not None:
            self._transport.pause_reading()

    def _dispatch(self, request: Request) -> None:
        self._current = request
        try:
            self._handler(request, self._respond)
        except Exception:  # the handler answers every error itself; this is the safety net
            log.exception("request failed")
            if self._current is request:
                self._respond(Response(500, _INTERNAL_ERROR))

    def _respond(self, response: Response) -> None:
        request = self._current
        if request is None:  # answered already: a second call is ignored
            return
        self._current = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = request.keep_alive and not self._server.closing and not self._ending
        body = response.body
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s%s%s\r\n" % (
            response.status,
            REASONS.get(response.status, b""),
            response.content_type,
            len(body),
            self._server.date,
            response.headers,
            b"" if keep_alive else b"connection: close\r\n",
        )
        if request.method == b"HEAD" or not body:
            transport.write(head)
        elif len(body) < 4096:
            transport.write(head + body)
        else:
            transport.writelines((head, body))
        if not keep_alive:
            self._end(transport)
            return
        if self._waiting:
            following = self._waiting.popleft()
            if not self._waiting:
                transport.resume_reading()
            self._dispatch(following)
        elif not self._receiving:
            self.idle_since = self._loop.time()

    def _refuse(self, message: str) -> None:
        """A request httptools cannot parse: answer 400 (after the one in progress, if any)
        and end the connection; the parser cannot find the next request."""
        if self._transport is None or self._ending:
            return
        self._ending = True
        self._waiting.clear()
        if self._current is None:
            self._current = Request(b"", "", {}, b"", keep_alive=False)
            self._respond(Response(400, orjson.dumps({"error": message})))

    def _end(self, transport: asyncio.Transport) -> None:
        """Close after the last answer: the write side now, the rest after ``LINGER_S``."""
        self._ending = True
        if transport.can_write_eof():
            transport.write_eof()
            self._loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def close_if_idle(self) -> None:
        if self._current is None and not self._receiving and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
