# SPDX-License-Identifier: Apache-2.0
"""How big the server's batches get under closed-loop clients, and what a request costs it.

    python -m tests.bench.batch_formation --baseline DIR [--concurrency 8] [--runs 4]

The small MLP (64-128-10), binary requests, default batching. Each run starts a fresh server
process of this checkout and one of ``DIR`` (``git archive REV operator | tar -x -C DIR``),
alternating, warms each with 1 s of ``wrk`` and measures 3 s: requests per second, the server's
CPU per request (from /proc) and requests per backend call (from its own ``/metrics``). A new
process per run, because a process's lot (placement, hash seeds) moves a run by more than the
differences looked for; the median and min over the runs are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tests import models
from tests.bench.serving import batch_stats, inferplane, lua_script, make_request, wrk

PATH = "/v2/models/small/infer"


def measure(
    model: Path, script: Path, concurrency: int, checkout: Path | None
) -> tuple[float, float, float]:
    """(req/s, server CPU µs per request, requests per backend call) of one fresh server."""
    with inferplane(model, checkout=checkout) as server:
        wrk(server.port, PATH, script, concurrency, 1, server.proc.pid)
        rows, calls, _ = batch_stats(server.port)
        load = wrk(server.port, PATH, script, concurrency, 3, server.proc.pid)
        rows_after, calls_after, _ = batch_stats(server.port)
    per_request_us = 1e6 * load.server_cores / load.rps if load.rps else float("nan")
    return load.rps, per_request_us, (rows_after - rows) / max(calls_after - calls, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferplane-bench-") as tmp:
        model = models.mlp_onnx(Path(tmp) / "small.onnx", (64, 128, 10))
        script = lua_script(make_request(64, True), Path(tmp) / "request.lua")
        print("| c | side | req/s (median) | CPU µs/req (median, min) | requests per call |")
        print("|---|---|---|---|---|")
        for c in args.concurrency or [8]:
            sides: dict[str, list[tuple[float, float, float]]] = {"this": [], "baseline": []}
            for _ in range(args.runs):
                sides["baseline"].append(measure(model, script, c, args.baseline))
                sides["this"].append(measure(model, script, c, None))
            for side, runs in sides.items():
                rps, cpu, rows = (list(x) for x in zip(*runs, strict=True))
                print(f"| {c} | {side} | {statistics.median(rps):,.0f} | "
                      f"{statistics.median(cpu):.1f}, {min(cpu):.1f} | "
                      f"{min(rows):.1f}-{max(rows):.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
