# SPDX-License-Identifier: Apache-2.0
"""The node profile and the kwok stages, without a cluster."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml
from tests.cluster import components
from tests.cluster.profile import (
    A100,
    ASCEND310P,
    ASCEND910,
    CPU,
    MAX_NODES,
    T4,
    Product,
    Profile,
)


def test_counts_make_the_nodes_of_each_product() -> None:
    profile = Profile(cpu=3, nvidia=2, ascend910=1, ascend310=4)
    assert profile.total == 3 + 2 * 2 + 1 + 4
    per_product = Counter(n.product.prefix for n in profile.nodes)
    assert per_product == {"cpu": 3, "a100": 2, "t4": 2, "ascend910": 1, "ascend310p": 4}
    assert len({n.name for n in profile.nodes}) == profile.total
    assert {n.name for n in profile.of_class("nvidia")} == {
        n.name for n in profile.of_product(A100) + profile.of_product(T4)
    }


@pytest.mark.parametrize(
    ("counts", "problem"),
    [
        ({"cpu": -1}, "negative"),
        ({"cpu": MAX_NODES, "nvidia": 1}, "at most 1000"),
    ],
)
def test_impossible_profiles_are_refused(counts: dict[str, int], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Profile(**counts)


def test_largest_profile_is_allowed() -> None:
    assert Profile(cpu=400, nvidia=200, ascend910=100, ascend310=100).total == MAX_NODES


@pytest.mark.parametrize(
    ("product", "labels", "resource"),
    [
        (A100, {"nvidia.com/gpu.product": "A100-SXM4-40GB", "nvidia.com/gpu.memory": "40960"}, 8),
        (T4, {"nvidia.com/gpu.product": "T4", "nvidia.com/gpu.compute.major": "7"}, 4),
        (
            ASCEND910,
            {"accelerator": "huawei-Ascend910", "node.kubernetes.io/npu.chip.name": "910B"},
            8,
        ),
        (
            ASCEND310P,
            {"accelerator": "huawei-Ascend310P", "node.kubernetes.io/npu.chip.name": "310P3"},
            4,
        ),
    ],
    ids=lambda v: v.prefix if isinstance(v, Product) else "",
)
def test_accelerator_nodes_carry_device_plugin_labels_capacity_and_taint(
    product: Product, labels: dict[str, str], resource: int
) -> None:
    (node,) = Profile(cpu=0, nvidia=1, ascend910=1, ascend310=1).of_product(product)
    manifest = node.manifest()
    assert labels.items() <= manifest["metadata"]["labels"].items()
    assert manifest["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node.product.resource is not None
    assert manifest["status"]["capacity"][node.product.resource] == str(resource)
    assert manifest["status"]["allocatable"] == manifest["status"]["capacity"]
    assert manifest["spec"]["taints"] == [{"key": node.product.resource, "effect": "NoSchedule"}]


def test_cpu_nodes_are_untainted_and_offer_no_accelerator() -> None:
    (node,) = Profile(cpu=1, nvidia=0, ascend910=0, ascend310=0).of_product(CPU)
    manifest = node.manifest()
    assert manifest["spec"] == {}
    assert not any("/" in key for key in manifest["status"]["capacity"])


def test_profile_survives_json() -> None:
    profile = Profile(cpu=5, nvidia=0, ascend910=2, ascend310=1)
    assert Profile.from_json(profile.to_json()) == profile


def test_stages_cover_nodes_pods_jobs_and_holding() -> None:
    docs = [d for d in yaml.safe_load_all(components.STAGES.read_text()) if d]
    assert all(d["kind"] == "Stage" for d in docs)
    names = {d["metadata"]["name"] for d in docs}
    assert names == {
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
        "pod-hold-succeeded",
        "pod-hold-failed",
    }
    by_name = {d["metadata"]["name"]: d for d in docs}
    complete = by_name["pod-complete"]["spec"]["selector"]["matchExpressions"]
    assert {
        "key": '.metadata.labels["kwok.inferplane.io/hold"]',
        "operator": "NotIn",
        "values": ["true"],
    } in complete
    for result in ("succeeded", "failed"):
        selector = by_name[f"pod-hold-{result}"]["spec"]["selector"]
        assert selector["matchLabels"] == {"kwok.inferplane.io/hold": "true"}
        assert selector["matchAnnotations"] == {"kwok.inferplane.io/result": result}


def test_dra_nodes_offer_their_devices_only_through_resourceslices() -> None:
    profile = Profile(cpu=0, nvidia=0, ascend910=0, ascend310=0, nvidia_dra=1, ascend_dra=1)
    assert profile.total == 3 and profile.dra
    for node in profile.nodes:
        manifest = node.manifest()
        assert not [r for r in manifest["status"]["capacity"] if "/" in r]
        assert not [k for k in manifest["metadata"]["labels"] if k.startswith("nvidia.com/")]
        assert "taints" not in manifest["spec"]
    slices = {s["spec"]["nodeName"]: s["spec"] for s in profile.resource_slices()}
    a100 = slices["kwok-a100-dra-0"]
    assert a100["driver"] == "gpu.nvidia.com" and a100["pool"]["name"] == "kwok-a100-dra-0"
    assert [d["name"] for d in a100["devices"]] == [f"gpu-{i}" for i in range(8)]
    device = a100["devices"][0]
    assert device["attributes"]["productName"] == {"string": "NVIDIA A100-SXM4-40GB"}
    assert device["attributes"]["cudaComputeCapability"] == {"version": "8.0.0"}
    assert device["capacity"] == {"memory": {"value": "40Gi"}}
    assert len({d["attributes"]["uuid"]["string"] for d in a100["devices"]}) == 8
    npu = slices["kwok-ascend910-dra-0"]
    assert npu["driver"] == "npu.huawei.com"
    assert npu["devices"][3]["name"] == "npu-3"
    assert npu["devices"][3]["attributes"] == {
        "deviceType": {"string": "Ascend910B"}, "physicId": {"int": 3}
    }  # fmt: skip
    assert Profile.from_json(profile.to_json()) == profile
