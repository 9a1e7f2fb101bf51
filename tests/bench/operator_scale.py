# SPDX-License-Identifier: Apache-2.0
"""Operator at scale: many simulated nodes of mixed classes, many InferenceModels at once.

    python -m tests.bench.operator_scale [--nodes 1000] [--models 1000] [--no-floor]

Brings up a test cluster (tests/cluster) with the nodes, pre-fills a file store with the
artifacts of every model's targets (each model names its source's sha256, so the operator finds
them in the store and runs no Job: conversions are hits), starts the real operator as a
subprocess, applies all models in one ``kubectl apply``, and measures until every model is
``Ready``: wall time, p50/p99 time-to-Ready per model (creation → Ready condition), the operator's
CPU seconds and peak RSS, API writes per model (counted by the operator's client), and server pods
placed on a node of the wrong class or product. Prints each number beside its target.

Before the operator, the same run measures the floor on a fresh cluster of the same nodes: the
objects the operator would create, rendered ahead of time and applied by a bare client with no
operator (``tests/bench/operator_floor.py``); then it prints all-Ready over the floor's time
(``--no-floor``: the operator only). The floor alone moved by a fifth between runs on a quiet
machine, so the sides run in ``--pairs`` interleaved pairs (floor, operator, floor, operator,
each on a fresh cluster) and the ratio is printed per pair. Each side waits (at most 3
minutes) until nothing outside the cluster and the bench uses the machine, and reports the CPU
seconds the machine spent outside them while it ran (``outside_cpu_s``): past 5 % of the
machine the side is ``disturbed``, and its pair's ratio does not count.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import re
import ssl
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.bench import operator_floor
from tests.cluster import build, control_plane, handle
from tests.cluster.profile import Profile
from tests.e2e import operator_process as op

from inferplane.api import v1alpha1
from inferplane.control import kube, planner
from inferplane.control.inventory import Inventory
from inferplane.control.settings import OperatorSettings

TARGETS = {
    "all_ready_s": 160.0,
    "operator_cpu_ms_per_model": 25.0,
    "peak_rss_mb": 300.0,
    "writes_per_model": 15.0,
    "misplaced": 0,
}
"""Issue 13's targets on 1000 nodes and 1000 models (160 s: a guide for this 2-core machine)."""
FLOOR_RATIO = 1.10
"""All models Ready within this multiple of the floor's time, measured in the same run."""
DISTURBED_SHARE = 0.05
"""A side during which the machine spent more than this share of its CPU outside the cluster,
the operator and the bench was disturbed: its time is no measurement."""
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


def models_of(specs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """InferenceModels ``m0000``, ``m0001``, ... with these specs."""
    items = []
    for i, spec in enumerate(specs):
        manifest = op.model(f"m{i:04d}")
        manifest["spec"] = spec
        manifest["metadata"]["namespace"] = namespace
        items.append(manifest)
    return items


def _prefill(store: Path, specs: list[dict[str, Any]], inventory: Inventory, namespace: str) -> int:
    """Publish an artifact for every target of every model; returns how many artifacts."""
    written = 0
    for raw in specs:
        spec = v1alpha1.validate_spec(raw)
        for target in planner.choose_targets(spec, inventory):
            settings = OperatorSettings()
            options = planner.cluster_options(spec, target, settings)
            key = planner.assigned_key(spec, options, namespace=namespace, settings=settings)
            written += op.publish_artifact(store, key, options)
    return written


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every core, since boot)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process (all its threads: the floor's client, the watches) and its
    finished children (kubectl)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _parse(text: str, wanted: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], float]:
    """Prometheus text → {(metric, label values...): value}, summed over the other labels."""
    out: dict[tuple[str, ...], float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name not in wanted or "}" not in rest:
            continue
        labels_text, _, value = rest.rpartition("}")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        key = (name, *(labels.get(label, "") for label in wanted[name]))
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _metrics(cluster: handle.Cluster) -> dict[tuple[str, ...], float]:
    """The API server's request counters and latency sums, keyed by (metric, label values)."""
    wanted = {
        "apiserver_request_total": ("verb", "resource"),
        "apiserver_request_duration_seconds_sum": ("verb", "resource"),
        "apiserver_request_duration_seconds_count": ("verb", "resource"),
        "apiserver_flowcontrol_request_wait_duration_seconds_sum": ("priority_level",),
        "apiserver_flowcontrol_request_wait_duration_seconds_count": ("priority_level",),
    }
    return _parse(cluster.kubectl("get", "--raw", "/metrics").stdout, wanted)


def _queues(state: control_plane.State) -> dict[tuple[str, ...], float]:
    """The controller manager's work queues: adds, and time waiting in the queue and working."""
    wanted: dict[str, tuple[str, ...]] = {
        f"workqueue_{m}": ("name",)
        for m in (
            "adds_total",
            "queue_duration_seconds_sum",
            "queue_duration_seconds_count",
            "work_duration_seconds_sum",
            "work_duration_seconds_count",
        )
    }
    url = f"https://127.0.0.1:{state.ports['kube-controller-manager']}/metrics"
    context = control_plane._ssl_context(state.directory)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the controller manager's self-signed serving cert
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        return _parse(response.read().decode(), wanted)


def _queue_report(
    before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]
) -> list[str]:
    """Per busy work queue: items added, mean wait in the queue, mean work per item."""

    def delta(metric: str, name: str) -> float:
        key = (f"workqueue_{metric}", name)
        return after.get(key, 0.0) - before.get(key, 0.0)

    lines = []
    for metric, name in sorted(after):
        adds = delta("adds_total", name)
        if metric != "workqueue_adds_total" or adds < 100:
            continue
        waited = delta("queue_duration_seconds_sum", name)
        worked = delta("work_duration_seconds_sum", name)
        count = max(1.0, delta("work_duration_seconds_count", name))
        lines.append(
            f"{name}: {adds:.0f} adds, wait {1000 * waited / count:.0f} ms, "
            f"work {1000 * worked / count:.0f} ms per item"
        )
    return lines


