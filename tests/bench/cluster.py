# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the test cluster: warm ``up`` with 10 nodes, ``up`` with 1000 nodes, the control
plane's memory at 1000 nodes, and the cold build time recorded in the build log.

    python -m tests.bench.cluster [--runs 3] [--skip-large]

Each ``up`` starts from nothing but cached binaries (a fresh state directory). Prints a markdown
table with each number beside its target and the ratio, for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cluster import build, control_plane
from tests.cluster.profile import Profile

SMALL = Profile(cpu=4, nvidia=2, ascend910=1, ascend310=1)
LARGE = Profile(cpu=400, nvidia=200, ascend910=100, ascend310=100)
TARGET_SMALL = 20.0
TARGET_LARGE = 90.0


def _cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"Model name:\s*(.+)", out)
    return match.group(1).strip() if match else platform.processor()


def _up(profile: Profile, settle: float = 0.0) -> tuple[dict[str, float], dict[str, int]]:
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir=build.cache_root() / "cluster"))
    phases: dict[str, float] = {}
    try:
        state, _ = control_plane.up(directory, profile, tie_to_parent=True, phases=phases)
        time.sleep(settle)
        memory = control_plane.memory_kib(state)
    finally:
        control_plane.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
        control_plane.lock_file(directory).unlink(missing_ok=True)
    return phases, memory


def _cold_build() -> str:
    """Per-binary build times from the cache's logs: ``build.log`` (written by
    ``python -m tests.cluster build``) and ``cold-build-manual.log`` (the first build of the
    same commands, run by hand, one line per binary)."""
    times: list[tuple[str, int]] = []
    for log, pattern in (
        ("build.log", r"^built (\S+) in (\d+) s$"),
        ("cold-build-manual.log", r"^\S+ (\S+) (\d+)s$"),
    ):
        path = build.bin_dir() / log
        if path.is_file():
            times += [(m[0], int(m[1])) for m in re.findall(pattern, path.read_text(), re.M)]
    times = [(label, seconds) for label, seconds in times if label != "total"]
    if not times:
        return "no build recorded in the cache's logs"
    parts = ", ".join(f"{label} {seconds} s" for label, seconds in times)
    return f"{sum(s for _, s in times)} s ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    build.ensure_built(echo=True)
    (build.cache_root() / "cluster").mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {_cpu_model()}, {platform.machine()}, {cores} cores")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    small = [_up(SMALL)[0] for _ in range(args.runs)]
    rows = [
        (
            "warm `up`, 10 nodes: API healthy (median)",
            statistics.median(p["api"] for p in small),
            0.0,
        ),
        (
            "warm `up`, 10 nodes: all Ready (median)",
            statistics.median(p["nodes"] for p in small),
            TARGET_SMALL,
        ),
    ]
    memory: dict[str, int] = {}
    if not args.skip_large:
        phases, memory = _up(LARGE, settle=30.0)
        rows.append(("`up`, 1000 nodes: API healthy", phases["api"], 0.0))
        rows.append(("`up`, 1000 nodes: all Ready", phases["nodes"], TARGET_LARGE))
    print()
    print("| measure | seconds | target | ratio to target |")
    print("| --- | --- | --- | --- |")
    for name, seconds, target in rows:
        if target:
            print(f"| {name} | {seconds:.1f} | < {target:.0f} s | {seconds / target:.2f} |")
        else:
            print(f"| {name} | {seconds:.1f} | | |")
    runs = ", ".join(f"{p['nodes']:.1f}" for p in small)
    print(f"\n10-node runs (all Ready): {runs} s")
    if memory:
        total = sum(memory.values()) / 1024
        print(f"\ncontrol plane RSS at 1000 nodes, 30 s after all Ready: {total:.0f} MiB")
        for name, kib in memory.items():
            print(f"- {name}: {kib / 1024:.0f} MiB")
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"\ncold build: {_cold_build()}")


if __name__ == "__main__":
    main()
