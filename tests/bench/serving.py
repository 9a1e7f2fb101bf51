# SPDX-License-Identifier: Apache-2.0
"""Serving benchmark: ``inferplane serve`` against its compute and transport limits, side by side.

    python -m tests.bench.serving [--duration 3] [--quick] [--model M] [--enc E] [--concurrency C]
                                  [--baseline DIR] [--python]

The server side runs what the runtime images install: this checkout's compiled build
(``tests/compiled.py``: the request path compiled with mypyc, built once per source content);
``--python`` runs the checkout's modules as Python instead.

For each model (small MLP 64-128-10; heavy MLP 2048-2048-2048-10, 32 MB of weights), encoding
(JSON, binary) and concurrency (1, 8, 32), batch 1 per request, it measures in one run:

* the server: ``wrk`` (one thread, closed loop, a Lua script with the request) against
  ``python -m inferplane serve``; the client's own CPU is measured beside it;
* the transport limit: the same HTTP stack (``serving.http`` on httptools + uvloop) answering
  every request with the server's own response bytes, canned: no parsing, no inference;
* the compute limit: the ONNX Runtime backend (the server's own session options) called
  in-process with as many rows in flight as the clients keep: c threads at batch 1; batching
  on, c / max-batch-size threads on batches of min(c, max-batch-size) rows, in rows/s. Printed
  beside it, the previous definition for batching (c threads of full batches);
* the floor of a server on this stack, binary only: the same HTTP stack and ONNX Runtime
  session (the backend class the server uses) with the least a handler can do: it takes the
  input bytes at the offset it was told, merges whatever arrived in one loop turn (or runs
  each request alone when batching is off), runs the model and answers with the server's
  own JSON header and the computed bytes. No protocol parsing, no validation, no metrics: what
  no implementation of the server's own part (in any language) could beat on this stack;
* for reference, the small model's canned answer on uvicorn (the stack the server used before).

Batching: "off" is ``--max-batch-size 1``; "default (32)" is ``serve`` without batching options
(opportunistic, up to 32 rows, no delay); "max 32, 2 ms" adds a 2 ms queue delay.

It prints one table (markdown) with ratios: server / min(compute, transport), and cold start.
The last two columns come from the server's own ``/metrics`` over its slices: rows per backend
call, and milliseconds per call (from the batch's start to its results back on the event loop,
the handoff to the worker thread included).
On a shared machine throughput follows the CPU share a process gets; the CPU each request costs
the server and the canned transport (process CPU time / requests) is printed beside it, since
it does not depend on what else runs. Server and transport run in alternating 1 s slices; the
compute limit is the best of several slices.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tests import compiled, models
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"server on {port} not ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Request:
    body: bytes
    headers: dict[str, str]


def make_request(features: int, binary: bool, seed: int = 0) -> Request:
    x = np.random.default_rng(seed).standard_normal((1, features)).astype(np.float32)
    if not binary:
        message = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, features],
                               "data": x.ravel().tolist()}]}  # fmt: skip
        return Request(json.dumps(message).encode(), {"Content-Type": "application/json"})
    header = json.dumps(
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, features],
                        "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()  # fmt: skip
    return Request(
        header + x.tobytes(),
        {"Content-Type": "application/octet-stream",
         "Inference-Header-Content-Length": str(len(header))},
    )  # fmt: skip


def lua_script(request: Request, path: Path) -> Path:
    body = "".join(f"\\{b}" for b in request.body)
    lines = ['wrk.method = "POST"', f'wrk.body = "{body}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in request.headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Load:
    rps: float
    p50_ms: float | None
    """None: the slice completed no request (wrk prints no latency distribution then)."""
    p99_ms: float | None
    client_cores: float
    server_cores: float
    errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match[1]) * _UNITS[match[2]]


def wrk(port: int, path: str, script: Path, connections: int, duration: float, pid: int) -> Load:
    url = f"http://127.0.0.1:{port}{path}"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = cpu_seconds(pid)
    started = time.perf_counter()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    server = (cpu_seconds(pid) - server_before) / wall
    return parse_wrk(out, client, server)


def parse_wrk(out: str, client_cores: float, server_cores: float) -> Load:
    """``wrk --latency``'s report; a slice that completed no request is 0 req/s, no latency."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)$", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)$", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(bad[1]) if bad else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors[1]))
    return Load(
        float(rps[1]) if rps else 0.0,
        _ms(p50[1]) if p50 else None,
        _ms(p99[1]) if p99 else None,
        client_cores,
        server_cores,
        errors,
    )


