# SPDX-License-Identifier: Apache-2.0
"""Devices offered through Dynamic Resource Allocation, on the real test cluster: kwok nodes (A100,
T4, Ascend 910B) without extended resources or GPU feature discovery labels, the drivers'
DeviceClasses, and ResourceSlices with the drivers' attributes (the test plays the drivers'
part). The real scheduler allocates the claims of the operator's ResourceClaimTemplates; kwok
runs the pods.

The session cluster's device-plugin GPU and Ascend 910 nodes are cordoned for the pure-DRA test;
its GPU nodes serve beside the DRA nodes in the mixed one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cluster import control_plane, handle
from tests.cluster import profile as profile_mod
from tests.e2e import operator_process as op

from inferplane import products

DRA_NODES = tuple(
    profile_mod.Node(f"kwok-{p.prefix}-0", p, index=200 + i)
    for i, p in enumerate((*profile_mod.NVIDIA_DRA_PRODUCTS, profile_mod.ASCEND910_DRA))
)
"""One A100 and one T4 node offering their GPUs through DRA (``gpu.nvidia.com``), one Ascend
910B node offering its NPUs through DRA (``npu.huawei.com``)."""
PRODUCT_ATTRIBUTE = {"gpu.nvidia.com": "productName", "npu.huawei.com": "deviceType"}


@pytest.fixture(scope="module")
def dra_nodes(cluster: handle.Cluster) -> Iterator[dict[str, str]]:
    """The DRA nodes, their slices and the DeviceClasses; node name → canonical product."""
    op.install_crd(cluster)
    nodes = {"apiVersion": "v1", "kind": "List", "items": [n.manifest() for n in DRA_NODES]}
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(nodes))
    control_plane.publish_devices(cluster.state, DRA_NODES)  # what `up --nvidia-dra` does
    handle.wait_until(
        lambda: all(
            any(c["type"] == "Ready" and c["status"] == "True"
                for c in cluster.get("node", n.name)["status"].get("conditions", []))
            for n in DRA_NODES
        ),
        timeout=60, what="the DRA nodes to be Ready",
    )  # fmt: skip
    try:
        yield {n.name: products.canonical(n.product.name) for n in DRA_NODES}
    finally:
        for node in DRA_NODES:
            cluster.kubectl("delete", "resourceslice", f"{node.name}-{node.product.driver}",
                            "--ignore-not-found", "--wait=false")  # fmt: skip
            cluster.kubectl("delete", "node", node.name, "--ignore-not-found", "--wait=false")


@pytest.fixture
def operator(cluster: handle.Cluster, dra_nodes: dict[str, str], tmp_path: Path) -> Iterator[None]:
    process = op.Operator(
        cluster, store=f"file://{tmp_path / 'store'}", log=tmp_path / "operator.log"
    )
    process.start()
    try:
        yield
    finally:
        process.stop()


@pytest.fixture
def plugin_devices_cordoned(cluster: handle.Cluster) -> Iterator[None]:
    """The session's device-plugin GPU and Ascend 910 nodes take no new pods."""
    names = [n.name for c in ("nvidia", "ascend910") for n in cluster.nodes.of_class(c)]
    for name in names:
        cluster.kubectl("cordon", name)
    try:
        yield
    finally:
        for name in names:
            cluster.kubectl("uncordon", name)


def _release(cluster: handle.Cluster, namespace: str, count: int) -> None:
    held = handle.wait_until(
        lambda: (lambda pods: pods if len(pods) >= count else None)(
            op.held_pods(cluster, namespace)
        ),
        timeout=90,
        what=f"{count} held conversion pods",
    )
    for pod in held:
        op.release_with_result(cluster, namespace, pod)


def _server_pods(cluster: handle.Cluster, namespace: str) -> list[dict[str, Any]]:
    return [
        p for p in cluster.get("pods", namespace=namespace)
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "server"
    ]  # fmt: skip


