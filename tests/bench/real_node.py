# SPDX-License-Identifier: Apache-2.0
"""Benchmark of inferplane on the real node, as a user runs it: ``up --real-node``, the chart
installed with the locally built images, LeNet's apply → Ready uncached (a conversion Job in the
mindspore image, checkpoint on a volume and on S3) and cached (the same source under new names),
V2 latency through the model's Service under a steady closed-loop load, and a rollout to a new
artifact under that load (its failed requests counted).

    flock /tmp/inferplane-bench.lock python -m tests.bench.real_node [--clients 4] [--seconds 20]

Needs root and a free machine-wide node lock (``/run/inferplane-real-node.lock``): it starts its
own cluster and node in a fresh state directory and takes them down after, checking that
nothing is left. The images come from ``tests.images`` (built when missing: cold, minutes).
Prints the load average before and after and a markdown table for docs/benchmarks.md. Single
runs on a shared machine: read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster import build, control_plane, handle, node
from tests.cluster.profile import Profile
from tests.integration.real_product import (
    S3_SOURCE,
    Load,
    Product,
    cannot_build,
    installed,
    server_pods,
)

NO_KWOK = Profile(cpu=0, nvidia=0, ascend910=0, ascend310=0)
CACHED_TARGET_S = 10.0


def _ready_after(product: Product, name: str, source: str) -> float:
    started = time.monotonic()
    product.cluster.apply(product.model(name, source))
    product.wait_ready(name)
    return time.monotonic() - started


def _delete(product: Product, name: str) -> None:
    product.cluster.kubectl("delete", "inferencemodel", name, "-n", product.namespace)
    handle.wait_until(
        lambda: server_pods(product, name) == [], timeout=120, what=f"{name}'s pods gone"
    )


def _latency(load: Load, seconds: float) -> str:
    p50, p99 = load.percentiles()
    count = len(load.latencies)
    return (
        f"{count} requests ({count / seconds:.0f}/s), {len(load.failures)} failed, "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )


def _measure(product: Product, clients: int, seconds: float, cached_runs: int) -> list[str]:
    rows = []
    uncached = _ready_after(product, "lenet", "lenet.ckpt")
    rows.append(f"| apply → Ready, uncached, checkpoint on the volume | {uncached:.1f} s | |")
    s3 = _ready_after(product, "lenet-s3", S3_SOURCE)
    rows.append(f"| apply → Ready, uncached, checkpoint on S3 (moto) | {s3:.1f} s | |")
    _delete(product, "lenet-s3")
    cached = []
    for run in range(cached_runs):
        cached.append(_ready_after(product, f"lenet-cached-{run}", "lenet.ckpt"))
        _delete(product, f"lenet-cached-{run}")
    spread = ", ".join(f"{c:.1f}" for c in cached)
    median = statistics.median(cached)
    verdict = "met" if median < CACHED_TARGET_S else "NOT met"
    rows.append(
        f"| apply → Ready, artifact cached (median of {cached_runs}: {spread} s) | "
        f"{median:.1f} s | < {CACHED_TARGET_S:.0f} s: {verdict} |"
    )

    url = product.service_url("lenet")
    with Load(url, "lenet", workers=clients) as steady:
        time.sleep(seconds)
    rows.append(
        f"| V2 JSON through the Service ClusterIP, {clients} closed-loop clients, {seconds:.0f} s "
        f"| {_latency(steady, seconds)} | |"
    )

    started = time.monotonic()
    with Load(url, "lenet", workers=clients) as rollout:
        time.sleep(3)
        product.cluster.apply(product.model("lenet", "lenet-v2.ckpt"))
        generation = product.get("inferencemodel", "lenet")["metadata"]["generation"]
        product.wait_ready("lenet", generation=generation)
        handle.wait_until(
            lambda: len(server_pods(product, "lenet")) == 1,
            timeout=180,
            what="the old server pod gone",
        )
        time.sleep(3)
    took = time.monotonic() - started
    verdict = "met" if not rollout.failures else f"NOT met: {rollout.failures[:3]}"
    rows.append(
        f"| rollout to a new artifact under the same load ({took:.0f} s, conversion included) "
        f"| {_latency(rollout, took)} | 0 failed: {verdict} |"
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.real_node", description=__doc__)
    parser.add_argument("--clients", type=int, default=4, help="closed-loop clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady load duration")
    parser.add_argument("--cached-runs", type=int, default=3, help="cached applies to time")
    args = parser.parse_args()
    reason = node.cannot_run() or cannot_build()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    print(f"load average before: {os.getloadavg()}")
    directory = Path(tempfile.mkdtemp(prefix="bench-real-", dir=build.cache_root() / "cluster"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-real-"))
    rows = []
    real = None
    try:
        started = time.monotonic()
        plane: dict[str, float] = {}
        state, _ = control_plane.up(directory, NO_KWOK, tie_to_parent=True, phases=plane)
        plane_s = time.monotonic() - started
        phases: dict[str, float] = {}
        real = node.up(state, tie_to_parent=True, phases=phases)
        up_s = time.monotonic() - started
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
        rows.append(
            f"| `up --real-node` (no kwok node), binaries cached | {up_s:.1f} s | "
            f"control plane {plane_s:.1f} s; node: {steps} |"
        )
        cluster = handle.Cluster(state, real)
        started = time.monotonic()
        with installed(cluster, tmp) as product:
            rows.append(
                "| images into containerd + `helm install --wait` | "
                f"{time.monotonic() - started:.1f} s | archives containerd holds are skipped |"
            )
            rows += _measure(product, args.clients, args.seconds, args.cached_runs)
    finally:
        control_plane.down(directory)
        left = node.leftovers(real) if real is not None else []
        shutil.rmtree(directory, ignore_errors=True)
        control_plane.lock_file(directory).unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    print("\n| what | result | target / note |\n| --- | --- | --- |")
    print("\n".join(rows))
    if left:
        print("down left things on the machine:\n" + "\n".join(left), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
