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
usable), and a graceful drain and shutdown.

Held against hostile clients (the limits are ``limits.HttpLimits``): the head is counted in raw
bytes as it arrives, headers and the URL are bounded, a head and a body have deadlines, and
llhttp (under httptools) refuses ambiguous framing (Content-Length with Transfer-Encoding,
repeated Content-Length, bare LF, obs-fold, chunk sizes that overflow). Pipelined requests are
answered by a loop (``_pump``), never by recursion; the bytes of later requests are parsed only
once the earlier ones are answered, in slices of ``FEED_BYTES``, and reading pauses while any
wait (back-pressure), and while the client leaves its answers unread (flow control).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import logging
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import httptools
import orjson

from inferplane.serving.limits import HttpLimits

log = logging.getLogger("inferplane.serving")

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
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


LINGER_S = 1.0
"""After the last answer on a connection the server closes its write side, then drains what the
client still sends for up to this long before closing: closing at once with unread input makes
the kernel reset the connection, and the client can lose the answer (a lingering close)."""

FEED_BYTES = 16 << 10
"""Received bytes are parsed in slices of at most this (a body's known remainder in one): the
requests parsed from one slice are the most that can wait behind a slow one on a connection."""

TICK_S = 1.0
"""How often the date line is renewed and deadlines are checked: a limit fires between its
value and two ticks after."""

STALLED_S = 1.0
"""At shutdown, a connection whose request has not progressed for this long (and up to a
tick more: its last byte's time is read off the tick) is cut."""


class HttpServer:
    """Serves ``handler`` on a listening socket until ``shutdown``."""

    def __init__(self, handler: Handler, limits: HttpLimits) -> None:
        self.handler = handler
        self.limits = limits
        self.closing = False
        """Draining or shutting down: every answer carries ``Connection: close``."""
        self.connections: set[Connection] = set()
        self.date = b""
        """The ``date`` header line, renewed every second."""
        self.now = 0.0
        """The loop's time at the last tick: deadlines need no finer clock than the tick that
        checks them, and reading it costs less than a call per request."""
        self._server: asyncio.AbstractServer | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._aborted = asyncio.Event()

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), sock=sock)
        self._tick()

    def _tick(self) -> None:
        """Once a second: renew the date line, enforce the connections' deadlines."""
        loop = asyncio.get_running_loop()
        self.date = b"date: %s\r\n" % email.utils.formatdate(usegmt=True).encode()
        self.now = now = loop.time()
        for connection in list(self.connections):
            connection.check_deadlines(now)
        self._ticker = loop.call_later(TICK_S, self._tick)

    async def drain(self, drain_s: float) -> None:
        """Keep serving and accepting for ``drain_s`` (endpoints move away meanwhile), each
        answer closing its connection; ``abort`` ends the wait early."""
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._aborted.wait(), drain_s)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, let every request begun finish (up to ``timeout_s``), close idle
        connections at once and cut those whose request has stalled; then close all."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.connections and loop.time() < deadline and not self._aborted.is_set():
            stalled = self.now - STALLED_S - TICK_S  # ``last_data`` is read off the tick
            for connection in list(self.connections):
                connection.close_if_idle(stalled)
            await asyncio.sleep(0.01)
        if self._ticker is not None:
            self._ticker.cancel()
        self.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def abort(self) -> None:
        self._aborted.set()
        for connection in list(self.connections):
            connection.abort()


class Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self._handler = server.handler
        self._max_body = server.limits.max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._last_url = b""
        """The previous request's target and its decoded path (a cache of one)."""
        self._last_path = ""
        self._headers: dict[bytes, bytes] = {}
        self._header_count = 0
        self._in_head = True
        """Between requests or inside a head: received bytes count against the head limit."""
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None
        """Why a callback stopped the parser (httptools reports only that one did)."""
        self._chunks: list[bytes] = []
        self._size = 0
        self._body_left = 0
        """Bytes of the body still to come, when Content-Length gave its size."""
        self._discarding = False
        self._receiving = False
        """A request has begun arriving and is not yet complete."""
        self._ending = False
        """The last answer is decided: no further request is read (see ``LINGER_S``)."""
        self._current: Request | None = None
        """The request being answered (at most one: later ones wait in ``_waiting``)."""
        self._waiting: collections.deque[Request] = collections.deque()
        self._unparsed: bytes | memoryview = b""
        """Received, not yet parsed: held while an earlier request is answered."""
        self._pumping = False
        self._eof = False
        """The client closed its side: answer what it sent, then close."""
        self._reading = True
        self._write_paused = False
        self._since = 0.0
        """When the connection's present phase began (read off the tick): idle since the last
        answer, or receiving a head or a body since its start. ``check_deadlines`` derives the
        phase's deadline from it, so the request path sets one float per phase and no more."""
        self._send_deadline: float | None = None
        """Set while the client leaves its answers unread (writing paused)."""
        self.last_data = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        server = self._server
        if len(server.connections) >= self._limits.max_connections:
            self._ending = True
            message = f"over {self._limits.max_connections} connections; retry"
            self._write(Response(503, orjson.dumps({"error": message})), b"GET", False)
            self._end(self._transport)  # type: ignore[arg-type]
            return
        server.connections.add(self)
        self.last_data = self._since = self._server.now

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._ending:
            return
        self.last_data = self._server.now
        if (
            self._pumping
            or self._unparsed
            or self._current is not None
            or self._write_paused
            or len(data) > FEED_BYTES
        ):
            self._unparsed = bytes(self._unparsed) + data if self._unparsed else data
            if not self._pumping:
                self._pump()
            return
        # The common case (nothing held, nothing being answered, at most a slice): parse it
        # here, as ``_pump`` would; the requests it completes are answered in on_message_complete.
        self._pumping = True
        try:
            self._parse(data)
        finally:
            self._pumping = False
        if self._waiting:
            self._pump()

    def eof_received(self) -> bool:
        """The client will send nothing more: answer what it sent (a request cut short gets
        400), then close; keep the transport open for writing meanwhile."""
        self._eof = True
        if self._ending and self._current is None:
            # The last answer is written and the client has closed its side: the lingering
            # close is over, and the connection no longer counts against the limit.
            self._transport.close()  # type: ignore[union-attr]
            return True
        if not self._pumping:
            self._pump()
        return True

    def pause_writing(self) -> None:
        """The client does not read its answers fast enough: answer and read nothing more."""
        self._write_paused = True
        self._send_deadline = self._loop.time() + self._limits.idle_timeout_s
        self._flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._send_deadline = None
        if not self._pumping:
            self._pump()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._receiving = True
        self._url = b""
        self._headers = {}
        self._header_count = 0
        self._chunks = []
        self._size = 0
        self._body_left = 0
        self._discarding = False
        self._since = self._server.now

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_url_bytes:
            self._stop(414, f"request target over {self._limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value
        self._header_count += 1
        if self._header_count > self._limits.max_headers:
            self._stop(431, f"over {self._limits.max_headers} header fields")

    def _head_size(self) -> int:
        return len(self._url) + sum(len(k) + len(v) + 4 for k, v in self._headers.items())

    def _head_too_large(self) -> str:
        return f"request line and headers over {self._limits.max_head_bytes} bytes"

    def _stop(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        raise ValueError(message)  # httptools stops parsing and raises to feed_data

    def on_headers_complete(self) -> None:
        if self._head_bytes > self._limits.max_head_bytes - FEED_BYTES and self._head_size() > (
            self._limits.max_head_bytes
        ):  # a head that ends inside the slice that took the raw count over the limit
            self._stop(431, self._head_too_large())
        self._in_head = False
        self._head_bytes = 0
        self._since = self._server.now
        length = self._headers.get(b"content-length", b"")
        if length.isdigit():
            self._body_left = int(length)
            if self._body_left > self._max_body:
                self._over_limit()
                return
        if self._headers.get(b"expect", b"").lower() == b"100-continue":
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
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
        self._in_head = True
        if self._discarding:  # answered already (413)
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        request = self._request(body, over_limit=False)
        if (
            self._current is None
            and not self._waiting
            and not self._ending
            and not self._write_paused
        ):
            # The common case: nothing before it. Answered here, inside the parser's callback;
            # a request the handler answers at once comes back to this point, so pipelined
            # requests in one slice are answered one after the other, never by recursion.
            self._dispatch(request)
        else:
            self._waiting.append(request)

    # parsing and answering, in a loop

    def _pump(self) -> None:
        """Answer what waits, parse what is held, until a request is answered later (by the
        batcher), the client stops reading, or nothing is left; then set reading and the idle
        deadline. The handler's ``respond`` comes back here only when called later."""
        self._pumping = True
        try:
            while self._current is None and not self._ending and not self._write_paused:
                if self._waiting:
                    self._dispatch(self._waiting.popleft())
                elif self._unparsed:
                    self._feed()
                else:
                    break
        finally:
            self._pumping = False
        if self._eof and self._current is None and not self._waiting and not self._unparsed:
            self._at_eof()
        if (not self._unparsed and not self._write_paused) is not self._reading:
            self._flow()

    def _at_eof(self) -> None:
        transport = self._transport
        if self._ending or transport is None:
            return
        if self._receiving:
            self._refuse(400, "the connection ended in the middle of a request")
        else:
            self._ending = True
            transport.close()

    def _flow(self) -> None:
        """Read while nothing is held unparsed and the client reads its answers."""
        transport = self._transport
        reading = not self._unparsed and not self._write_paused
        if reading is not self._reading and transport is not None and not transport.is_closing():
            self._reading = reading
            if reading:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _feed(self) -> None:
        """Parse one slice of what is held (a known body's remainder in one piece)."""
        data = self._unparsed
        size = max(FEED_BYTES, self._body_left) if not self._in_head else FEED_BYTES
        if len(data) <= size:
            self._unparsed = b""
        else:
            view = memoryview(data)
            data, self._unparsed = view[:size], view[size:]
        self._parse(data)

    def _parse(self, data: bytes | memoryview) -> None:
        """Feed one slice to the parser: its bytes count against the head limit while a head
        is open; a refusal from the parser or a callback answers and ends the connection."""
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(*(self._refusal or (400, f"malformed HTTP request: {exc}")))
        else:
            if self._in_head and self._head_bytes > self._limits.max_head_bytes:
                self._refuse(431, self._head_too_large())

    def _request(self, body: bytes, *, over_limit: bool) -> Request:
        url = self._url
        if url == self._last_url:  # a client sends the same target again and again
            path = self._last_path
        else:
            target = url.split(b"?", 1)[0]
            if b"%" in target:
                path = urllib.parse.unquote(target.decode("latin-1"))
            else:
                path = target.decode()
            self._last_url, self._last_path = url, path
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
        self._waiting.append(self._request(b"", over_limit=True))

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
        if not self._receiving:
            self._since = self._server.now  # idle from here
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = request.keep_alive and not self._server.closing and not self._ending
        self._write(response, request.method, keep_alive)
        if not keep_alive:
            self._end(transport)
        elif not self._pumping:
            self._pump()

    def _write(self, response: Response, method: bytes, keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
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
        if method == b"HEAD" or not body:
            transport.write(head)
        elif len(body) < 4096:
            transport.write(head + body)
        else:
            transport.writelines((head, body))

    def _refuse(self, status: int, message: str) -> None:
        """A request that cannot be read on: answer ``status`` (after the one in progress, if
        any) and end the connection; the parser cannot find the next request."""
        if self._transport is None or self._ending:
            return
        self._ending = True
        self._waiting.clear()
        self._unparsed = b""
        if self._current is None:
            self._current = Request(b"", "", {}, b"", keep_alive=False)
            self._respond(Response(status, orjson.dumps({"error": message})))

    def _end(self, transport: asyncio.Transport) -> None:
        """Close after the last answer: the write side now, the rest after ``LINGER_S`` or
        when the client closes its side, whichever comes first."""
        self._ending = True
        if not self._eof and transport.can_write_eof():
            transport.write_eof()
            self._loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def check_deadlines(self, now: float) -> None:
        """Close an idle connection, answer 408 to a late request, cut a client that leaves
        its answers unread; a request being answered has no deadline. Deadlines were set from
        the last tick's time (up to a tick early): one tick more, and none fires early."""
        now -= TICK_S
        if self._send_deadline is not None and now > self._send_deadline:
            self.abort()
            return
        if self._current is not None or self._ending or self._transport is None:
            return
        limits = self._limits
        if not self._receiving:
            if now > self._since + limits.idle_timeout_s:
                self._transport.close()
            return
        what, limit = ("head", limits.head_timeout_s) if self._in_head else (
            "body", limits.body_timeout_s)  # fmt: skip
        if now > self._since + limit:
            self._refuse(408, f"request {what} not received within {limit:g} s")

    def close_if_idle(self, stalled_before: float) -> None:
        """At shutdown: close if no request is in progress, cut if its request stalled."""
        if self._current is not None or self._waiting or self._transport is None or self._ending:
            return
        if not self._receiving:
            self._transport.close()
        elif self.last_data < stalled_before:
            self._transport.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
