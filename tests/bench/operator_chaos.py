# SPDX-License-Identifier: Apache-2.0
"""Chaos: the operator SIGKILLed again and again while nodes are cordoned and specs edited.

    python -m tests.bench.operator_chaos [--models 200] [--kills 12] [--seed 13]

Brings up a test cluster of mixed nodes (cpu, A100, T4, Ascend 910B and 310P), applies the models
(most find their artifact in a pre-filled store; a fifth of the cpu ones convert, their held
conversion pods released by a thread as ``inferplane convert`` would finish), and while they roll
out kills the operator with SIGKILL at random moments, restarting it each time, and between kills
cordons and uncordons every node of a random accelerator product and edits random specs (replica
ranges fixed <-> autoscaled; the verification of converting models, a new conversion). A watcher
polls all the while. After the last restart, with every node uncordoned, it waits for every model
to be Ready and checks: zero Jobs no model plans (duplicates), zero children without a live owner
or outside their owner's plan (orphans), and that no model, once Ready, was ever seen with zero
ready server pods while a schedulable node of a class it served existed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.bench import operator_scale
from tests.cluster import build, control_plane, handle
from tests.cluster.profile import Profile
from tests.e2e import operator_process as op

from inferplane.control import naming
from inferplane.control.inventory import Inventory, classify
from inferplane.devices import DeviceClass

A100 = "A100-SXM4-40GB"
PROFILE = Profile(cpu=6, nvidia=4, ascend910=4, ascend310=5)
"""23 nodes: 6 cpu, 4 A100 (32 GPUs), 4 T4 (16), 4 Ascend 910B (32 NPUs), 5 Ascend 310P (20)."""
SHAPES = (
    (110, {"devices": ["cpu"]}),
    (30, {"devices": ["nvidia", "cpu"], "deviceOptions": {"nvidia": {"products": [A100]}}}),
    (15, {"devices": ["nvidia", "cpu"], "deviceOptions": {"nvidia": {"products": ["T4"]}}}),
    (25, {"devices": ["ascend910", "cpu"]}),
    (20, {"devices": ["ascend310", "cpu"]}),
)  # fmt: skip
"""Per 200 models, how many of each shape (each fits its class's devices, and cpu as fallback)."""


def _specs(models: int) -> list[dict[str, Any]]:
    """Model specs in the proportions of ``SHAPES``; every fifth cpu model converts (its source
    digest is not in the store)."""
    total = sum(n for n, _ in SHAPES)
    specs: list[dict[str, Any]] = []
    for count, shape in SHAPES:
        for _ in range(round(count * models / total)):
            index = len(specs)
            spec = {**operator_scale._spec(index), **shape}
            if shape["devices"] == ["cpu"] and index % 5 == 0:
                source = dict(spec["source"])
                source["sha256"] = hashlib.sha256(f"convert-{index}".encode()).hexdigest()
                spec["source"] = source
            specs.append(spec)
    return specs[:models]


def _server_pods(cluster: handle.Cluster, namespace: str) -> list[dict[str, Any]]:
    selector = f"{naming.COMPONENT_LABEL}={naming.SERVER}"
    found = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    items: list[dict[str, Any]] = json.loads(found.stdout)["items"]
    return items


class Watcher(threading.Thread):
    """Every ``interval`` s: the ready server pods per model uid, the schedulable classes, and
    the models that once were Ready; records every model seen with no ready pod while a
    schedulable node of a class it serves existed."""

    def __init__(self, cluster: handle.Cluster, namespace: str, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.cluster, self.namespace, self.interval = cluster, namespace, interval
        self.stop = threading.Event()
        self.served: set[str] = set()
        self.violations: list[str] = []
        self.polls = 0

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # a poll failed (the API server busy): the next one counts
                print(f"watch: poll failed: {exc}", file=sys.stderr)

    def poll(self) -> None:
        # Only models seen Ready by an earlier poll count: one that turns Ready between this
        # poll's listing of pods and its listing of models had no ready pod when they were listed.
        served_before = set(self.served)
        nodes = self.cluster.get("nodes")
        schedulable = set()
        for node in nodes:
            if not node["spec"].get("unschedulable"):
                pool = classify(node)
                schedulable.add(str(pool.device_class))
                schedulable.add(f"{pool.device_class}/{pool.product}")
        ready: dict[str, int] = {}
        for pod in _server_pods(self.cluster, self.namespace):
            uid = pod["metadata"]["labels"].get(naming.MODEL_UID_LABEL, "")
            ok = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod.get("status", {}).get("conditions") or []
            )
            ready[uid] = ready.get(uid, 0) + (1 if ok else 0)
        for model in self.cluster.get("inferencemodels", namespace=self.namespace):
            uid = model["metadata"]["uid"]
            status = model.get("status") or {}
            if status.get("phase") in ("Ready", "Degraded"):
                self.served.add(uid)
            if uid not in served_before or ready.get(uid, 0) > 0:
                continue
            classes = [d for d in (status.get("devices") or "").split(",") if d]
            live = [d for d in classes if d in schedulable]
            if live:
                self.violations.append(
                    f"{model['metadata']['name']}: 0 ready pods, schedulable {','.join(live)}"
                )
        self.polls += 1


def _release_conversions(cluster: handle.Cluster, namespace: str, stop: threading.Event) -> None:
    """Finish held conversion pods as ``inferplane convert`` would (a key in the message)."""
    while not stop.wait(1.0):
        try:
            for pod in op.held_pods(cluster, namespace):
                op.release_with_result(cluster, namespace, pod)
        except Exception as exc:  # a pod gone in between: the next round
            print(f"release: {exc}", file=sys.stderr)


def _edit(
    cluster: handle.Cluster, namespace: str, name: str, spec: dict[str, Any], rng: random.Random
) -> str:
    if _converts(int(name[1:]), spec):
        patch = {"spec": {"verification": {"samples": rng.randint(2, 64)}}}
        what = "verification"
    else:
        high = rng.choice([1, 3])
        patch = {"spec": {"replicas": {"min": 1, "max": high}}}
        what = f"replicas 1..{high}"
    cluster.kubectl("patch", "im", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    return what


def _check(cluster: handle.Cluster, namespace: str) -> dict[str, Any]:
    models = cluster.get("inferencemodels", namespace=namespace)
    uids = {m["metadata"]["uid"]: m for m in models}
    planned_jobs: set[str] = set()
    planned_pools: set[str] = set()
    for model in models:
        for target in model["status"].get("targets", []):
            if target.get("job"):
                planned_jobs.add(target["job"])
            planned_pools.add(
                naming.pool_name(
                    model["metadata"]["name"],
                    DeviceClass(target["deviceClass"]),
                    target.get("product"),
                )
            )
    jobs = cluster.get("jobs", namespace=namespace)
    unplanned_jobs = [
        j["metadata"]["name"] for j in jobs if j["metadata"]["name"] not in planned_jobs
    ]
    orphans = []
    for kind in ("deployments", "services", "hpa", "pdb", "jobs"):
        for obj in cluster.get(kind, namespace=namespace):
            meta = obj["metadata"]
            owners = [r["uid"] for r in meta.get("ownerReferences") or []]
            if not any(uid in uids for uid in owners):
                orphans.append(f"{kind}/{meta['name']}")
            elif kind == "deployments" and meta["name"] not in planned_pools:
                orphans.append(f"{kind}/{meta['name']} (not planned)")
    return {
        "models": len(models),
        "ready": sum(1 for m in models if m["status"].get("phase") == "Ready"),
        "jobs": len(jobs),
        "jobs_no_model_plans": unplanned_jobs,
        "orphans": orphans,
    }


def run(models: int, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    for module in (control_plane, importlib.import_module("tests.cluster.components")):
        if hasattr(module, "SERVICE_CIDR"):
            module.SERVICE_CIDR = "10.0.0.0/16"  # type: ignore[attr-defined]
    directory = build.cache_root() / "cluster" / f"bench-chaos-{os.getpid()}"
    state, _ = control_plane.up(directory, PROFILE, tie_to_parent=True)
    work = Path(tempfile.mkdtemp(prefix="inferplane-operator-chaos-"))
    try:
        cluster = handle.Cluster(state)
        op.install_crd(cluster)
        inventory = Inventory.from_nodes(cluster.get("nodes"))
        specs = _specs(models)
        hits = [s for i, s in enumerate(specs) if not _converts(i, s)]
        namespace = cluster.create_namespace("chaos")
        operator_scale._prefill(work / "store", hits, inventory, namespace)
        operator = op.Operator(cluster, store=f"file://{work / 'store'}", log=work / "operator.log")
        operator.start()
        stop = threading.Event()
        releaser = threading.Thread(
            target=_release_conversions, args=(cluster, namespace, stop), daemon=True
        )
        releaser.start()
        watcher = Watcher(cluster, namespace)
        watcher.start()
        items = operator_scale.models_of(specs, namespace)
        started = time.monotonic()
        cluster.kubectl(
            "apply", "--server-side", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), timeout=600,
        )  # fmt: skip
        products = {
            "T4": [n.name for n in PROFILE.nodes if n.product.name == "T4"],
            "A100": [n.name for n in PROFILE.nodes if n.product.name == "A100-SXM4-40GB"],
            "910B": [n.name for n in PROFILE.nodes if n.product.name == "910B"],
        }
        cordoned: set[str] = set()
        log: list[str] = []
        for kill in range(kills):
            time.sleep(rng.uniform(3, 12))
            action = rng.choice(["cordon", "uncordon", "edit", "edit"])
            if action == "cordon":
                product = rng.choice(sorted(products))
                cluster.kubectl("cordon", *products[product])
                cordoned.add(product)
                log.append(f"cordon {product}")
            elif action == "uncordon" and cordoned:
                product = rng.choice(sorted(cordoned))
                cluster.kubectl("uncordon", *products[product])
                cordoned.discard(product)
                log.append(f"uncordon {product}")
            else:
                picks = rng.sample(range(len(specs)), 5)
                edits = [_edit(cluster, namespace, f"m{i:04d}", specs[i], rng) for i in picks]
                log.append(f"edit {len(edits)} ({', '.join(sorted(set(edits)))})")
            time.sleep(rng.uniform(0, 4))
            assert operator.process is not None
            operator.process.send_signal(signal.SIGKILL)
            operator.process.wait()
            operator.process = None
            log.append(f"SIGKILL {kill + 1} at {time.monotonic() - started:.0f} s")
            operator.start()
        for product in cordoned:
            cluster.kubectl("uncordon", *products[product])
            log.append(f"uncordon {product}")
        chaos_s = time.monotonic() - started

        def all_ready() -> bool:
            found = cluster.get("inferencemodels", namespace=namespace)
            return len(found) == len(specs) and all(
                (m.get("status") or {}).get("phase") == "Ready" for m in found
            )

        try:
            handle.wait_until(all_ready, timeout=600, interval=5, what="every model Ready")
            settled = True
        except TimeoutError:
            settled = False
        ready_s = time.monotonic() - started
        time.sleep(5)
        stop.set()
        watcher.stop.set()
        watcher.join()
        result = _check(cluster, namespace)
        operator.stop()
        return {
            "nodes": len(PROFILE.nodes),
            "kills": kills,
            "chaos_s": round(chaos_s, 1),
            "all_ready": settled,
            "all_ready_s": round(ready_s, 1),
            **result,
            "watch_polls": watcher.polls,
            "zero_ready_while_schedulable": watcher.violations,
            "events": log,
            "operator_log": str(work / "operator.log"),
        }
    finally:
        control_plane.down(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _converts(index: int, spec: dict[str, Any]) -> bool:
    """True for a model whose source is not in the pre-filled store."""
    return bool(spec["source"]["sha256"] != operator_scale._spec(index)["source"]["sha256"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    load = os.getloadavg()
    result = run(args.models, args.kills, args.seed)
    after = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores; load average before {load[0]:.1f}, after {after:.1f}")
    for name, value in result.items():
        if isinstance(value, list):
            print(f"{name}: {len(value)}", *(f"  {line}" for line in value), sep="\n")
        else:
            print(f"{name}: {value}")
    ok = (
        result["all_ready"] and not result["jobs_no_model_plans"] and not result["orphans"]
        and not result["zero_ready_while_schedulable"]
    )  # fmt: skip
    print("verdict:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
