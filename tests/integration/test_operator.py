# SPDX-License-Identifier: Apache-2.0
"""The operator on the real test cluster: the CRD's validation, placement by the real scheduler,
fallback and re-planning on node changes, restart convergence, failed conversions, deletion.

Conversion pods are held (``kwok.inferplane.io/hold``) and released by the test with what their
publish step writes (an artifact in the store under the assigned key); the end-to-end test runs
the real converter and server instead.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tests.api import bad_manifests
from tests.cluster import handle
from tests.e2e import operator_process as op

from inferplane.control import cache, handlers, kube, naming
from inferplane.control.inventory import Inventory
from inferplane.control.settings import OperatorSettings
from inferplane.devices import DeviceClass

RESOURCE_OF = {
    "nvidia": "nvidia.com/gpu",
    "ascend910": "huawei.com/Ascend910",
    "ascend310": "huawei.com/Ascend310P",
}
PRODUCT_LABEL = {
    "nvidia": "nvidia.com/gpu.product",
    "ascend310": "node.kubernetes.io/npu.chip.name",
}


@pytest.fixture
def restricted(cluster: handle.Cluster, namespace: str) -> str:
    """The test namespace, enforcing the restricted Pod Security Standard."""
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    return namespace


def test_bad_manifests_are_rejected_by_the_api_server(
    cluster: handle.Cluster, crd: None, namespace: str
) -> None:
    good = op.model("good", **bad_manifests.base_spec())
    cluster.apply(good, namespace=namespace)
    failures = []
    for case in bad_manifests.load(namespace=namespace):
        result = cluster.kubectl("apply", "-f", "-", input=json.dumps(case.manifest), check=False)
        text = result.stderr
        if result.returncode == 0 or case.field not in text or case.message not in text:
            failures.append(f"{case.name}: rc={result.returncode} {text.strip()}")
    assert not failures, "\n".join(failures)


def _server_pods(cluster: handle.Cluster, namespace: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", namespace=namespace)
    return [
        p for p in pods
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "server"
        and p["spec"].get("nodeName")
    ]  # fmt: skip


def _release_all(cluster: handle.Cluster, namespace: str, count: int) -> list[str]:
    pods = handle.wait_until(
        lambda: (lambda held: held if len(held) >= count else None)(
            op.held_pods(cluster, namespace)
        ),
        timeout=60,
        what=f"{count} held conversion pods",
    )
    return [op.release_with_result(cluster, namespace, pod) for pod in pods]


def test_auto_model_gets_a_pool_per_class_and_product(
    cluster: handle.Cluster, operator: op.Operator, restricted: str
) -> None:
    namespace = restricted
    cluster.apply(op.model("lenet"), namespace=namespace)
    body = op.wait_phase(cluster, namespace, "lenet", "Converting")
    targets = {(t["deviceClass"], t.get("product")) for t in body["status"]["targets"]}
    assert targets == {
        ("ascend910", None), ("ascend310", "Ascend310P3"), ("nvidia", "A100-SXM4-40GB"),
        ("nvidia", "T4"), ("cpu", None),
    }  # fmt: skip
    jobs = cluster.get("jobs", namespace=namespace)
    assert len(jobs) == 5
    _release_all(cluster, namespace, 5)
    body = op.wait_phase(cluster, namespace, "lenet", "Ready", timeout=90)
    assert body["status"]["readyReplicas"] == 5
    pods = _server_pods(cluster, namespace)
    assert len(pods) == 5
    for pod in pods:
        labels = pod["metadata"]["labels"]
        device_class = labels["inferplane.io/device-class"]
        node = op.node_of(cluster, pod)
        resources = pod["spec"]["containers"][0]["resources"]
        limits = resources.get("limits", {})
        resource = RESOURCE_OF.get(device_class)
        if resource is None:
            assert not any(k.startswith(("nvidia.com", "huawei.com")) for k in limits)
            assert not set(node["metadata"]["labels"]) & {"nvidia.com/gpu.present", "accelerator"}
        else:
            assert limits[resource] == resources["requests"][resource] == "1"
            others = [k for k in limits if k.startswith(("nvidia.com", "huawei.com"))]
            assert others == [resource]
            assert node["status"]["allocatable"].get(resource), (pod["metadata"]["name"], node)
        if device_class in PRODUCT_LABEL:
            wanted = labels["inferplane.io/product"].removeprefix("Ascend")
            assert node["metadata"]["labels"][PRODUCT_LABEL[device_class]] == wanted
    services = {s["metadata"]["name"] for s in cluster.get("services", namespace=namespace)}
    assert "lenet" in services and len(services) == 6
    assert body["status"]["url"] == f"http://lenet.{namespace}.svc.cluster.local"
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]} == {
        "Converted": "True", "Verified": "True", "Ready": "True",
    }  # fmt: skip
    events = cluster.get("events", namespace=namespace)
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == "lenet"}
    # PoolReady only for a pool ready before the model: the Ready event names the others
    assert {"Converting", "Converted", "Ready"} <= reasons


def test_fallback_then_replan_when_the_class_comes_back(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    ascend = [n.name for n in cluster.nodes.of_class("ascend910")]
    for node in ascend:
        cluster.kubectl("cordon", node)
    try:
        cluster.apply(op.model("pref", devices=["ascend910", "cpu"]), namespace=namespace)
        _release_target(cluster, namespace, "pref", "cpu")
        body = op.wait_phase(cluster, namespace, "pref", "Ready", timeout=60)
        (target,) = body["status"]["targets"]
        assert target["deviceClass"] == "cpu"
        assert target["reason"].startswith("fallback to cpu: ascend910 has no capacity")
        assert body["status"]["devices"] == "cpu"
    finally:
        for node in ascend:
            cluster.kubectl("uncordon", node)
    _release_target(cluster, namespace, "pref", "ascend910")
    handle.wait_until(
        lambda: (lambda b: b if (b.get("status") or {}).get("devices") == "ascend910"
                 and b["status"].get("phase") == "Ready" else None)(
            op.get_model(cluster, namespace, "pref")
        ),
        timeout=60,
        what="pref to move to ascend910",
    )  # fmt: skip
    handle.wait_until(
        lambda: (
            {d["metadata"]["name"] for d in cluster.get("deployments", namespace=namespace)}
            == {naming.pool_name("pref", DeviceClass.ASCEND910, None)}
        ),
        timeout=30,
        what="the cpu pool to go",
    )


def _release_target(cluster: handle.Cluster, namespace: str, model: str, device_class: str) -> str:
    """Once the model plans a conversion for ``device_class``, release that Job's held pod."""

    def job() -> str | None:
        status = op.get_model(cluster, namespace, model).get("status") or {}
        jobs = [t["job"] for t in status.get("targets", []) if t["deviceClass"] == device_class]
        return jobs[0] if jobs else None

    name = handle.wait_until(job, timeout=60, what=f"{model} to plan {device_class}")

    def held() -> list[dict[str, Any]]:
        return [
            p for p in op.held_pods(cluster, namespace)
            if p["metadata"]["labels"].get("job-name") == name
        ]  # fmt: skip

    (pod,) = handle.wait_until(held, timeout=60, what=f"the held pod of {name}")
    return op.release_with_result(cluster, namespace, pod)


