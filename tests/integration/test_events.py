# SPDX-License-Identifier: Apache-2.0
"""The operator on the real API server while the cluster does what clusters do: nodes cordoned
and uncordoned, a NotReady flap, a node deleted, a new GPU product, models named to collide, an
autoscaling switch watched on the Deployment, a failed conversion whose Job is deleted, rapid
spec edits (issue 13). Conversion pods are held and released as in ``test_operator.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import operator_scale
from tests.cluster import handle
from tests.cluster.profile import T4, Node
from tests.e2e import operator_process as op
from tests.integration.test_operator import _release_all, _release_once, _release_target

from inferplane import errors
from inferplane.control import kube, naming
from inferplane.control.inventory import Inventory
from inferplane.devices import DeviceClass

PREFER_T4 = {"devices": ["nvidia", "cpu"], "deviceOptions": {"nvidia": {"products": ["T4"]}}}


def _t4_nodes(cluster: handle.Cluster) -> list[str]:
    return [n.name for n in cluster.nodes.of_product(T4)]


def _deployments(cluster: handle.Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in cluster.get("deployments", namespace=namespace)}


def _ready_pods(cluster: handle.Cluster, namespace: str) -> int:
    count = 0
    for pod in cluster.get("pods", namespace=namespace):
        if (pod["metadata"].get("labels") or {}).get(naming.COMPONENT_LABEL) != naming.SERVER:
            continue
        conditions = pod.get("status", {}).get("conditions") or []
        if pod["metadata"].get("deletionTimestamp") is None and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conditions
        ):
            count += 1
    return count


class ReadyWatch:
    """Polls a namespace's ready server pods in a thread: the least seen while it ran."""

    def __init__(self, cluster: handle.Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.least: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready = _ready_pods(self.cluster, self.namespace)
            self.least = ready if self.least is None else min(self.least, ready)
            time.sleep(0.2)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _serving_on_t4(cluster: handle.Cluster, namespace: str, name: str) -> str:
    """A model preferring T4 (cpu as fallback), converted and Ready there; its pool's name."""
    cluster.apply(op.model(name, **PREFER_T4), namespace=namespace)
    _release_target(cluster, namespace, name, "nvidia")
    op.wait_phase(cluster, namespace, name, "Ready", timeout=60)
    pool = naming.pool_name(name, DeviceClass.NVIDIA, "T4")
    assert set(_deployments(cluster, namespace)) == {pool}
    return pool


def _phase_and_devices(cluster: handle.Cluster, namespace: str, name: str) -> tuple[Any, Any]:
    status = op.get_model(cluster, namespace, name).get("status") or {}
    return status.get("phase"), status.get("devices")


def test_cordon_keeps_the_pool_and_prepares_the_fallback_beside_it(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    pool = _serving_on_t4(cluster, namespace, "cordoned")
    uid = _deployments(cluster, namespace)[pool]["metadata"]["uid"]
    nodes = _t4_nodes(cluster)
    with ReadyWatch(cluster, namespace) as watch:
        try:
            for node in nodes:
                cluster.kubectl("cordon", node)
            body = op.wait_phase(cluster, namespace, "cordoned", "Degraded", timeout=30)
            ready = {c["type"]: c for c in body["status"]["conditions"]}["Ready"]
            assert ready["status"] == "True" and "cordoned or NotReady" in ready["message"]
            phases = {t["deviceClass"]: t["phase"] for t in body["status"]["targets"]}
            assert phases == {"nvidia": "Retained", "cpu": "Converting"}
            _release_target(cluster, namespace, "cordoned", "cpu")
            cpu = naming.pool_name("cordoned", DeviceClass.CPU, None)
            handle.wait_until(
                lambda: _deployments(cluster, namespace).get(cpu, {}).get("status", {})
                .get("readyReplicas"),
                timeout=60,
                what="the cpu fallback to serve",
            )  # fmt: skip
            time.sleep(2)  # a reconcile or two after the fallback is ready: T4 stays
            kept = _deployments(cluster, namespace)
            assert kept[pool]["metadata"]["uid"] == uid
            assert kept[pool]["status"].get("readyReplicas") == 1
        finally:
            for node in nodes:
                cluster.kubectl("uncordon", node)
        handle.wait_until(
            lambda: set(_deployments(cluster, namespace)) == {pool},
            timeout=60,
            what="the cpu fallback to go once T4 serves again",
        )
        assert _deployments(cluster, namespace)[pool]["metadata"]["uid"] == uid
        op.wait_phase(cluster, namespace, "cordoned", "Ready", timeout=30)
    assert watch.least is not None and watch.least >= 1, "a moment with no ready server pod"


def _set_ready(cluster: handle.Cluster, node: str, status: str) -> str:
    """Patch the node's Ready condition; returns it as the API server stored it (kwok's node
    controller sets it back within moments: a flap)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": "Ready", "status": status, "reason": "KubeletNotReady" if status != "True" else
        "KubeletReady", "message": "test flap", "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }  # fmt: skip
    patch = json.dumps({"status": {"conditions": [condition]}})
    answer = cluster.kubectl(
        "patch", "node", node, "--subresource=status", "--type=strategic", "-p", patch,
        "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    )  # fmt: skip
    return answer.stdout.strip()


def test_a_not_ready_flap_moves_nothing(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    pool = _serving_on_t4(cluster, namespace, "flap")
    uid = _deployments(cluster, namespace)[pool]["metadata"]["uid"]
    jobs = {j["metadata"]["name"] for j in cluster.get("jobs", namespace=namespace)}
    (node,) = _t4_nodes(cluster)[:1]
    try:
        for _ in range(20):  # kwok sets Ready again at once: flap it for 5 s
            assert _set_ready(cluster, node, "Unknown") == "Unknown"
            time.sleep(0.25)
        # the pods may be marked not ready with their node: the pools stay as they are
        assert _phase_and_devices(cluster, namespace, "flap")[1] == "nvidia/T4"
        assert {j["metadata"]["name"] for j in cluster.get("jobs", namespace=namespace)} == jobs
        assert set(_deployments(cluster, namespace)) == {pool}
    finally:
        _set_ready(cluster, node, "True")
    op.wait_phase(cluster, namespace, "flap", "Ready", timeout=60)
    assert set(_deployments(cluster, namespace)) == {pool}
    assert _deployments(cluster, namespace)[pool]["metadata"]["uid"] == uid
    assert _phase_and_devices(cluster, namespace, "flap") == ("Ready", "nvidia/T4")


CLASS_GONE_GRACE_S = 20.0
"""The class-gone grace of the node-deletion test: short, yet long enough for a node to be
re-created within it on a loaded machine."""


def _t4_target(cluster: handle.Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    status = op.get_model(cluster, namespace, name).get("status") or {}
    return next((t for t in status.get("targets", []) if t.get("product") == "T4"), None)


def test_a_deleted_class_keeps_its_pool_for_the_grace_and_until_the_replacement_serves(
    cluster: handle.Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    grace = str(CLASS_GONE_GRACE_S)
    operator = op.Operator(
        cluster, store=f"file://{tmp_path / 'store'}", log=tmp_path / "operator.log",
        INFERPLANE_CLASS_GONE_GRACE_S=grace,
    )  # fmt: skip
    operator.start()
    removed = [n for n in cluster.nodes.nodes if n.product.name == "T4"]
    try:
        pool = _serving_on_t4(cluster, namespace, "moved")
        uid = _deployments(cluster, namespace)[pool]["metadata"]["uid"]
        # deleted and back within the grace (a node replaced): the pool is never touched
        for node in removed:
            cluster.kubectl("delete", "node", node.name, "--wait=true")
        t4 = handle.wait_until(
            lambda: (lambda t: t if t and t.get("phase") == "Retained" else None)(
                _t4_target(cluster, namespace, "moved")
            ),
            timeout=30,
            what="the T4 pool to be retained",
        )  # fmt: skip
        assert t4["classGoneSince"] and "no node left since" in t4["reason"], t4
        assert "kept until" in t4["reason"]
        for node in removed:
            cluster.apply(node.manifest())
        op.wait_phase(cluster, namespace, "moved", "Ready", timeout=60)
        assert _phase_and_devices(cluster, namespace, "moved") == ("Ready", "nvidia/T4")
        assert _deployments(cluster, namespace)[pool]["metadata"]["uid"] == uid
        assert (_t4_target(cluster, namespace, "moved") or {}).get("classGoneSince") is None

        # deleted for good: the cpu fallback serves, the T4 pool stays the grace, then goes
        deleted = time.monotonic()
        for node in removed:
            cluster.kubectl("delete", "node", node.name, "--wait=true")
        _release_target(cluster, namespace, "moved", "cpu")
        cpu = naming.pool_name("moved", DeviceClass.CPU, None)

        def swapped() -> bool:
            deployments = _deployments(cluster, namespace)
            if pool in deployments:
                return False
            waited = time.monotonic() - deleted
            assert waited >= CLASS_GONE_GRACE_S, f"the T4 pool went after {waited:.1f} s"
            ready = deployments.get(cpu, {}).get("status", {}).get("readyReplicas")
            assert ready, f"the T4 pool went before its replacement served: {deployments}"
            return True

        handle.wait_until(swapped, timeout=CLASS_GONE_GRACE_S + 90, what="the T4 pool to go")
        op.wait_phase(cluster, namespace, "moved", "Ready", timeout=30)
        assert _phase_and_devices(cluster, namespace, "moved") == ("Ready", "cpu")
    finally:
        for node in removed:
            cluster.apply(node.manifest())
        operator.stop()


@contextlib.contextmanager
def _extra_node(cluster: handle.Cluster, product: str) -> Iterator[str]:
    """A new kwok node of an NVIDIA product the cluster did not have."""
    labels = {**T4.labels, "nvidia.com/gpu.product": product}
    new = dataclasses.replace(T4, name=product, prefix=product.lower(), labels=labels)
    node = Node(name=f"kwok-{product.lower()}-0", product=new, index=900)
    cluster.apply(node.manifest())
    try:
        yield node.name
    finally:
        cluster.kubectl("delete", "node", node.name, "--ignore-not-found", "--wait=true")


def test_a_new_gpu_product_is_added_beside_the_pools_that_serve(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(op.model("grows", devices=["nvidia"]), namespace=namespace)
    _release_all(cluster, namespace, 2)
    op.wait_phase(cluster, namespace, "grows", "Ready", timeout=60)
    before = {n: d["metadata"]["uid"] for n, d in _deployments(cluster, namespace).items()}
    assert len(before) == 2
    with ReadyWatch(cluster, namespace) as watch, _extra_node(cluster, "L4"):
        body = handle.wait_until(
            lambda: (lambda b: b if "L4" in json.dumps(b.get("status", {}).get("targets", []))
                     else None)(op.get_model(cluster, namespace, "grows")),
            timeout=30,
            what="the L4 target to be planned",
        )  # fmt: skip
        assert {t["product"]: t["phase"] for t in body["status"]["targets"]}["L4"] == "Converting"
        now = {n: d["metadata"]["uid"] for n, d in _deployments(cluster, namespace).items()}
        assert now == before  # the serving pools are untouched
        job = next(t["job"] for t in body["status"]["targets"] if t["product"] == "L4")
        (pod,) = handle.wait_until(
            lambda: [
                p for p in op.held_pods(cluster, namespace)
                if p["metadata"]["labels"].get("job-name") == job
            ],
            timeout=60,
            what="the L4 conversion pod",
        )  # fmt: skip
        op.release_with_result(cluster, namespace, pod)
        handle.wait_until(
            lambda: (
                _phase_and_devices(cluster, namespace, "grows")[1]
                == "nvidia/A100-SXM4-40GB,nvidia/L4,nvidia/T4"
            ),
            timeout=60,
            what="three pools",
        )
        op.wait_phase(cluster, namespace, "grows", "Ready", timeout=60)
    assert watch.least is not None and watch.least >= 2


ADVERSARIAL = ["lenet", "lenet-cpu", "lenet-cpu-cpu", "n" * 253]


def _squatter(name: str) -> dict[str, Any]:
    """A Service someone else made, under a name the operator would use."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "someone-else"}, "ports": [{"port": 80}]},
    }


def test_models_named_to_collide_get_their_own_children(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(_squatter("taken"), namespace=namespace)
    for name in [*ADVERSARIAL, "taken"]:
        cluster.apply(op.model(name, devices=["cpu"]), namespace=namespace)
    _release_once(cluster, namespace)  # one conversion: same source and target for all
    for name in ADVERSARIAL:
        op.wait_phase(cluster, namespace, name, "Ready", timeout=60)
    body = op.wait_phase(cluster, namespace, "taken", "Failed", timeout=30)
    ready = {c["type"]: c for c in body["status"]["conditions"]}["Ready"]
    assert ready["reason"] == "NameConflict" and "Service taken" in ready["message"]
    service = cluster.get("service", "taken", namespace=namespace)
    assert service["spec"]["selector"] == {"app": "someone-else"}
    assert not service["metadata"].get("ownerReferences")
    deployments = _deployments(cluster, namespace)
    assert len(deployments) == len(ADVERSARIAL) + 1
    for name in ADVERSARIAL:
        model = op.get_model(cluster, namespace, name)
        uid = model["metadata"]["uid"]
        own = [d for d in deployments.values() if d["metadata"]["ownerReferences"][0]["uid"] == uid]
        assert len(own) == 1
        assert own[0]["spec"]["selector"]["matchLabels"][naming.MODEL_UID_LABEL] == uid
        svc = cluster.get("service", naming.model_service_name(name), namespace=namespace)
        assert svc["spec"]["selector"][naming.MODEL_UID_LABEL] == uid
        assert model["status"]["readyReplicas"] == 1


def test_a_create_only_apply_creates_like_an_apply_and_never_touches_what_exists(
    cluster: handle.Cluster, namespace: str
) -> None:
    """The operator creates an object its cache does not know with a create-only apply, reading
    it only when that fails. On the real API server: an absent object is created with its fields
    owned by an Apply of the operator's manager, as by a plain apply (so a field dropped later
    goes back to its default: what the replica hand-off is built on); an existing one, ours or
    anyone's, fails with 409 and is left as it was."""
    labels = {"app": "created"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "created", "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "server", "image": "example.invalid/x"}]},
            },
        },
    }
    cluster.apply(_squatter("squatted"), namespace=namespace)
    claimed = {**_squatter("squatted"), "metadata": {"name": "squatted", "namespace": namespace}}
    claimed["spec"] = {"selector": labels, "ports": [{"port": 80}]}
    manager = naming.FIELD_MANAGER

    async def run() -> list[int | None]:
        statuses: list[int | None] = []
        async with kube.Kube(kube.load_config(str(cluster.kubeconfig))) as client:
            created = await client.apply(deployment, manager=manager, create_only=True)
            fields = created["metadata"]["managedFields"]
            assert [(f["manager"], f["operation"]) for f in fields] == [(manager, "Apply")]
            again = {**deployment, "spec": {**deployment["spec"], "replicas": 5}}
            for manifest in (again, claimed):
                try:
                    await client.apply(manifest, manager=manager, create_only=True)
                except errors.KubeError as exc:
                    statuses.append(exc.status)
            dropped = {**deployment, "spec": dict(deployment["spec"])}
            del dropped["spec"]["replicas"]
            await client.apply(dropped, manager=manager)
        return statuses

    assert asyncio.run(run()) == [409, 409]
    squatted = cluster.get("service", "squatted", namespace=namespace)
    assert squatted["spec"]["selector"] == {"app": "someone-else"}
    # 3 kept through the failed create-only apply; then dropped by its only manager: the default
    assert cluster.get("deployment", "created", namespace=namespace)["spec"]["replicas"] == 1


