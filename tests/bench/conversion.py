# SPDX-License-Identifier: Apache-2.0
"""Conversion benchmark: LeNet5 checkpoint → ONNX, each step timed, then the same conversion
again (a store hit), side by side in one run, for a file store and an S3 store (moto_server).

    python tests/bench/conversion.py [--repeats 3]

Each conversion runs as a fresh ``inferplane convert`` process (what a Job or a user runs), so
the first includes importing MindSpore; the steps are read from its plain progress lines. The
store-hit ratio is printed both for whole processes and for the pipeline call alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.loopback import start_moto

ROOT = Path(__file__).resolve().parents[2]
LENET = ROOT / "examples" / "lenet"
STEP = re.compile(r"^inferplane: (.+?): done in ([\d.]+) s$", re.M)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line
        )
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def convert(store: str, out: Path, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    argv = [
        sys.executable, "-m", "inferplane", "convert",
        "--source", str(out / "lenet.ckpt"), "--format", "mindspore-checkpoint",
        "--network", "network:lenet5", "--input", "x:-1,1,32,32:FP32", "--to", "onnx",
        "--validation", str(out / "digits-val.npz"), "--store", store,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return wall, {name: float(s) for name, s in STEP.findall(done.stderr)}


def import_floor(env: dict[str, str]) -> float:
    """A process that only imports what a store hit needs (the CLI and the fast path of
    ``convert.hit``): the floor of any hit."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import inferplane.cli, inferplane.convert.hit"],
        check=True,
        env=env,
    )
    return time.perf_counter() - start


def in_process(out: Path, store: str) -> tuple[float, float]:
    """First and second ``pipeline.convert`` in one process (MindSpore already imported)."""
    from inferplane.api.tensors import TensorSpec
    from inferplane.convert import pipeline
    from inferplane.devices import ArtifactFormat

    req = pipeline.Request(
        source=str(out / "lenet.ckpt"),
        source_format=ArtifactFormat.MINDSPORE_CHECKPOINT,
        target=ArtifactFormat.ONNX,
        store=store,
        network="network:lenet5",
        inputs=(TensorSpec.parse("x:-1,1,32,32:FP32"),),
        validation=str(out / "digits-val.npz"),
        code_path=LENET,
    )
    start = time.perf_counter()
    pipeline.convert(req)
    first = time.perf_counter() - start
    start = time.perf_counter()
    assert pipeline.convert(req).cached
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferplane-bench-"))
    out = work / "trained"
    subprocess.run(
        [sys.executable, str(LENET / "train.py"), "--epochs", "2", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    moto, endpoint = start_moto()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(LENET), os.environ.get("PYTHONPATH", "")]),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    rows: dict[str, list[tuple[float, float, dict[str, float]]]] = {"file": [], "s3": []}
    floors = []
    try:
        for i in range(args.repeats):
            floors += [import_floor(env) for _ in range(3)]
            s3.create_bucket(Bucket=f"bench-{i}")
            stores = {"file": str(work / f"store-{i}"), "s3": f"s3://bench-{i}/artifacts"}
            for kind, uri in stores.items():
                first, steps = convert(uri, out, env)
                second = min(convert(uri, out, env)[0] for _ in range(3))
                rows[kind].append((first, second, steps))
        sys.path.insert(0, str(LENET))
        first_ip, second_ip = in_process(out, str(work / "store-inproc"))
    finally:
        moto.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {cpu_model()}")
    print(
        f"LeNet5 checkpoint -> ONNX, verified + accuracy on 360 digits; best of {args.repeats} "
        "first runs, best of 3 store hits each (the machine is shared: minimums are the signal)"
    )
    for kind, runs in rows.items():
        first = min(r[0] for r in runs)
        second = min(r[1] for r in runs)
        print(f"\n{kind} store: first run {first:.2f} s, second run (store hit) {second:.2f} s, "
              f"ratio {100 * second / first:.1f} %")  # fmt: skip
        names = list(runs[0][2])
        for name in names:
            value = min(r[2].get(name, 0.0) for r in runs)
            print(f"  {name:<16} {value:7.3f} s")
        accounted = min(sum(r[2].values()) for r in runs)
        print(f"  {'process + CLI':<16} {first - accounted:7.3f} s (interpreter, imports, exit)")
    floor = min(floors)
    print(f"\nprocess floor (interpreter, CLI and the store-hit path imported): {floor:.2f} s")
    for kind, runs in rows.items():
        first = min(r[0] for r in runs)
        second = min(r[1] for r in runs)
        print(f"  {kind} store hit beyond the floor: {second - floor:.2f} s "
              f"({100 * (second - floor) / first:.1f} % of the first run)")  # fmt: skip
    print(
        f"\nin one process: first {first_ip:.2f} s, store hit {1000 * second_ip:.1f} ms, "
        f"ratio {100 * second_ip / first_ip:.2f} %"
    )


if __name__ == "__main__":
    main()
