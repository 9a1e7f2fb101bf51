# SPDX-License-Identifier: Apache-2.0
"""The HTTP layer choice, by evidence: ours, uvicorn (httptools) and granian (RSGI), side by side.

    PYTHONPATH=$PYTHONPATH:/path/to/granian python -m tests.bench.http_layers [--duration 3]

Each stack answers every request with the same canned bytes (the small model's binary answer),
so only the HTTP layer is measured: throughput with ``wrk`` (c=8 and c=32, alternating 1 s
slices), then the hostile cases of ``tests/serving/test_hostile.py`` that concern HTTP alone,
over raw sockets. granian is not a dependency: put it on PYTHONPATH
(``pip install --target DIR granian``); without it, its column is left out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tests.bench.serving import (
    TRANSPORT,
    UVICORN_TRANSPORT,
    Load,
    Proc,
    lua_script,
    make_request,
    merge,
    wrk,
)

GRANIAN_APP = """
import os
BODY = open(os.environ["CANNED_BODY"], "rb").read()
HEADERS = [("content-type", "application/octet-stream"),
           ("inference-header-content-length", os.environ["CANNED_HEADER"])]
async def app(scope, proto):
    await proto()
    proto.response_bytes(200, HEADERS, BODY)
"""

LIVE = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\n"
SMUGGLING = {
    "CL + TE": POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Length": POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "chunk-size overflow": POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n",
    "obs-fold": b"GET /x HTTP/1.1\r\nX-A: a\r\n folded\r\n\r\n",
    "bare LF": b"GET /x HTTP/1.1\nHost: t\n\n",
}


def answers(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    out = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def smuggling(port: int, request: bytes) -> str:
    """Refused (4xx) and nothing after it read as a request of its own."""
    with connect(port) as sock:
        sock.sendall(request + LIVE)
        sock.shutdown(socket.SHUT_WR)
        out = answers(sock, 5)
    codes = [line.split()[1].decode() for line in out.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    ok = bool(codes) and codes[0].startswith("4") and len(codes) == 1
    return f"{'pass' if ok else 'FAIL'} ({', '.join(codes) or 'no answer'})"


def pipelining(port: int) -> str:
    with connect(port) as sock:
        sender = threading.Thread(target=sock.sendall, args=(LIVE * 10_000,), daemon=True)
        started = time.monotonic()
        sender.start()
        got = 0
        sock.settimeout(30)
        with contextlib.suppress(OSError):
            while got < 10_000 and (chunk := sock.recv(1 << 20)):
                got += chunk.count(b"HTTP/1.1 200")
        took = time.monotonic() - started
    return f"{'pass' if got == 10_000 else 'FAIL'} ({got} answers, {took:.1f} s)"


def endless_header(port: int) -> str:
    """One header streamed for 8 MiB: refused with an answer?"""
    with connect(port) as sock:
        sent = 0
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /x HTTP/1.1\r\nX-Long: ")
            while sent < 8 << 20:
                sock.sendall(b"a" * 65536)
                sent += 65536
        out = answers(sock, 5)
    status = out.split(b"\r\n", 1)[0].decode(errors="replace") or "no answer"
    # Refused with a 4xx (a server that drains the rest during a lingering close takes it all).
    ok = status.startswith("HTTP/1.1 4")
    return f"{'pass' if ok else 'FAIL'} ({sent >> 10} KiB taken; {status})"


def slowloris(port: int, first: bytes, limit_s: float) -> str:
    """One byte every 0.5 s: how long until the server cuts the connection."""
    with connect(port) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            sock.sendall(first)
            while time.monotonic() - started < limit_s:
                time.sleep(0.5)
                sock.sendall(b"a")
                sock.settimeout(0.01)
                with contextlib.suppress(TimeoutError):
                    if not sock.recv(65536):
                        break
        took = time.monotonic() - started
    return f"cut after {took:.0f} s" if took < limit_s else f"FAIL (open after {limit_s:.0f} s)"


def never_reads(port: int, pid: int) -> str:
    """Pipelines requests for 10 s without reading a byte: how much the server's RSS grows."""
    before = rss(pid)
    with connect(port) as sock:
        sock.settimeout(10)
        sent = 0
        started = time.monotonic()
        with contextlib.suppress(OSError):
            while time.monotonic() - started < 10 and sent < 400 << 20:
                sock.sendall(LIVE * 1000)
                sent += len(LIVE) * 1000
        grown = rss(pid) - before
    return f"{sent >> 20} MiB sent; RSS +{grown >> 20} MiB"