def _allocation(cluster: handle.Cluster, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    """The device the scheduler allocated to a pod's claim."""
    (status,) = pod["status"]["resourceClaimStatuses"]
    claim = cluster.get("resourceclaim", status["resourceClaimName"], namespace=namespace)
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert (
        claim["metadata"]["labels"]["inferplane.io/pool"]
        == (pod["metadata"]["labels"]["inferplane.io/pool"])
    )
    return dict(result)


def _device_product(node: str, device: str) -> str:
    spec = next(n.resource_slice() for n in DRA_NODES if n.name == node)
    assert spec is not None
    (found,) = [d for d in spec["spec"]["devices"] if d["name"] == device]
    attribute = PRODUCT_ATTRIBUTE[spec["spec"]["driver"]]
    return products.canonical(found["attributes"][attribute]["string"])


def test_an_auto_model_claims_dra_devices_by_product(
    cluster: handle.Cluster,
    plugin_devices_cordoned: None,
    operator: None,
    dra_nodes: dict[str, str],
    namespace: str,
) -> None:
    """DRA A100, T4 and Ascend 910B nodes, a device-plugin Ascend 310P node and CPU nodes: one
    pool per class and product; each device pod's claim is allocated by the scheduler to a
    device of its product on a node of that product; no pod requests nvidia.com/gpu; cpu pods
    stay off the DRA nodes; the status names each pod's device."""
    cluster.apply(op.model("lenet"), namespace=namespace)
    body = op.wait_phase(cluster, namespace, "lenet", "Converting", timeout=90)
    targets = {
        (t["deviceClass"], t.get("product"), t.get("deviceRequest"))
        for t in body["status"]["targets"]
    }
    assert targets == {
        ("ascend910", None, "DRA"), ("ascend310", "Ascend310P3", "DevicePlugin"),
        ("nvidia", "A100-SXM4-40GB", "DRA"), ("nvidia", "T4", "DRA"), ("cpu", None, None),
    }  # fmt: skip
    _release(cluster, namespace, 5)
    body = op.wait_phase(cluster, namespace, "lenet", "Ready", timeout=120)
    pods = _server_pods(cluster, namespace)
    assert len(pods) == 5
    driver_of = {"nvidia": "gpu.nvidia.com", "ascend910": "npu.huawei.com"}
    claimed = 0
    for pod in pods:
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            assert "nvidia.com/gpu" not in (container.get("resources") or {}).get("limits", {})
        labels = pod["metadata"]["labels"]
        node = pod["spec"]["nodeName"]
        device_class = labels["inferplane.io/device-class"]
        if device_class in driver_of:
            claimed += 1
            result = _allocation(cluster, namespace, pod)
            assert result["driver"] == driver_of[device_class] and result["pool"] == node
            product = _device_product(node, result["device"])
            assert dra_nodes[node] == product
            if device_class == "nvidia":
                assert product == labels["inferplane.io/product"]
            else:
                assert product.startswith("Ascend910")
        else:
            assert node not in dra_nodes, f"{labels} landed on DRA node {node}"
            assert "resourceClaims" not in pod["spec"]
    assert claimed == 3
    for target in body["status"]["targets"]:
        if target.get("deviceRequest") == "DRA":
            (allocated,) = target["allocated"]
            assert allocated["driver"] == driver_of[target["deviceClass"]]
            if target["deviceClass"] == "nvidia":
                assert dra_nodes[allocated["node"]] == target["product"]
        else:
            assert not target.get("allocated")
    templates = cluster.get("resourceclaimtemplates", namespace=namespace)
    assert len(templates) == 3
    for template in templates:
        assert template["metadata"]["ownerReferences"][0]["kind"] == "InferenceModel"


def test_a_mixed_cluster_serves_one_product_from_both_kinds_of_node(
    cluster: handle.Cluster, operator: None, dra_nodes: dict[str, str], namespace: str
) -> None:
    """T4 through the device plugin and T4 through DRA: a pool of each kind (a pod asks for
    its device one way or the other), one TensorRT build, both serving. The spec spells the
    product as current GPU feature discovery does."""
    spec = {"devices": ["nvidia"], "deviceOptions": {"nvidia": {"products": ["Tesla-T4"]}}}
    cluster.apply(op.model("mixed", **spec), namespace=namespace)
    body = op.wait_phase(cluster, namespace, "mixed", "Converting", timeout=90)
    targets = [(t["product"], t["deviceRequest"]) for t in body["status"]["targets"]]
    assert targets == [("T4", "DRA"), ("T4", "DevicePlugin")]
    assert len({t["job"] for t in body["status"]["targets"]}) == 1
    _release(cluster, namespace, 1)
    body = op.wait_phase(cluster, namespace, "mixed", "Ready", timeout=120)
    assert len({t["key"] for t in body["status"]["targets"]}) == 1
    by_pool = {
        p["metadata"]["labels"]["inferplane.io/pool"].rsplit("-", 1)[0]: p  # without its hash
        for p in _server_pods(cluster, namespace)
    }
    plugin, dra = by_pool["mixed-nvidia-t4"], by_pool["mixed-nvidia-t4-dra"]
    assert plugin["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert plugin["spec"]["nodeName"] in {n.name for n in cluster.nodes.of_product(profile_mod.T4)}
    assert dra["spec"]["nodeName"] == "kwok-t4-dra-0"
    assert _allocation(cluster, namespace, dra)["pool"] == "kwok-t4-dra-0"