def _release_once(cluster: handle.Cluster, namespace: str) -> list[str]:
    return _release_all(cluster, namespace, 1)


def test_restart_mid_conversion_converges_without_duplicates(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(op.model("twice", devices=["nvidia"]), namespace=namespace)
    handle.wait_until(
        lambda: len(op.held_pods(cluster, namespace)) == 2, timeout=60, what="two held pods"
    )
    operator.stop()
    operator.start()
    handle.wait_until(
        lambda: op.phase(cluster, namespace, "twice") == "Converting", timeout=30, what="resume"
    )
    assert len(cluster.get("jobs", namespace=namespace)) == 2
    _release_all(cluster, namespace, 2)
    # Restart as soon as the rollout has begun (the pools' Deployments exist); simulated pods
    # may turn Ready within a second, so waiting for the transient Deploying phase would race.
    handle.wait_until(
        lambda: len(cluster.get("deployments", namespace=namespace)) == 2,
        timeout=60,
        what="the rollout to begin",
    )
    operator.stop()
    operator.start()
    op.wait_phase(cluster, namespace, "twice", "Ready", timeout=60)
    assert len(cluster.get("jobs", namespace=namespace)) == 2
    assert len(cluster.get("deployments", namespace=namespace)) == 2
    assert len(cluster.get("replicasets", namespace=namespace)) == 2


def test_failed_conversion_surfaces_the_termination_message(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    cluster.apply(op.model("broken", devices=["cpu"]), namespace=namespace)
    message = "inferplane: error: network:lenet5: no module named 'network'"

    def fail_attempts() -> str | None:
        """Fail every held attempt (backoffLimit 1: two pods) until the model fails."""
        for pod in op.held_pods(cluster, namespace):
            cluster.hold_release(namespace, pod["metadata"]["name"], "failed", message)
        return "done" if op.phase(cluster, namespace, "broken") == "Failed" else None

    handle.wait_until(fail_attempts, timeout=90, interval=1, what="the conversion to fail")
    body = op.get_model(cluster, namespace, "broken")
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Converted"]["reason"] == "ConversionFailed"
    assert message in conditions["Converted"]["message"]
    assert conditions["Ready"]["status"] == "False"
    (target,) = body["status"]["targets"]
    assert target["phase"] == "Failed" and message in target["message"]
    jobs = cluster.get("jobs", namespace=namespace)
    assert len(jobs) == 1  # no hot retry loop


def _ready_on_cpu(cluster: handle.Cluster, namespace: str, name: str) -> None:
    """A CPU model with an HPA range, converted (its Job released once) and Ready."""
    cluster.apply(
        op.model(name, devices=["cpu"], replicas={"min": 1, "max": 3}), namespace=namespace
    )
    _release_once(cluster, namespace)
    op.wait_phase(cluster, namespace, name, "Ready", timeout=60)


def test_deletion_removes_everything_owned(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    _ready_on_cpu(cluster, namespace, "gone")
    kinds = "deployments,services,hpa,pdb,jobs"
    # Deployment, the model's Service (one pool: no pool Service), HPA, PDB, Job
    assert cluster.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout.count("\n") == 5
    assert not op.get_model(cluster, namespace, "gone")["metadata"].get("finalizers")
    operator.stop()  # no finalizer: the deletion needs no operator (docs/install.md, section 7)
    cluster.kubectl("delete", "inferencemodel", "gone", "-n", namespace, "--wait=true")
    handle.wait_until(
        lambda: cluster.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout.strip() == "",
        timeout=60,
        what="the garbage collector to remove every child",
    )


def test_two_replicas_with_peering_one_active(
    cluster: handle.Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    """kopf peering: of two operators the higher priority works, the other takes over."""
    peering = Path(__file__).resolve().parents[2] / "charts/inferplane/crds/kopf.dev_peerings.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(peering))
    cluster.wait_established("clusterkopfpeerings.kopf.dev")
    cluster.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                   "metadata": {"name": "inferplane"}})  # fmt: skip
    store = f"file://{tmp_path / 'store'}"
    replicas = [
        op.Operator(cluster, store=store, log=tmp_path / f"operator-{p}.log", standalone=False,
                    INFERPLANE_PRIORITY=str(p))
        for p in (200, 100)
    ]  # fmt: skip
    for replica in replicas:
        replica.start()
    try:
        cluster.apply(op.model("peered", devices=["cpu"]), namespace=namespace)
        op.wait_phase(cluster, namespace, "peered", "Converting", timeout=60)
        replicas[0].stop()  # the active one goes; the standby must take over
        _release_once(cluster, namespace)
        op.wait_phase(cluster, namespace, "peered", "Ready", timeout=90)
        assert len(cluster.get("jobs", namespace=namespace)) == 1
        # the standby did nothing until the active replica left
        standby = (tmp_path / "operator-100.log").read_text()
        active = (tmp_path / "operator-200.log").read_text()
        resumed = re.findall(r"^\[([^\]]+)\].*Resuming operations", standby, re.M)
        stopped = re.findall(r"^\[([^\]]+)\].*SIGTERM", active, re.M)
        assert resumed and stopped and resumed[0] >= stopped[-1], (resumed, stopped)
    finally:
        for replica in replicas:
            replica.stop()
        cluster.kubectl("delete", "clusterkopfpeering", "inferplane", "--ignore-not-found")


def _children(cluster: handle.Cluster, namespace: str) -> dict[str, str]:
    """kind/name → uid of the model's children (the Job aside)."""
    listed = cluster.get("deployments,services,hpa,pdb", namespace=namespace)
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["uid"] for o in listed}


def test_a_child_deleted_by_hand_is_recreated(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    """The deletion event of any child wakes its model (the cache then lacks the child)."""
    _ready_on_cpu(cluster, namespace, "mended")
    before = _children(cluster, namespace)
    assert len(before) == 4  # Deployment, the model's Service, HPA, PDB
    gone = [name for name in before if not name.startswith("Deployment/")]
    cluster.kubectl("delete", *[n.lower() for n in gone], "-n", namespace, "--wait=true")
    after = handle.wait_until(
        lambda: (lambda now: now if now.keys() == before.keys() else None)(
            _children(cluster, namespace)
        ),
        timeout=30,
        what="the deleted children to come back",
    )
    assert all(after[name] != before[name] for name in gone)  # new objects, not the old ones
    assert op.phase(cluster, namespace, "mended") == "Ready"


def test_a_stale_cache_entry_does_not_lose_an_object(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    """A cache that still holds a deleted child (as if its deletion event were lost): the
    reconcile from the cache skips it, the resync's reconcile (``verify``) applies it again."""
    cluster.apply(op.model("stale", devices=["cpu"]), namespace=namespace)
    _release_once(cluster, namespace)
    body = op.wait_phase(cluster, namespace, "stale", "Ready", timeout=60)
    operator.stop()
    indexes: dict[str, dict[Any, list[Any]]] = {}
    for api_version, kind in handlers.CHILD_KINDS:
        index = indexes.setdefault(kind, {})
        for item in cluster.get(kube.PLURALS[kind], namespace=namespace):
            for key, entry in cache.by_owner(item, api_version, kind).items():
                index.setdefault(key, []).append(entry)
    cluster.kubectl("delete", "service", "stale", "-n", namespace, "--wait=true")

    async def reconcile_twice() -> tuple[int, int]:
        async with kube.Kube(kube.load_config(str(cluster.kubeconfig))) as client:
            settings = OperatorSettings(store=operator.store, conversion_labels=op.HOLD)
            rt = handlers.Runtime(settings, client, cache=cache.Cache(indexes))
            rt.inventory = Inventory.from_nodes(cluster.get("nodes"), settings.devices)
            rt.remember(body)
            await handlers.reconcile(rt, namespace, "stale")
            trusted = client.writes
            await handlers.reconcile(rt, namespace, "stale", verify=True)
            return trusted, client.writes - trusted

    trusted, verified = asyncio.run(reconcile_twice())
    assert trusted == 0  # the cache claims the Service: nothing to do
    assert verified == 1  # the Service, and nothing else, applied again
    assert cluster.get("service", "stale", namespace=namespace)["spec"]["ports"]
