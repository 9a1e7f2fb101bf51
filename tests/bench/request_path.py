# SPDX-License-Identifier: Apache-2.0
"""The server's per-request CPU in-process, without sockets: what is the server's own.

    python -m tests.bench.request_path [--requests 4000] [--repeats 5]

The real HTTP layer (``serving.http.Connection``) is fed whole requests, as ``data_received``
would be, by c=8 connections over an in-memory transport that only counts writes; every
connection sends its next request once the loop has answered. Three handlers on the small MLP
(64-128-10), each in a fresh process:

* ``canned``: the server's own answer bytes, canned (the transport limit's handler);
* ``floor``: the least a batched handler can do (the serving bench's floor: input bytes at a
  known offset, merged per loop turn, one ONNX Runtime call, the server's JSON header);
* ``server``: the server's ``App`` over a ``DataPlane`` with default batching, binary and JSON.

It prints the CPU time per request (min and median of the repeats). Comparing two revisions:
run it with ``PYTHONPATH`` pointing at each checkout's ``operator`` directory, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import models
from tests.bench import floor
from tests.bench.serving import ROOT, make_request

CONNECTIONS = 8


class CountingTransport(asyncio.Transport):
    """Takes every write and counts it; never closes or pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def writelines(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _raw(body: bytes, headers: dict[str, str]) -> bytes:
    lines = ["POST /v2/models/small/infer HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _handler(kind: str, model: Path, binary: bool) -> Callable[..., None]:
    from inferplane.serving import server
    from inferplane.serving.app import App
    from inferplane.serving.dataplane import BatchSettings, DataPlane
    from inferplane.serving.http import Response

    plane = DataPlane("small", settings=BatchSettings())
    backend = server._load(server.resolve(str(model)), plane)
    plane.attach(backend, load_seconds=0.0)
    app = App(plane, max_request_bytes=1 << 26)
    if kind == "server":
        return app
    request = make_request(64, binary)
    answer: list[Response] = []
    app(_request_object(request), answer.append)
    while not answer:  # the batcher answers on a later loop turn
        await asyncio.sleep(0)
    (reply,) = answer
    if kind == "canned":
        return lambda _, respond: respond(reply)
    offset = int(request.headers["Inference-Header-Content-Length"])
    return floor.handler(backend, offset, reply, batched=True)


def _request_object(request: Any) -> Any:
    from inferplane.serving.http import Request

    headers = {k.lower().encode(): v.encode() for k, v in request.headers.items()}
    return Request(b"POST", "/v2/models/small/infer", headers, request.body)


async def _measure(kind: str, model: Path, binary: bool, requests: int) -> float:
    from inferplane.serving.http import Connection

    http = floor.http_server(await _handler(kind, model, binary), 1 << 26)
    request = make_request(64, binary)
    data = _raw(request.body, request.headers)
    pairs = []
    for _ in range(CONNECTIONS):
        connection, transport = Connection(http), CountingTransport()
        connection.connection_made(transport)
        pairs.append((connection, transport))
    started = time.process_time()
    for i in range(1, requests + 1):
        for connection, _ in pairs:
            connection.data_received(data)
        while sum(t.writes for _, t in pairs) < i * CONNECTIONS:  # every answer out
            await asyncio.sleep(0)
    spent = time.process_time() - started
    answered = sum(t.writes for _, t in pairs)
    assert answered == requests * CONNECTIONS, f"{answered} answers to {requests * CONNECTIONS}"
    return spent / answered


def one(kind: str, model: Path, binary: bool, requests: int) -> None:
    import uvloop

    print(1e6 * uvloop.run(_measure(kind, model, binary, requests)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000, help="per connection")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = [("canned", True), ("floor", True), ("server", True), ("canned", False),
             ("server", False)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="inferplane-bench-") as tmp:
        model = models.mlp_onnx(Path(tmp) / "small.onnx", (64, 128, 10))
        results: dict[tuple[str, bool], list[float]] = {case: [] for case in cases}
        for _ in range(args.repeats):  # alternating, each in a fresh process
            for kind, binary in cases:
                out = subprocess.run(
                    [sys.executable, "-m", "tests.bench.request_path", "--one", kind,
                     str(model), "1" if binary else "0", str(args.requests)],
                    cwd=ROOT, capture_output=True, text=True, check=True,
                )  # fmt: skip
                results[(kind, binary)].append(float(out.stdout.split()[-1]))
    print(f"# in-process CPU per request, small MLP, c={CONNECTIONS}, default batching; "
          f"{args.repeats} runs of {args.requests * CONNECTIONS} requests\n")  # fmt: skip
    print("| handler | enc | µs/req (min) | µs/req (median) |\n|---|---|---|---|")
    for (kind, binary), values in results.items():
        print(f"| {kind} | {'binary' if binary else 'json'} | {min(values):.1f} | "
              f"{statistics.median(values):.1f} |")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--one":
        one(sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]))
    else:
        main()
