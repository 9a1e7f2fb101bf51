# SPDX-License-Identifier: Apache-2.0
"""The HTTP app: a hand-written ASGI callable for the V2 REST routes.

No framework: routing is a dict lookup on the exact path for the served model's routes (built
once), with a slower parse only for paths that will end in a 404. Every ``InferplaneError`` maps
to a status code here and nowhere else, with the body ``{"error": "..."}``; anything unexpected
is a 500 that is logged, and the server keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from inferplane import errors
from inferplane.serving import metrics as metrics_module
from inferplane.serving import protocol
from inferplane.serving.dataplane import DataPlane

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("inferplane.serving")

_JSON_TYPE = (b"content-type", b"application/json")
OCTETS = b"application/octet-stream"
_LIVE = b'{"live":true}'
_READY = b'{"ready":true}'

# Route kinds.
_INFER, _MODEL_META, _MODEL_READY = 1, 2, 3


def status_of(exc: errors.InferplaneError) -> int:
    if isinstance(exc, errors.ModelNotFound):
        return 404
    if isinstance(exc, errors.RequestTooLarge):
        return 413
    if isinstance(exc, errors.Unavailable):
        return 503
    if isinstance(exc, errors.ProtocolError):
        return 400
    return 500


class App:
    """The ASGI app for one DataPlane; ``max_request_bytes`` bounds every body."""

    def __init__(self, dataplane: DataPlane, *, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        self.max_request_bytes = max_request_bytes
        self._routes: dict[str, tuple[int, str | None]] = {}
        for version in (None, dataplane.version):
            base = f"/v2/models/{dataplane.name}"
            if version is not None:
                base += f"/versions/{version}"
            self._routes[base + "/infer"] = (_INFER, version)
            self._routes[base] = (_MODEL_META, version)
            self._routes[base + "/ready"] = (_MODEL_READY, version)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        route = self._routes.get(path)
        try:
            if route is not None and route[0] == _INFER:
                if scope["method"] != "POST":
                    raise errors.ProtocolError(f"{path} takes POST")
                await self._infer(scope, receive, send)
                return
            if route is None:
                await self._other(path, scope["method"], send)
                return
            if scope["method"] not in ("GET", "HEAD"):
                raise errors.ProtocolError(f"{path} takes GET")
            await self._model_route(route[0], send)
        except errors.InferplaneError as exc:
            await _error(send, exc)

    async def _model_route(self, kind: int, send: Send) -> None:
        plane = self.dataplane
        if kind == _MODEL_META:
            await _respond(send, 200, plane.metadata())
        elif plane.ready:
            await _respond(send, 200, _READY)
        else:
            raise errors.Unavailable(f"model '{plane.name}' is loading")

    async def _other(self, path: str, method: str, send: Send) -> None:
        plane = self.dataplane
        if path.startswith("/v2/models/"):
            parts = path[len("/v2/models/") :].split("/")
            version = parts[2] if len(parts) >= 3 and parts[1] == "versions" else None
            plane.check_model(parts[0], version)
            raise errors.ModelNotFound(f"no route {path}")
        if method not in ("GET", "HEAD"):
            raise errors.ProtocolError(f"{path} takes GET")
        if path == "/v2/health/live":
            await _respond(send, 200, _LIVE)
        elif path == "/v2/health/ready":
            if not plane.ready:
                raise errors.Unavailable("the model is loading")
            await _respond(send, 200, _READY)
        elif path in ("/v2", "/v2/"):
            await _respond(send, 200, plane.server_metadata)
        elif path == "/metrics":
            body = plane.metrics.render()
            headers = [
                (b"content-type", metrics_module.CONTENT_TYPE.encode()),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        else:
            raise errors.ModelNotFound(f"no route {path}")

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        plane = self.dataplane
        metrics = plane.metrics
        metrics.in_flight += 1
        outcome = "success"
        try:
            header_length: int | None = None
            limit = self.max_request_bytes
            for key, value in scope["headers"]:
                if key == b"content-length":
                    if int(value) > limit:
                        raise errors.RequestTooLarge(
                            f"request body of {int(value)} bytes is over the limit of {limit}"
                        )
                elif key == b"inference-header-content-length":
                    try:
                        header_length = int(value)
                    except ValueError:
                        raise errors.ProtocolError(
                            f"Inference-Header-Content-Length {value!r} is not an integer"
                        ) from None
            body = await _read_body(receive, limit)
            payload, json_length = await plane.infer(body, header_length)
            if json_length is None:
                headers = [_JSON_TYPE, (b"content-length", b"%d" % len(payload))]
            else:
                headers = [
                    (b"content-type", OCTETS),
                    (b"content-length", b"%d" % len(payload)),
                    (b"inference-header-content-length", b"%d" % json_length),
                ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        except errors.InferplaneError as exc:
            outcome = _OUTCOMES.get(status_of(exc), "server_error")
            if outcome == "server_error":
                log.error("inference failed: %s", exc)
            await _error(send, exc)
        except Exception:
            outcome = "server_error"
            log.exception("inference failed")
            await _error(send, errors.BackendError("internal error; see the server log"))
        finally:
            metrics.in_flight -= 1
            metrics.count(outcome)
            metrics.request_seconds.observe(time.perf_counter() - started)


_OUTCOMES = {400: "client_error", 404: "not_found", 413: "too_large", 503: "unavailable"}


async def _read_body(receive: Receive, limit: int) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.RequestTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [_JSON_TYPE, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, exc: errors.InferplaneError) -> None:
    status = status_of(exc)
    body = protocol.error_body(str(exc))
    headers = [_JSON_TYPE, (b"content-length", b"%d" % len(body))]
    if isinstance(exc, errors.Unavailable):
        headers.append((b"retry-after", str(max(1, round(exc.retry_after_s))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