def _ready_watch(
    state: control_plane.State, namespace: str, models: int
) -> tuple[operator_floor.Watch, dict[str, dict[str, Any]]]:
    """Follows the models with one watch until every one is Ready. Polling instead — a LIST of
    1000 models every 2 s, through kubectl — cost the 2 cores about 10 % of the run."""
    ready: dict[str, dict[str, Any]] = {}

    def seen(item: dict[str, Any]) -> bool:
        name = item["metadata"]["name"]
        if (item.get("status") or {}).get("phase") == "Ready":
            ready[name] = item
        else:
            ready.pop(name, None)
        return len(ready) == models

    path = kube.path_of(v1alpha1.API_VERSION, v1alpha1.KIND, namespace=namespace)
    return operator_floor.Watch(state, path, seen), ready


def _requests(
    before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]
) -> list[str]:
    """The API server's requests during the run by verb and resource: count and mean latency,
    then the API Priority and Fairness queue waits by priority level."""

    def delta(key: tuple[str, ...]) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    rows = []
    for key in after:
        if key[0] == "apiserver_request_total" and delta(key) >= 100:
            count = delta(("apiserver_request_duration_seconds_count", *key[1:]))
            seconds = delta(("apiserver_request_duration_seconds_sum", *key[1:]))
            mean = f"{1000 * seconds / count:.0f} ms" if count else "-"
            rows.append((delta(key), f"{key[1]} {key[2]}: {delta(key):.0f} (mean {mean})"))
    lines = [text for _, text in sorted(rows, reverse=True)]
    for key in after:
        if key[0] == "apiserver_flowcontrol_request_wait_duration_seconds_count" and delta(key):
            seconds = delta(("apiserver_flowcontrol_request_wait_duration_seconds_sum", key[1]))
            lines.append(f"APF wait {key[1]}: {delta(key):.0f} requests, {seconds:.1f} s in all")
    return lines


def _settle(cluster: handle.Cluster, *, quiet: float = 20.0, limit: float = 120.0) -> float:
    """Wait until the freshly started cluster is quiet (below ``quiet`` API requests/s over 5 s):
    right after 1000 nodes turn Ready the controllers and kwok patch, list and post events for
    each of them for about half a minute, which is start-up, not the operator's load."""
    started = time.monotonic()
    before = sum(v for k, v in _metrics(cluster).items() if k[0] == "apiserver_request_total")
    while time.monotonic() - started < limit:
        time.sleep(5)
        now = sum(v for k, v in _metrics(cluster).items() if k[0] == "apiserver_request_total")
        if now - before < 5 * quiet:
            break
        before = now
    return time.monotonic() - started


def _outside_s(pids: dict[str, int], seconds: float) -> float:
    """CPU seconds the machine spends outside these processes and the bench over ``seconds``."""
    machine, own = _machine_busy_s(), _own_cpu_s()
    cpu = sum(_cpu_seconds(p) for p in pids.values())
    time.sleep(seconds)
    outside = _machine_busy_s() - machine - (_own_cpu_s() - own)
    return outside - (sum(_cpu_seconds(p) for p in pids.values()) - cpu)