def _watch_replicas(cluster: handle.Cluster, namespace: str, name: str) -> subprocess.Popen[str]:
    """``kubectl get -w``: every version of the Deployment's spec.replicas, one per line."""
    kubectl = cluster.bin("kubectl")
    return subprocess.Popen(
        [str(kubectl), "get", "deployment", name, "-n", namespace, "-w",
         "-o", "jsonpath={.spec.replicas}{\"\\n\"}"],
        env=cluster.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _replicas_seen(watch: subprocess.Popen[str]) -> list[int]:
    watch.terminate()
    out, _ = watch.communicate(timeout=10)
    return [int(line) for line in out.split() if line.strip()]


def test_autoscaling_switch_never_drops_replicas(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(
        op.model("scaled", devices=["cpu"], replicas={"min": 3, "max": 3}), namespace=namespace
    )
    _release_once(cluster, namespace)
    op.wait_phase(cluster, namespace, "scaled", "Ready", timeout=60)
    pool = naming.pool_name("scaled", DeviceClass.CPU, None)
    watch = _watch_replicas(cluster, namespace, pool)
    try:
        time.sleep(1)
        patch = json.dumps({"spec": {"replicas": {"min": 3, "max": 10}}})
        cluster.kubectl("patch", "im", "scaled", "-n", namespace, "--type=merge", "-p", patch)
        handle.wait_until(
            lambda: (
                cluster.kubectl("get", "hpa", pool, "-n", namespace, check=False).returncode == 0
            ),
            timeout=30,
            what="the HPA",
        )
        time.sleep(3)
        shown = cluster.kubectl(
            "get", "deployment", pool, "-n", namespace, "-o", "json", "--show-managed-fields"
        )
        deployment = json.loads(shown.stdout)
        managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
        assert naming.HANDOVER_MANAGER in managers
        assert deployment["spec"]["replicas"] == 3
    finally:
        seen = _replicas_seen(watch)
    assert seen and min(seen) >= 3, f"spec.replicas during the switch on: {seen}"
    watch = _watch_replicas(cluster, namespace, pool)
    try:
        time.sleep(1)
        patch = json.dumps({"spec": {"replicas": {"min": 4, "max": 4}}})
        cluster.kubectl("patch", "im", "scaled", "-n", namespace, "--type=merge", "-p", patch)
        handle.wait_until(
            lambda: (
                cluster.kubectl("get", "hpa", pool, "-n", namespace, check=False).returncode != 0
            ),
            timeout=30,
            what="the HPA to go",
        )
        op.wait_phase(cluster, namespace, "scaled", "Ready", timeout=60)
        time.sleep(2)
    finally:
        seen = _replicas_seen(watch)
    assert seen and min(seen) >= 3 and seen[-1] == 4, f"spec.replicas during the switch off: {seen}"


def test_a_failed_conversion_stays_failed_when_its_job_is_deleted(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(op.model("doomed", devices=["cpu"]), namespace=namespace)
    message = "inferplane: error: network:lenet5: no module named 'network'"

    def fail_attempts() -> str | None:
        for pod in op.held_pods(cluster, namespace):
            cluster.hold_release(namespace, pod["metadata"]["name"], "failed", message)
        return "done" if op.phase(cluster, namespace, "doomed") == "Failed" else None

    handle.wait_until(fail_attempts, timeout=90, interval=1, what="the conversion to fail")
    body = op.get_model(cluster, namespace, "doomed")
    (record,) = body["status"]["failedConversions"]
    (job,) = cluster.get("jobs", namespace=namespace)
    assert record["job"] == job["metadata"]["name"] and message in record["message"]
    cluster.kubectl("delete", "job", record["job"], "-n", namespace, "--wait=true")
    time.sleep(5)  # the deletion woke the model: it must not convert again
    assert cluster.get("jobs", namespace=namespace) == []
    assert op.phase(cluster, namespace, "doomed") == "Failed"
    cluster.kubectl("annotate", "im", "doomed", "-n", namespace, "inferplane.io/retry=1")
    (retry,) = handle.wait_until(
        lambda: cluster.get("jobs", namespace=namespace), timeout=30, what="the retry's Job"
    )
    assert retry["metadata"]["name"] != record["job"]
    _release_once(cluster, namespace)
    body = op.wait_phase(cluster, namespace, "doomed", "Ready", timeout=60)
    assert not body["status"].get("failedConversions")


def test_rapid_spec_edits_leave_one_job(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(op.model("edited", devices=["cpu"]), namespace=namespace)
    handle.wait_until(
        lambda: cluster.get("jobs", namespace=namespace), timeout=30, what="the first Job"
    )
    for samples in (9, 10, 11, 12):
        patch = json.dumps({"spec": {"verification": {"samples": samples}}})
        cluster.kubectl("patch", "im", "edited", "-n", namespace, "--type=merge", "-p", patch)
        time.sleep(0.3)

    def one_job() -> str | None:
        body = op.get_model(cluster, namespace, "edited")
        if (body.get("status") or {}).get("observedGeneration") != body["metadata"]["generation"]:
            return None
        names = [j["metadata"]["name"] for j in cluster.get("jobs", namespace=namespace)]
        (target,) = body["status"]["targets"]
        return names[0] if names == [target["job"]] else None

    job = handle.wait_until(one_job, timeout=60, what="the superseded Jobs to be deleted")
    assert "--samples" in json.dumps(cluster.get("job", job, namespace=namespace))
    command = cluster.get("job", job, namespace=namespace)["spec"]["template"]["spec"]
    args = command["containers"][0]["command"]
    assert args[args.index("--samples") + 1] == "12"


def test_a_single_pool_fixed_model_costs_at_most_six_writes(
    cluster: handle.Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    """A model whose artifact is in the store, one pool, a fixed replica count: its objects are
    a Deployment and its Service (no pool Service, HPA or PDB), and every API write the operator
    makes for it — objects, status patches, Events — is counted by its client."""
    spec = {**operator_scale._spec(0), "devices": ["cpu"]}
    store = tmp_path / "store"
    inventory = Inventory.from_nodes(cluster.get("nodes"))
    assert operator_scale._prefill(store, [spec], inventory, namespace) == 1
    process = op.Operator(  # watching this namespace only: the count is this model's alone
        cluster, store=f"file://{store}", log=tmp_path / "operator.log",
        INFERPLANE_NAMESPACES=json.dumps([namespace]),
    )  # fmt: skip
    process.start()
    try:
        cluster.apply({**op.model("cheap"), "spec": spec}, namespace=namespace)
        op.wait_phase(cluster, namespace, "cheap", "Ready", timeout=60)
        time.sleep(3)  # the reconciles the last status changes wake
    finally:
        process.stop()
    shapes = operator_scale.objects_per_shape(cluster, namespace)
    assert shapes == ["cpu (1 models): Deployment 1, Service 1 (2 in all)"]
    found = re.findall(r"API writes: (\d+)", (tmp_path / "operator.log").read_text())
    assert found and int(found[-1]) <= 6, found
