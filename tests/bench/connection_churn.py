# SPDX-License-Identifier: Apache-2.0
"""Clients that open a new connection per request, against ``--max-connections``.

    python -m tests.bench.connection_churn [--clients 8] [--limit 64] [--duration 8] \
        [--baseline DIR]

urllib clients (each request on its own connection, ``Connection: close``) in closed loops
against ``inferplane serve`` on the small model's liveness path. It prints the answered, the
refused (503 ``over N connections``) and the failed requests, and the requests per second.
With ``--baseline`` (a checkout of another revision: ``git archive REV operator | tar -x -C
DIR``) the same load runs against that revision first, side by side. Closed connections must not
count against the limit: the refused column is 0 when the server frees a connection as soon as
its client has closed it.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests import models
from tests.bench.serving import inferplane


@dataclass
class Tally:
    answered: int = 0
    refused: int = 0
    failed: int = 0


def churn(port: int, clients: int, duration: float) -> Tally:
    tally = Tally()
    lock = threading.Lock()
    end = time.monotonic() + duration
    url = f"http://127.0.0.1:{port}/v2/health/live"

    def client() -> None:
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    answer.read()
                outcome = "answered"
            except urllib.error.HTTPError as error:
                outcome = "refused" if error.code == 503 else "failed"
            except OSError:
                outcome = "failed"
            with lock:
                setattr(tally, outcome, getattr(tally, outcome) + 1)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--limit", type=int, default=64, help="the server's --max-connections")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--baseline", type=Path, help="a checkout of another revision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferplane-churn-") as tmp:
        model = models.mlp_onnx(Path(tmp) / "small.onnx")
        sides = [("baseline", args.baseline)] if args.baseline else []
        sides.append(("this checkout", None))
        print(f"{args.clients} clients, a new connection per request, --max-connections "
              f"{args.limit}, {args.duration:g} s each")  # fmt: skip
        print("| server | answered | refused (503) | failed | answered/s |\n|---|---|---|---|---|")
        for name, checkout in sides:
            with inferplane(model, "--max-connections", str(args.limit), checkout=checkout) as p:
                tally = churn(p.port, args.clients, args.duration)
            rate = tally.answered / args.duration
            print(f"| {name} | {tally.answered:,} | {tally.refused:,} | {tally.failed:,} "
                  f"| {rate:,.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