def _quiet_machine(pids: dict[str, int], *, limit: float = 180.0) -> float:
    """Wait until nothing outside the cluster and the bench uses the machine (under a tenth of a
    core over 5 s), at most ``limit``: another program's tests share these 2 cores."""
    started = time.monotonic()
    while time.monotonic() - started < limit and _outside_s(pids, 5.0) > 0.5:
        pass
    return time.monotonic() - started


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


OWNED = ("deployments", "services", "horizontalpodautoscalers", "poddisruptionbudgets", "jobs")


def objects_per_model(cluster: handle.Cluster, namespace: str) -> dict[str, list[str]]:
    """Per model uid, the kinds of the objects it owns (Jobs shared by several count for each)."""
    owned: dict[str, list[str]] = {}
    for plural in OWNED:
        for obj in cluster.get(plural, namespace=namespace):
            for ref in obj["metadata"].get("ownerReferences") or []:
                owned.setdefault(ref["uid"], []).append(obj["kind"])
    return owned


def objects_per_shape(cluster: handle.Cluster, namespace: str) -> list[str]:
    """Per model shape (its devices), the objects a model owns, e.g. ``cpu: Deployment 1,
    Service 1 (2 in all)``: what every model costs the cluster besides its status and Events."""
    owned = objects_per_model(cluster, namespace)
    shapes: dict[str, list[list[str]]] = {}
    for model in cluster.get("inferencemodels", namespace=namespace):
        shape = ",".join(model["spec"]["devices"])
        shapes.setdefault(shape, []).append(owned.get(model["metadata"]["uid"], []))
    lines = []
    for shape, kinds in sorted(shapes.items()):
        counts: dict[str, float] = {}
        for one in kinds:
            for kind in one:
                counts[kind] = counts.get(kind, 0) + 1 / len(kinds)
        parts = ", ".join(f"{kind} {n:g}" for kind, n in sorted(counts.items()))
        lines.append(f"{shape} ({len(kinds)} models): {parts} ({sum(counts.values()):g} in all)")
    return lines


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


def run(
    nodes: int, models: int, timeout: float, clients: int = 1, *, floor: bool = False
) -> dict[str, Any]:
    """One side of the bench on a fresh cluster: the operator, or with ``floor`` its rendered
    objects applied by a bare client (``tests/bench/operator_floor.py``)."""
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
        namespace = cluster.create_namespace("bench")
        artifacts = _prefill(work / "store", specs, inventory, namespace)
        items = models_of(specs, namespace)
        operator = op.Operator(cluster, store=f"file://{work / 'store'}", log=work / "operator.log")
        rendered: dict[str, str] = {}
        if floor:
            settings = _settings(operator.environment())
            rendered = operator_floor.render(items, inventory, settings)
        settled = _settle(cluster)
        pids = dict(state.pids)
        waited_quiet = _quiet_machine(pids)
        bare = None
        if floor:
            bare = operator_floor.Floor(state, namespace, rendered, settings.workers)
            bare.start()
            done = bare.ready
        else:
            operator.start()
            assert operator.process is not None
            pids["operator"] = operator.process.pid
            watch, ready_models = _ready_watch(state, namespace, models)
            watch.start()
            done = watch.done
        cpu_before = {name: _cpu_seconds(p) for name, p in pids.items()}
        children_before = os.times().children_user + os.times().children_system
        machine_before, own_before = _machine_busy_s(), _own_cpu_s()
        load_before = os.getloadavg()[0]
        metrics_before = _metrics(cluster)
        queues_before = _queues(state)

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
        done.wait(max(0.0, timeout - applied))
        all_ready = time.monotonic() - started
        (bare or watch).stop()
        cpu = {name: round(_cpu_seconds(p) - cpu_before[name], 1) for name, p in pids.items()}
        cpu["kubectl"] = round(
            os.times().children_user + os.times().children_system - children_before, 1
        )
        machine = _machine_busy_s() - machine_before
        own = _own_cpu_s() - own_before
        outside = machine - own - sum(v for k, v in cpu.items() if k != "kubectl")
        requests = _requests(metrics_before, _metrics(cluster))
        queues = _queue_report(queues_before, _queues(state))
        wrong, pods = _misplaced(cluster, namespace)
        common = {
            "side": "floor (bare client, no operator)" if floor else "operator",
            "nodes": nodes,
            "models": models,
            "artifacts_prefilled": artifacts,
            "settle_s": round(settled, 1),
            "apply_clients": clients,
            "apply_s": round(applied, 1),
            "all_ready_s": round(all_ready, 1),
            "load_average_before": round(load_before, 2),
            "waited_for_quiet_s": round(waited_quiet, 1),
            "outside_cpu_s": round(outside, 1),
            "disturbed": outside > DISTURBED_SHARE * (os.cpu_count() or 1) * all_ready,
        }
        tail = {
            "cpu_s_by_process": cpu,
            "server_pods": pods,
            "misplaced": wrong,
            "objects_per_model": objects_per_shape(cluster, namespace),
            "api_requests": requests,
            "controller_queues": queues,
        }
        if bare is not None:
            deployments = len(operator_floor.deployments_of(rendered))
            return {
                **common,
                "ready": deployments - len(bare.waiting),
                "deployments": deployments,
                "objects_applied": bare.applied,
                "apply_errors": bare.errors[:5],
                **tail,
            }
        ready = list(ready_models.values())
        rss = _peak_rss_mb(pids["operator"])
        operator.stop()
        found = re.findall(
            r"reconciles: (\d+); API writes: (\d+)", (work / "operator.log").read_text()
        )
        reconciles, writes = (int(n) for n in found[-1]) if found else (-1, -1)
        per_model = []
        for item in ready:
            created = datetime.fromisoformat(item["metadata"]["creationTimestamp"])
            cond = next(c for c in item["status"]["conditions"] if c["type"] == "Ready")
            per_model.append(
                (datetime.fromisoformat(cond["lastTransitionTime"]) - created).total_seconds()
            )
        return {
            **common,
            "ready": len(ready),
            "p50_s": round(_percentile(per_model, 0.5), 1) if per_model else None,
            "p99_s": round(_percentile(per_model, 0.99), 1) if per_model else None,
            "operator_cpu_s": cpu["operator"],
            "operator_cpu_ms_per_model": round(1000 * cpu["operator"] / models, 1),
            "peak_rss_mb": round(rss, 1),
            "reconciles": reconciles,
            "writes_per_model": round(writes / models, 2) if writes >= 0 else None,
            "operator_log": str(work / "operator.log"),
            **tail,
        }
    finally:
        control_plane.down(directory)