def batch_stats(port: int) -> tuple[float, float, float]:
    """The server's own counters: rows, backend calls and compute seconds so far."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()

    def value(name: str) -> float:
        match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
        return float(match[1]) if match else 0.0

    return (
        value("inferplane_batch_size_sum"),
        value("inferplane_batch_size_count"),
        value("inferplane_compute_duration_seconds_sum"),
    )


def merge(loads: list[Load]) -> Load:
    """Mean throughput and CPU, median latencies, summed errors of several slices."""
    return Load(
        rps=statistics.mean(x.rps for x in loads),
        p50_ms=_median([x.p50_ms for x in loads]),
        p99_ms=_median([x.p99_ms for x in loads]),
        client_cores=statistics.mean(x.client_cores for x in loads),
        server_cores=statistics.mean(x.server_cores for x in loads),
        errors=sum(x.errors for x in loads),
    )


def _median(values: list[float | None]) -> float | None:
    """The median of the slices that completed a request (None: none did)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _latency(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.2f}"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


def compute_limit(model: Path, threads: int, rows: int, duration: float) -> float:
    """Rows per second of the ONNX Runtime backend called in-process by ``threads`` threads."""
    from inferplane.serving.backends.base import ModelFiles
    from inferplane.serving.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(ModelFiles(path=model))
    backend.load()
    features = backend.inputs[0].shape[1]
    x = np.random.default_rng(0).standard_normal((rows, features)).astype(np.float32)
    for _ in range(20):
        backend.infer({"x": x})
    counts = [0] * threads
    stop = time.perf_counter() + duration

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            backend.infer({"x": x})
            n += 1
        counts[i] = n

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) * rows / (time.perf_counter() - started)


TRANSPORT = """
import asyncio, socket, sys, uvloop
from inferplane.serving.http import Response
from tests.bench.floor import http_server
body = open(sys.argv[2], "rb").read()
extra = b"inference-header-content-length: %s\\r\\n" % sys.argv[4].encode()
extra = b"" if sys.argv[4] == "-" else extra
canned = Response(200, body, sys.argv[3].encode(), extra)
ready = Response(200, b"")
def handler(request, respond):
    respond(ready if request.path == "/v2/health/ready" else canned)
async def main():
    sock = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=2048)
    sock.setblocking(False)
    await http_server(handler, 1 << 30).start(sock)
    await asyncio.Event().wait()
uvloop.run(main())
"""

UVICORN_TRANSPORT = """
import sys, uvicorn, uvloop
body = open(sys.argv[2], "rb").read()
headers = [(b"content-type", sys.argv[3].encode()), (b"content-length", b"%d" % len(body))]
if sys.argv[4] != "-":
    headers.append((b"inference-header-content-length", sys.argv[4].encode()))
start = {"type": "http.response.start", "status": 200, "headers": headers}
end = {"type": "http.response.body", "body": body}
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    message = await receive()
    while message.get("more_body"):
        message = await receive()
    await send(start)
    await send(end)
config = uvicorn.Config(app, port=int(sys.argv[1]), http="httptools", loop="none",
                        lifespan="off", access_log=False, log_level="warning",
                        server_header=False, proxy_headers=False, backlog=2048)
uvloop.run(uvicorn.Server(config).serve())
"""
"""The stack the server ran on before (uvicorn's ASGI layer): for reference only."""


class Proc:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*args, *([] if args[1] == "-c" else ["--port"]), str(self.port)]
            if args[1] != "-c" else [*args[:3], str(self.port), *args[3:]],
            cwd=ROOT, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            wait_ready(self.port)
        except BaseException:
            self.proc.kill()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def inferplane(model: Path, *extra: str, package: Path | None = None) -> Proc:
    """The server; ``package``: the directory that holds the ``inferplane`` to run (another
    revision's ``operator/``, or the compiled build of ``tests/compiled.py``)."""
    env = None
    if package is not None:
        env = {**os.environ, "PYTHONPATH": f"{package}:{ROOT}"}
    return Proc([sys.executable, "-m", "inferplane", "serve", str(model), *extra], env)


@dataclass
class Reply:
    """The server's own answer to the bench's request, saved for the canned and bare sides."""

    path: Path
    content_type: str
    header_length: str
    """Its Inference-Header-Content-Length ("-": none, a JSON answer)."""


