# SPDX-License-Identifier: Apache-2.0
"""The V2 REST routes: one handler from an HTTP request to a response, over one DataPlane.

No framework: routing is a dict lookup on the exact path for the served model's routes (built
once), with a slower parse only for paths that will end in a 404. Every ``InferplaneError`` maps
to a status code here and nowhere else, with the body ``{"error": "..."}``; anything unexpected
is a 500 that is logged, and the server keeps serving. Inline models answer at once; a request
that waits for the batcher or the worker thread is answered from the batcher's callback.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Final

from inferplane import errors
from inferplane.serving import metrics as metrics_module
from inferplane.serving import protocol
from inferplane.serving.codecs import brief
from inferplane.serving.dataplane import DataPlane, Reply
from inferplane.serving.http import Request, Respond, Response

log = logging.getLogger("inferplane.serving")

OCTETS: Final = b"application/octet-stream"
_LIVE: Final = Response(200, b'{"live":true}')
_READY: Final = Response(200, b'{"ready":true}')
_METRICS_TYPE: Final = metrics_module.CONTENT_TYPE.encode()

# Route kinds.
_INFER: Final = 1
_MODEL_META: Final = 2
_MODEL_READY: Final = 3


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
    """The request handler for one DataPlane; ``max_request_bytes`` bounds every body."""

    def __init__(self, dataplane: DataPlane, *, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        dataplane.answer = self._finish
        self.max_request_bytes = max_request_bytes
        self._routes: dict[str, tuple[int, str | None]] = {}
        for version in (None, dataplane.version):
            base = f"/v2/models/{dataplane.name}"
            if version is not None:
                base += f"/versions/{version}"
            self._routes[base + "/infer"] = (_INFER, version)
            self._routes[base] = (_MODEL_META, version)
            self._routes[base + "/ready"] = (_MODEL_READY, version)

    def __call__(self, request: Request, respond: Respond) -> None:
        path = request.path
        route = self._routes.get(path)
        try:
            if route is not None and route[0] == _INFER:
                if request.method != b"POST":
                    raise errors.ProtocolError(f"{path} takes POST")
                self._infer(request, respond)
                return
            if route is None:
                response = self._other(path, request.method)
            elif request.method not in (b"GET", b"HEAD"):
                raise errors.ProtocolError(f"{path} takes GET")
            else:
                response = self._model_route(route[0])
        except errors.InferplaneError as exc:
            response = _error(exc)
        respond(response)

    def _model_route(self, kind: int) -> Response:
        plane = self.dataplane
        if kind == _MODEL_META:
            return Response(200, plane.metadata())
        if plane.ready:
            return _READY
        raise _not_ready(plane)

    def _other(self, path: str, method: bytes) -> Response:
        plane = self.dataplane
        if path.startswith("/v2/models/"):
            parts = path[len("/v2/models/") :].split("/")
            version = parts[2] if len(parts) >= 3 and parts[1] == "versions" else None
            plane.check_model(parts[0], version)
            raise errors.ModelNotFound(f"no route {path}")
        if method not in (b"GET", b"HEAD"):
            raise errors.ProtocolError(f"{path} takes GET")
        if path == "/v2/health/live":
            return _LIVE
        if path == "/v2/health/ready":
            if not plane.ready:
                raise _not_ready(plane)
            return _READY
        if path in ("/v2", "/v2/"):
            return Response(200, plane.server_metadata)
        if path == "/metrics":
            return Response(200, plane.metrics.render(), _METRICS_TYPE)
        raise errors.ModelNotFound(f"no route {path}")

    def _infer(self, request: Request, respond: Respond) -> None:
        token = (perf_counter(), respond)
        plane = self.dataplane
        plane.metrics.in_flight += 1
        try:
            limit = self.max_request_bytes
            if request.over_limit:
                size = request.headers.get(b"content-length", b"")
                raise errors.RequestTooLarge(
                    f"request body of {int(size)} bytes is over the limit of {limit}"
                    if size.isdigit()
                    else f"request body is over the limit of {limit} bytes"
                )
            header_length: int | None = None
            value = request.headers.get(b"inference-header-content-length")
            if value is not None:
                try:
                    header_length = int(value)
                except ValueError:
                    raise errors.ProtocolError(
                        f"Inference-Header-Content-Length {brief(value)} is not an integer"
                    ) from None
            plane.infer(request.body, header_length, token)
        except Exception as exc:  # raised before the request was answered: nothing was queued
            self._finish([token], [_failure(exc)])

    def _finish(
        self, tokens: list[tuple[float, Respond]], results: list[Reply | errors.InferplaneError]
    ) -> None:
        """Answer requests (a token: when the request started, where its response goes)."""
        metrics = self.dataplane.metrics
        metrics.in_flight -= len(tokens)
        observe = metrics.request_seconds.observe
        now = perf_counter()
        succeeded = 0
        for (started, respond), result in zip(tokens, results):  # noqa: B905 (equal lengths)
            observe(now - started)
            if type(result) is tuple:
                succeeded += 1
                payload, json_length = result
                if json_length is None:
                    respond(Response(200, payload))
                else:
                    line = _LENGTH_LINES.get(json_length) or _length_line(json_length)
                    respond(Response(200, payload, OCTETS, line))
                continue
            assert isinstance(result, errors.InferplaneError)
            status = status_of(result)
            if status == 500 and result is not _INTERNAL:
                log.error("inference failed: %s", result)
            metrics.count(_OUTCOMES.get(status, "server_error"))
            respond(_error(result))
        if succeeded:
            metrics.count("success", succeeded)


def _length_line(json_length: int) -> bytes:
    line = b"inference-header-content-length: %d\r\n" % json_length
    if len(_LENGTH_LINES) < LENGTH_LINES:
        _LENGTH_LINES[json_length] = line
    return line


LENGTH_LINES: Final = 1024
"""Distinct ``inference-header-content-length`` lines kept formatted (the JSON header of a
binary answer has few lengths: those of the layouts clients send)."""

_LENGTH_LINES: Final[dict[int, bytes]] = {}


_INTERNAL: Final = errors.BackendError("internal error; see the server log")
"""What the client gets for an unexpected exception (logged with its trace where caught)."""

_OUTCOMES: Final = {400: "client_error", 404: "not_found", 413: "too_large", 503: "unavailable"}


def _not_ready(plane: DataPlane) -> errors.Unavailable:
    if plane.draining:
        return errors.Unavailable("the server is shutting down")
    return errors.Unavailable(f"model '{plane.name}' is loading")


def _failure(exc: Exception) -> errors.InferplaneError:
    """Our errors as they are; anything else logged with its trace, and a 500 without it."""
    if isinstance(exc, errors.InferplaneError):
        return exc
    log.error("inference failed", exc_info=exc)
    return _INTERNAL


def _error(exc: errors.InferplaneError) -> Response:
    headers = b""
    if isinstance(exc, errors.Unavailable):
        headers = b"retry-after: %d\r\n" % max(1, round(exc.retry_after_s))
    return Response(status_of(exc), protocol.error_body(str(exc)), headers=headers)