def _settings(environment: dict[str, str]) -> OperatorSettings:
    """The operator process's settings, read from the environment it would be given."""
    saved = dict(os.environ)
    try:
        os.environ.update({k: v for k, v in environment.items() if k.startswith("INFERPLANE_")})
        return OperatorSettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _report(result: dict[str, Any]) -> None:
    for name, value in result.items():
        if isinstance(value, list):
            print(f"{name}:", *(f"  {line}" for line in value), sep="\n")
            continue
        target = TARGETS.get(name) if result["side"] == "operator" else None
        if target is None or value is None:
            print(f"{name}: {value}")
            continue
        verdict = "ok" if value <= target else "MISSED"
        ratio = f"{value / target:.2f}x target" if target else ""
        print(f"{name}: {value} (target <= {target}; {ratio} {verdict})")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--clients", type=int, default=8, help="concurrent kubectl apply")
    parser.add_argument(
        "--no-floor", action="store_true", help="the operator only, without the floor beside it"
    )
    parser.add_argument(
        "--pairs", type=int, default=2, help="floor and operator sides, interleaved, this often"
    )
    args = parser.parse_args()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {cpu}", flush=True)
    ratios = []
    for pair in range(1, (1 if args.no_floor else args.pairs) + 1):
        floor = None
        if not args.no_floor:
            print(f"pair {pair}:")
            floor = run(args.nodes, args.models, args.timeout, args.clients, floor=True)
            _report(floor)
            print()
        result = run(args.nodes, args.models, args.timeout, args.clients)
        _report(result)
        if floor is not None and floor["ready"] == floor["deployments"]:
            ratio = result["all_ready_s"] / floor["all_ready_s"]
            verdict = "ok" if ratio <= FLOOR_RATIO else "MISSED"
            if floor["disturbed"] or result["disturbed"]:
                verdict = "not a measurement: a side was disturbed"
            else:
                ratios.append(ratio)
            target = f"target <= {FLOOR_RATIO}x; {verdict}"
            print(f"pair {pair}: all Ready / floor: {ratio:.2f}x ({target})")
        print(flush=True)
    if ratios:
        shown = ", ".join(f"{r:.2f}x" for r in ratios)
        verdict = "ok" if max(ratios) <= FLOOR_RATIO else "MISSED"
        print(
            f"all Ready / floor per undisturbed pair: {shown} "
            f"(target <= {FLOOR_RATIO}x in each; {verdict})"
        )


if __name__ == "__main__":
    main()