def server_reply(port: int, name: str, request: Request, workdir: Path) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", f"/v2/models/{name}/infer", request.body, request.headers)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    blob = workdir / f"reply-{len(body)}.bin"
    blob.write_bytes(body)
    return Reply(
        blob,
        response.getheader("Content-Type") or "application/json",
        response.getheader("Inference-Header-Content-Length") or "-",
    )


def canned(reply: Reply, stack: str = TRANSPORT) -> Proc:
    return Proc([sys.executable, "-c", stack, str(reply.path), reply.content_type,
                 reply.header_length])  # fmt: skip


def bare(model: Path, request: Request, reply: Reply, batched: bool) -> Proc:
    """The floor for a binary ``request``, answering with ``reply``'s JSON header."""
    return Proc([sys.executable, "-m", "tests.bench.floor", str(model),
                 request.headers["Inference-Header-Content-Length"], str(reply.path),
                 reply.content_type, reply.header_length, "1" if batched else "0"])  # fmt: skip


def cold_start(model: Path, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        port = free_port()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferplane", "serve", str(model), "--port", str(port)],
            cwd=ROOT, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_ready(port)
        times.append(time.perf_counter() - started)
        proc.terminate()
        proc.wait(30)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument(
        "--quick", action="store_true", help="small model, binary, c=8, batching off and on"
    )
    parser.add_argument("--model", choices=["small", "heavy"], help="only this model's rows")
    parser.add_argument("--enc", choices=["json", "binary"], help="only this encoding's rows")
    parser.add_argument(
        "--concurrency", type=int, action="append", help="only these concurrencies (repeatable)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another revision (e.g. git archive REV operator | tar -x -C DIR): "
        "its server runs as one more side, and the row ends with baseline req/s, p50 and "
        "server / baseline",
    )
    parser.add_argument(
        "--python",
        action="store_true",
        help="the server side runs this checkout as Python; by default it runs the compiled "
        "build of it (tests/compiled.py), what the runtime images install",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferplane-bench-") as tmp:
        run_all(args, Path(tmp))


def run_all(args: argparse.Namespace, work: Path) -> None:
    package = None if args.python else compiled.ensure()
    small = models.mlp_onnx(work / "small.onnx", (64, 128, 10))
    heavy = models.mlp_onnx(work / "heavy.onnx", (2048, 2048, 2048, 10))
    d = args.duration
    build = "Python (this checkout)" if package is None else f"compiled ({package})"
    print(f"# machine: {os.cpu_count()} cores, {_cpu_model()}; wrk -t1; {d:.0f} s per run")
    print(f"# server: {build}\n")
    print(
        f"cold start (serve small.onnx until ready 200, median of 3): {cold_start(small):.2f} s\n"
    )
    print(
        "| model | batching | enc | c | server req/s | p50 ms | p99 ms | compute/s | "
        "compute c x batch/s | transport/s | uvicorn canned/s | floor/s | server / min | "
        "floor / min | server CPU µs/req | transport CPU µs/req | floor CPU µs/req | "
        "client cores | server cores | errors | rows/call | compute ms/call |"
        + (
            " baseline req/s | baseline p50 ms | server / baseline | baseline CPU µs/req |"
            if args.baseline
            else ""
        )
    )
    print("|---" * (26 if args.baseline else 22) + "|")
    off = ["--max-batch-size", "1"]
    plans: list[tuple[str, str, Path, int, int, list[str], list[int]]] = [
        ("small", "off", small, 64, 1, off, [1, 8, 32]),
        ("small", "default (32)", small, 64, 32, [], [1, 8, 32]),
        ("heavy", "off", heavy, 2048, 1, off, [1, 8, 32]),
        ("heavy", "default (32)", heavy, 2048, 32, [], [8, 32]),
        ("heavy", "max 32, 2 ms", heavy, 2048, 32,
         ["--max-batch-size", "32", "--max-queue-delay-ms", "2"], [32]),
    ]  # fmt: skip
    if args.model:
        plans = [p for p in plans if p[0] == args.model]
    if args.quick:
        plans = [(*plans[0][:6], [8]), (*plans[1][:6], [1, 8])]
    if args.concurrency:
        plans = [(*p[:6], [c for c in p[6] if c in args.concurrency]) for p in plans]
    encodings = (False, True) if not args.quick else (True,)
    if args.enc:
        encodings = (args.enc == "binary",)
    for name, mode, path, features, batch, extra, concurrencies in plans:
        if not concurrencies:
            continue
        server = inferplane(path, *extra, package=package)
        try:
            for binary in encodings:
                request = make_request(features, binary)
                script = lua_script(request, work / f"{name}-{binary}.lua")
                reply = server_reply(server.port, name, request, work)
                with contextlib.ExitStack() as stack:
                    sides = {"transport": stack.enter_context(canned(reply))}
                    if name == "small":
                        sides["reference"] = stack.enter_context(canned(reply, UVICORN_TRANSPORT))
                    if binary:
                        sides["floor"] = stack.enter_context(bare(path, request, reply, batch > 1))
                    if args.baseline:
                        before = inferplane(path, *extra, package=args.baseline / "operator")
                        sides["baseline"] = stack.enter_context(before)
                    for c in concurrencies:
                        row = measure(server, sides, f"/v2/models/{name}/infer", script, c,
                                      path, batch, d)  # fmt: skip
                        print(f"| {name} | {mode} | {'binary' if binary else 'json'} | {c} | {row}",
                              flush=True)  # fmt: skip
        finally:
            server.stop()


def measure(
    server: Proc,
    sides: dict[str, Proc],
    path: str,
    script: Path,
    c: int,
    model: Path,
    batch: int,
    duration: float,
) -> str:
    """One table row (after the first four cells): server, limits, floor, ratios, CPU.

    ``sides``: the canned ``transport`` and, where they apply, the uvicorn ``reference`` and
    the ``floor``. The compute limit keeps as many rows in flight as the clients do (c): c
    threads at batch 1; batched, c / batch threads on batches of min(c, batch) rows. The
    column after it is the batched limit with c threads of full batches (c x batch rows in
    flight, which c clients can never supply), the definition of the previous runs.
    """
    rows = min(c, batch)
    threads = max(1, c // batch)
    wrk(server.port, path, script, c, 1, server.proc.pid)
    compute = compute_limit(model, threads, rows, 1.0)
    wide = compute_limit(model, c, batch, 1.0) if batch > 1 else None
    # 1 s slices, alternating, so every side sees the same (shared) machine.
    runs: dict[str, list[Load]] = {"server": [], **{name: [] for name in sides}}
    before = batch_stats(server.port)
    for _ in range(max(1, round(duration))):
        runs["server"].append(wrk(server.port, path, script, c, 1, server.proc.pid))
        for name, side in sides.items():
            side_path = path if name in ("floor", "baseline") else "/x"
            runs[name].append(wrk(side.port, side_path, script, c, 1, side.proc.pid))
        compute = max(compute, compute_limit(model, threads, rows, 0.5))
    rows_in, calls, seconds = (b - a for a, b in zip(before, batch_stats(server.port), strict=True))
    s, t = merge(runs["server"]), merge(runs["transport"])
    limit = min(compute, t.rps)
    loads = {name: merge(r) for name, r in runs.items() if r}

    def rate(name: str) -> str:
        return f"{loads[name].rps:,.0f}" if name in loads else "-"

    def share(name: str) -> str:
        return _percent(loads[name].rps, limit) if name in loads else "-"

    def cpu(name: str) -> str:
        if name not in loads or not loads[name].rps:
            return "-"
        return f"{1e6 * loads[name].server_cores / loads[name].rps:.0f}"

    baseline = ""
    if "baseline" in loads:
        b = loads["baseline"]
        baseline = (
            f" {b.rps:,.0f} | {_latency(b.p50_ms)} | {_percent(s.rps, b.rps)} | {cpu('baseline')} |"
        )
    return (
        f"{s.rps:,.0f} | {_latency(s.p50_ms)} | {_latency(s.p99_ms)} | {compute:,.0f} | "
        f"{'-' if wide is None else f'{wide:,.0f}'} | {t.rps:,.0f} | {rate('reference')} | "
        f"{rate('floor')} | {share('server')} | {share('floor')} | {cpu('server')} | "
        f"{cpu('transport')} | {cpu('floor')} | {s.client_cores:.2f} | {s.server_cores:.2f} | "
        f"{sum(x.errors for x in loads.values())} | "
        f"{rows_in / max(calls, 1):.1f} | {1e3 * seconds / max(calls, 1):.2f} |{baseline}"
    )


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
