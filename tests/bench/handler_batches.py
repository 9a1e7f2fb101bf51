# SPDX-License-Identifier: Apache-2.0
"""The server's handler alone, by requests per batch: what the App, data plane and batcher cost.

    python -m tests.bench.handler_batches [--baseline DIR] [--per-batch 1 2 4 8 32]

No HTTP and no sockets: the server's ``App`` (default batching) on the small MLP (64-128-10) is
handed the same binary request N times in one loop turn, then the loop runs until all N are
answered, over and over; beside it the floor's handler (``tests/bench/floor.py``) the same way.
CPU µs per request, the min of 5 runs per side, each in a fresh process, alternating; with
``--baseline DIR`` that revision's server (its ``operator/`` on PYTHONPATH) as a third side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests import models
from tests.bench.request_path import _handler, _request_object
from tests.bench.serving import ROOT, make_request

REQUESTS = 10_000


async def _measure(kind: str, model: Path, per_batch: int) -> float:
    handler = await _handler(kind, model, True)
    request = _request_object(make_request(64, True))
    answered = [0]

    def respond(_: Any) -> None:
        answered[0] += 1

    rounds = REQUESTS // per_batch
    started = time.process_time()
    for done in range(per_batch, (rounds + 1) * per_batch, per_batch):
        for _ in range(per_batch):
            handler(request, respond)
        while answered[0] < done:
            await asyncio.sleep(0)
    spent = time.process_time() - started
    assert answered[0] == rounds * per_batch, answered
    return 1e6 * spent / answered[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--per-batch", type=int, nargs="+", default=[1, 2, 4, 8, 32])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sides = [("server", None), ("floor", None)]
    if args.baseline is not None:
        sides.insert(1, ("server", args.baseline))
    with tempfile.TemporaryDirectory(prefix="inferplane-bench-") as tmp:
        model = models.mlp_onnx(Path(tmp) / "small.onnx", (64, 128, 10))
        print("| requests per batch | server | baseline server | floor |\n|---|---|---|---|")
        for n in args.per_batch:
            best: dict[int, float] = {}
            for _ in range(args.runs):
                for i, (kind, checkout) in enumerate(sides):
                    env = None
                    if checkout is not None:
                        env = {**os.environ, "PYTHONPATH": f"{checkout / 'operator'}:{ROOT}"}
                    out = subprocess.run(
                        [sys.executable, "-m", "tests.bench.handler_batches", "--one", kind,
                         str(model), str(n)],
                        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
                    ).stdout  # fmt: skip
                    best[i] = min(best.get(i, float("inf")), float(out.split()[-1]))
            cells = [f"{best[i]:.2f}" for i in range(len(sides))]
            if args.baseline is None:
                cells.insert(1, "-")
            print(f"| {n} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        import uvloop

        print(uvloop.run(_measure(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
