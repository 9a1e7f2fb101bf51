# SPDX-License-Identifier: Apache-2.0
"""The floor of a server on our HTTP stack: the least a handler can do to answer inference.

It takes the input bytes at a known offset of each binary request (one FP32 input), merges what
arrived in one loop turn (or runs each request alone), runs the model once and answers with a
given JSON header and the computed bytes. No parsing, validation, metrics or protocol: what no
implementation of the server's own part could beat. Used by ``serving`` (as a process:
``python -m tests.bench.floor MODEL OFFSET REPLY CTYPE LENGTH BATCHED --port N``) and
``request_path`` (in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

import numpy as np
import uvloop

from inferplane.serving.backends.base import Backend, ModelFiles
from inferplane.serving.backends.onnxruntime import OnnxRuntimeBackend
from inferplane.serving.http import Handler, HttpServer, Request, Respond, Response

_READY = Response(200, b"")


def http_server(handler: Handler, max_body: int) -> HttpServer:
    """The HTTP layer of the revision on the path: with ``HttpLimits``, or (revisions before
    them, when comparing) its ``max_body`` keyword."""
    try:
        from inferplane.serving.limits import HttpLimits
    except ImportError:
        return HttpServer(handler, max_body=max_body)  # type: ignore[call-arg]
    return HttpServer(handler, HttpLimits(max_body_bytes=max_body))


def handler(backend: Backend, offset: int, reply: Response, *, batched: bool) -> Handler:
    """Answers each request with ``reply``'s body up to its JSON header (``reply.headers``
    carries the header's length), then the request's own output rows."""
    spec = backend.inputs[0]
    name, features = spec.name, spec.shape[1]
    length = int(reply.headers.split(b":")[1])
    header = reply.body[:length]
    queue: list[tuple[bytes, Respond]] = []

    def run() -> None:
        waiting = queue[:]
        queue.clear()
        x = np.frombuffer(b"".join([body[offset:] for body, _ in waiting]), np.float32)
        y = next(iter(backend.infer({name: x.reshape(len(waiting), features)}).values()))
        size = y.nbytes // len(waiting)
        out = y.tobytes()
        for i, (_, respond) in enumerate(waiting):
            respond(Response(200, header + out[i * size : (i + 1) * size], reply.content_type,
                             reply.headers))  # fmt: skip

    def answer(request: Request, respond: Respond) -> None:
        if request.path == "/v2/health/ready":
            respond(_READY)
            return
        if not queue and batched:
            asyncio.get_running_loop().call_soon(run)
        queue.append((request.body, respond))
        if not batched:
            run()

    return answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("offset", type=int, help="the request's Inference-Header-Content-Length")
    parser.add_argument("reply", type=Path, help="a binary answer of the server, saved")
    parser.add_argument("content_type")
    parser.add_argument("header_length", help="the answer's Inference-Header-Content-Length")
    parser.add_argument("batched", choices=["0", "1"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    backend = OnnxRuntimeBackend(ModelFiles(path=args.model))
    backend.load()
    reply = Response(
        200,
        args.reply.read_bytes(),
        args.content_type.encode(),
        b"inference-header-content-length: %s\r\n" % args.header_length.encode(),
    )
    answer = handler(backend, args.offset, reply, batched=args.batched == "1")

    async def serve() -> None:
        sock = socket.create_server(("127.0.0.1", args.port), backlog=2048)
        sock.setblocking(False)
        await http_server(answer, 1 << 30).start(sock)
        await asyncio.Event().wait()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