def rss(pid: int) -> int:
    """Resident memory of the process and its children (granian's workers)."""
    total = 0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{p}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0]) * 1024
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def idle_connections(port: int) -> str:
    sockets = [connect(port) for _ in range(1000)]
    try:
        with connect(port) as sock:
            sock.sendall(LIVE)
            ok = answers_one(sock)
    finally:
        for s in sockets:
            s.close()
    return "pass" if ok else "FAIL (no answer)"


def answers_one(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(65536).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(kind: str, work: Path, body: Path, header: str) -> Proc:
    if kind == "ours":
        return Proc(
            [sys.executable, "-c", TRANSPORT, str(body), "application/octet-stream", header]
        )
    if kind == "uvicorn":
        return Proc([sys.executable, "-c", UVICORN_TRANSPORT, str(body),
                     "application/octet-stream", header])  # fmt: skip
    (work / "granian_canned.py").write_text(GRANIAN_APP)
    env = {**os.environ, "CANNED_BODY": str(body), "CANNED_HEADER": header,
           "PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{work}"}  # fmt: skip
    return Proc([sys.executable, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                 "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--no-ws",
                 "--log-level", "error", "granian_canned:app"], env)  # fmt: skip


def _smuggle(request: bytes, proc: Proc) -> str:
    return smuggling(proc.port, request)


def _slow(results: dict[str, str], kind: str, port: int, first: bytes) -> None:
    results[kind] = slowloris(port, first, 70)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    kinds = ["ours", "uvicorn"]
    try:
        import granian  # noqa: F401

        kinds.append("granian")
    except ImportError:
        print("granian is not importable: its column is left out")
    with (
        tempfile.TemporaryDirectory(prefix="inferplane-layers-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        request = make_request(64, True)
        script = lua_script(request, work / "request.lua")
        body = work / "answer.bin"
        body.write_bytes(b'{"model_name":"small","outputs":[]}' + b"\0" * 40)
        procs = {k: stack.enter_context(start(k, work, body, "35")) for k in kinds}
        print(f"| case | {' | '.join(kinds)} |\n|---" + "|---" * len(kinds) + "|")
        for c in (8, 32):
            runs: dict[str, list[Load]] = {k: [] for k in kinds}
            for _ in range(max(1, round(args.duration))):
                for k, p in procs.items():
                    runs[k].append(wrk(p.port, "/x", script, c, 1, p.proc.pid))
            best = max(merge(r).rps for r in runs.values())
            cells = [
                f"{merge(r).rps:,.0f} ({100 * merge(r).rps / best:.0f} %)" for r in runs.values()
            ]
            print(f"| canned binary answer, c={c}, req/s | {' | '.join(cells)} |", flush=True)
        cases: list[tuple[str, Callable[[Proc], str]]] = [
            *((f"smuggling: {name}", partial(_smuggle, r)) for name, r in SMUGGLING.items()),
            ("10,000 pipelined requests in one write", lambda p: pipelining(p.port)),
            ("one header streamed for 8 MiB", lambda p: endless_header(p.port)),
            ("1,000 idle connections, then a request", lambda p: idle_connections(p.port)),
            ("a client that never reads, 10 s", lambda p: never_reads(p.port, p.proc.pid)),
        ]  # fmt: skip
        for name, case in cases:
            print(f"| {name} | {' | '.join(case(p) for p in procs.values())} |", flush=True)
        slow = {
            "slowloris head (1 byte / 0.5 s)": b"GET /x HTTP/1.1\r\nX-Slow: ",
            "slowloris body (1 byte / 0.5 s)": POST + b"Content-Length: 100000\r\n\r\n",
        }
        for name, first in slow.items():
            results: dict[str, str] = {}
            threads = [
                threading.Thread(target=_slow, args=(results, k, p.port, first))
                for k, p in procs.items()
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(f"| {name} | {' | '.join(results[k] for k in kinds)} |", flush=True)


if __name__ == "__main__":
    main()
