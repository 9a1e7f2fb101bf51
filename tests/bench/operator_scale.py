# SPDX-License-Identifier: Apache-2.0
"""Operator at scale: many simulated nodes of mixed classes, many InferenceModels at once.

    python -m tests.bench.operator_scale [--nodes 1000] [--models 1000]

Brings up a test cluster (tests/cluster) with the nodes, pre-fills a file store with the
artifacts of every model's targets (each model names its source's sha256, so the operator finds
them in the store and runs no Job: conversions are hits), starts the real operator as a
subprocess, applies all models in one ``kubectl apply``, and measures until every model is
``Ready``: wall time, p50/p99 time-to-Ready per model (creation → Ready condition), the operator's
CPU seconds and peak RSS, API writes per model (counted by the operator's client), and server pods
placed on a node of the wrong class or product. Prints each number beside its target.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.cluster import build, control_plane, handle
from tests.cluster.profile import Profile
from tests.e2e import operator_process as op

from inferplane.api import v1alpha1
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.manifest import (
    ArtifactManifest,
    FileEntry,
    SourceRef,
    Verification,
)
from inferplane.control import planner
from inferplane.control.inventory import Inventory

TARGETS = {"all_ready_s": 120.0, "peak_rss_mb": 300.0, "writes_per_model": 15.0, "misplaced": 0}
CHOICES = (["cpu"], ["nvidia"], ["ascend910"], ["ascend310"])
SOURCES = 10
"""Distinct sources: several models share one, as teams serve the same model twice."""


def _profile(nodes: int) -> Profile:
    accel = nodes * 3 // 20  # 15 % per accelerator kind (nvidia counts per product)
    return Profile(cpu=nodes - 5 * accel, nvidia=accel, ascend910=accel, ascend310=accel)


def _spec(index: int) -> dict[str, Any]:
    sha = hashlib.sha256(f"source-{index % SOURCES}".encode()).hexdigest()
    return {
        "source": {
            "uri": f"s3://models/m{index % SOURCES}.ckpt",
            "format": "mindspore-checkpoint",
            "network": "network:mlp",
            "sha256": sha,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
        },
        "devices": CHOICES[index % len(CHOICES)],
    }


def _prefill(store: Path, specs: list[dict[str, Any]], inventory: Inventory) -> int:
    """Publish an artifact for every target of every model; returns how many artifacts."""
    written = 0
    for raw in specs:
        spec = v1alpha1.validate_spec(raw)
        for target in planner.choose_targets(spec, inventory):
            options = planner.target_options(spec, target)
            key = planner.known_key(spec, options)
            assert key is not None
            directory = store / key
            if directory.exists():
                continue
            directory.mkdir(parents=True)
            model = directory / "model.bin"
            model.write_bytes(key.encode())
            ArtifactManifest(
                key=key,
                model="bench",
                source=SourceRef(uri=spec.source.uri, format=spec.source.format,
                                 sha256=spec.source.sha256 or ""),
                target=options,
                files=[FileEntry(path="model.bin", sha256=hashlib.sha256(key.encode()).hexdigest(),
                                 size=len(key))],
                entrypoint="model.bin",
                inputs=[TensorSpec.parse("x:-1,64:FP32")],
                outputs=[TensorSpec.parse("y:-1,10:FP32")],
                verification=Verification(verified=True, max_abs_error=1e-7),
            ).write(directory)  # fmt: skip
            written += 1
    return written


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _misplaced(cluster: handle.Cluster, namespace: str) -> tuple[int, int]:
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")}
    pods = [
        p for p in cluster.get("pods", namespace=namespace)
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "server"
    ]  # fmt: skip
    wrong = 0
    for pod in pods:
        node = nodes.get(pod["spec"].get("nodeName", ""))
        if node is None:
            wrong += 1
            continue
        pool = Inventory.from_nodes([node]).pools[0]
        labels = pod["metadata"]["labels"]
        product = labels.get("inferplane.io/product")
        if pool.device_class.value != labels["inferplane.io/device-class"] or (
            product is not None and pool.product != product
        ):
            wrong += 1
    return wrong, len(pods)


def run(nodes: int, models: int, timeout: float, clients: int = 1) -> dict[str, Any]:
    # Every model has a ClusterIP Service: 1000 of them need more than the test cluster's /24.
    for module in (control_plane, importlib.import_module("tests.cluster.components")):
        if hasattr(module, "SERVICE_CIDR"):
            module.SERVICE_CIDR = "10.0.0.0/16"  # type: ignore[attr-defined]
    directory = build.cache_root() / "cluster" / f"bench-operator-{os.getpid()}"
    state, _ = control_plane.up(directory, _profile(nodes), tie_to_parent=True)
    work = Path(tempfile.mkdtemp(prefix="inferplane-operator-scale-"))
    try:
        cluster = handle.Cluster(state)
        op.install_crd(cluster)
        inventory = Inventory.from_nodes(cluster.get("nodes"))
        specs = [_spec(i) for i in range(models)]
        artifacts = _prefill(work / "store", specs, inventory)
        namespace = cluster.create_namespace("bench")
        operator = op.Operator(cluster, store=f"file://{work / 'store'}", log=work / "operator.log")
        operator.start()
        assert operator.process is not None
        pid = operator.process.pid
        cpu_before = _cpu_seconds(pid)
        items = []
        for i, spec in enumerate(specs):
            manifest = op.model(f"m{i:04d}")
            manifest["spec"] = spec
            manifest["metadata"]["namespace"] = namespace
            items.append(manifest)

        def apply(chunk: list[dict[str, Any]]) -> None:
            cluster.kubectl(
                "apply", "--server-side", "-f", "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": chunk}), timeout=600,
            )  # fmt: skip

        started = time.monotonic()
        # One kubectl applies its objects one at a time; like a GitOps controller, the bench
        # submits with `clients` concurrent ones so the client's latency does not bound the run.
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(apply, [items[i::clients] for i in range(clients)]))
        applied = time.monotonic() - started
        ready: list[dict[str, Any]] = []
        while time.monotonic() - started < timeout:
            listed = cluster.get("inferencemodels", namespace=namespace)
            ready = [m for m in listed if (m.get("status") or {}).get("phase") == "Ready"]
            if len(ready) == models:
                break
            time.sleep(2)
        all_ready = time.monotonic() - started
        cpu = _cpu_seconds(pid) - cpu_before
        rss = _peak_rss_mb(pid)
        operator.stop()
        found = re.findall(r"API writes: (\d+)", (work / "operator.log").read_text())
        writes = int(found[-1]) if found else -1
        per_model = []
        for item in ready:
            created = datetime.fromisoformat(item["metadata"]["creationTimestamp"])
            cond = next(c for c in item["status"]["conditions"] if c["type"] == "Ready")
            per_model.append(
                (datetime.fromisoformat(cond["lastTransitionTime"]) - created).total_seconds()
            )
        wrong, pods = _misplaced(cluster, namespace)
        return {
            "nodes": nodes,
            "models": models,
            "ready": len(ready),
            "artifacts_prefilled": artifacts,
            "apply_clients": clients,
            "apply_s": round(applied, 1),
            "all_ready_s": round(all_ready, 1),
            "p50_s": round(_percentile(per_model, 0.5), 1) if per_model else None,
            "p99_s": round(_percentile(per_model, 0.99), 1) if per_model else None,
            "operator_cpu_s": round(cpu, 1),
            "peak_rss_mb": round(rss, 1),
            "writes_per_model": round(writes / models, 2) if writes >= 0 else None,
            "server_pods": pods,
            "misplaced": wrong,
            "operator_log": str(work / "operator.log"),
        }
    finally:
        control_plane.down(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--clients", type=int, default=8, help="concurrent kubectl apply")
    args = parser.parse_args()
    result = run(args.nodes, args.models, args.timeout, args.clients)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {cpu}")
    for name, value in result.items():
        target = TARGETS.get(name)
        if target is None or value is None:
            print(f"{name}: {value}")
            continue
        verdict = "ok" if value <= target else "MISSED"
        ratio = f"{value / target:.2f}x target" if target else ""
        print(f"{name}: {value} (target <= {target}; {ratio} {verdict})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
