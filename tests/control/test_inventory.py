# SPDX-License-Identifier: Apache-2.0
"""Nodes → device pools, on the nodes the test cluster simulates (tests/cluster/profile.py)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.cluster import profile as profile_mod
from tests.cluster.profile import Profile

from inferplane.control.inventory import DevicePool, Inventory, Taint, classify
from inferplane.devices import DeviceClass


def _node(
    name: str,
    *,
    allocatable: dict[str, Any],
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    ready: str | None = "True",
    unschedulable: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {"allocatable": allocatable}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": status,
    }


def test_the_simulated_cluster_gives_one_pool_per_class_and_product() -> None:
    profile = Profile(cpu=3, nvidia=2, ascend910=1, ascend310=2)
    inventory = Inventory.from_nodes(n.manifest() for n in profile.nodes)
    summary = [(p.device_class, p.product, p.allocatable, len(p.nodes)) for p in inventory.pools]
    assert summary == [
        (DeviceClass.ASCEND910, "Ascend910B", 8, 1),
        (DeviceClass.ASCEND310, "Ascend310P3", 8, 2),
        (DeviceClass.NVIDIA, "A100-SXM4-40GB", 16, 2),
        (DeviceClass.NVIDIA, "T4", 8, 2),
        (DeviceClass.CPU, None, 96_000, 3),
    ]
    assert inventory.classes() == [
        DeviceClass.ASCEND910,
        DeviceClass.ASCEND310,
        DeviceClass.NVIDIA,
        DeviceClass.CPU,
    ]
    assert inventory.products(DeviceClass.NVIDIA) == ["A100-SXM4-40GB", "T4"]
    t4 = inventory.pools[3]
    assert t4.resource == "nvidia.com/gpu"
    assert t4.selector == {"nvidia.com/gpu.product": "T4"}
    assert t4.taints == (Taint("nvidia.com/gpu", "NoSchedule"),)
    ascend310 = inventory.pools[1]
    assert (ascend310.resource, dict(ascend310.selector)) == (
        "huawei.com/Ascend310P",
        {"node.kubernetes.io/npu.chip.name": "310P3"},
    )


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        pytest.param(
            _node("v", allocatable={"huawei.com/Ascend910-4c": "2", "cpu": "8"}),
            (DeviceClass.ASCEND910, None, 2, "huawei.com/Ascend910-4c"),
            id="virtual-npu-slices",
        ),
        pytest.param(
            _node(
                "a",
                allocatable={"huawei.com/Ascend310": "4"},
                labels={"node.kubernetes.io/npu.chip.name": "Ascend310"},
            ),
            (DeviceClass.ASCEND310, "Ascend310", 4, "huawei.com/Ascend310"),
            id="ascend310-soc-named-in-full",
        ),
        pytest.param(
            _node("g", allocatable={"nvidia.com/gpu": "0", "cpu": "16"}),
            (DeviceClass.CPU, None, 16_000, None),
            id="gpu-node-with-no-gpu-left-is-cpu",
        ),
        pytest.param(
            _node("e", allocatable={"cpu": "1500m"}, labels={"node-role.kubernetes.io/edge": ""}),
            (DeviceClass.EDGE, None, 1500, None),
            id="kubeedge-node",
        ),
        pytest.param(
            _node("u", allocatable={"nvidia.com/gpu": 2}),
            (DeviceClass.NVIDIA, None, 2, "nvidia.com/gpu"),
            id="gpu-without-discovery-labels",
        ),
    ],
)
def test_classify(node: dict[str, Any], expected: tuple[Any, ...]) -> None:
    pool = classify(node)
    assert (pool.device_class, pool.product, pool.allocatable, pool.resource) == expected


@pytest.mark.parametrize(
    ("ready", "unschedulable", "counted"),
    [
        ("True", False, True),
        ("False", False, False),
        ("Unknown", False, False),
        (None, False, True),
        ("True", True, False),
    ],
)
def test_only_usable_nodes_count(ready: str | None, unschedulable: bool, counted: bool) -> None:
    node = _node("n", allocatable={"nvidia.com/gpu": "1"}, ready=ready, unschedulable=unschedulable)
    inventory = Inventory.from_nodes([node])
    assert bool(inventory.pools_of(DeviceClass.NVIDIA)) is counted


def test_taints_merge_and_tolerations() -> None:
    nodes = [
        _node(
            "a",
            allocatable={"nvidia.com/gpu": "1"},
            taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
        ),
        _node(
            "b",
            allocatable={"nvidia.com/gpu": "1"},
            taints=[
                {"key": "dedicated", "value": "ml", "effect": "NoExecute"},
                {"key": "soft", "effect": "PreferNoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
            ],
        ),
    ]
    (pool,) = Inventory.from_nodes(nodes).pools
    assert [t.toleration() for t in pool.taints] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
    ]


def test_from_pools_orders_and_filters_capacity() -> None:
    inventory = Inventory.from_pools(
        [
            DevicePool(DeviceClass.CPU, allocatable=4, nodes=("localhost",)),
            DevicePool(DeviceClass.NVIDIA, "RTX 4090", allocatable=1, nodes=("localhost",)),
            DevicePool(DeviceClass.ASCEND910, allocatable=0),
        ]
    )
    assert inventory.classes() == [DeviceClass.NVIDIA, DeviceClass.CPU]
    assert inventory.allocatable(DeviceClass.ASCEND910) == 0


# --- Dynamic Resource Allocation ------------------------------------------------------------------

DRA_PROFILE = Profile(cpu=1, nvidia=1, ascend910=0, ascend310=1, nvidia_dra=2, ascend_dra=1)


def _dra_inventory(profile: Profile = DRA_PROFILE) -> Inventory:
    return Inventory.from_nodes(
        (n.manifest() for n in profile.nodes), slices=profile.resource_slices()
    )


def test_resourceslices_give_pools_beside_the_device_plugins() -> None:
    """DRA nodes carry no nvidia.com/gpu and no GPU feature discovery label: their GPUs come
    from the slices, spelled canonically, one pool per product and way of offering."""
    inventory = _dra_inventory()
    summary = [
        (p.device_class.value, p.product, p.allocatable, len(p.nodes), p.dra is not None)
        for p in inventory.pools
    ]
    assert summary == [
        ("ascend910", "Ascend910B", 8, 1, True),
        ("ascend310", "Ascend310P3", 4, 1, False),
        ("nvidia", "A100-SXM4-40GB", 8, 1, False),
        ("nvidia", "A100-SXM4-40GB", 16, 2, True),
        ("nvidia", "T4", 4, 1, False),
        ("nvidia", "T4", 8, 2, True),
        ("cpu", None, 32_000, 1, False),
    ]
    a100 = next(p for p in inventory.pools if p.product == "A100-SXM4-40GB" and p.dra)
    assert a100.resource is None and a100.selector == {} and a100.taints == ()
    assert a100.dra is not None
    assert a100.dra.driver == a100.dra.device_class_name == "gpu.nvidia.com"
    assert a100.dra.product_attribute == "gpu.nvidia.com/productName"
    assert a100.dra.product_values == ("NVIDIA A100-SXM4-40GB",)
    assert a100.dra.memory_capacity == "gpu.nvidia.com/memory"
    npu = inventory.pools[0].dra
    assert npu is not None and npu.product_attribute == "npu.huawei.com/deviceType"
    assert inventory.dra_nodes() == tuple(
        sorted(n.name for n in DRA_PROFILE.nodes if n.product.driver)
    )


def test_a_node_offering_a_class_both_ways_counts_once() -> None:
    """The device plugin's 8 GPUs and the DRA driver's 8 are the same GPUs: counted once,
    through DRA; a DRA node is never a cpu node."""
    (node,) = Profile(cpu=0, nvidia=1, ascend910=0, ascend310=0).of_product(profile_mod.A100)
    slice_ = profile_mod.Node("kwok-a100-0", profile_mod.A100_DRA).resource_slice()
    assert slice_ is not None
    inventory = Inventory.from_nodes(
        [node.manifest(), _node("plain", allocatable={"cpu": "4"})], slices=[slice_, slice_]
    )
    gpus = inventory.pools_of(DeviceClass.NVIDIA)
    assert [(p.allocatable, p.nodes, p.dra is not None) for p in gpus] == [
        (8, ("kwok-a100-0",), True)
    ]
    assert inventory.pools_of(DeviceClass.CPU)[0].nodes == ("plain",)


def test_devices_of_no_configured_class_and_network_pools_are_not_counted() -> None:
    base = {"driver": "gpu.nvidia.com", "pool": {"name": "p", "generation": 1}}
    mig = {"name": "gpu-0-mig", "attributes": {"type": {"string": "mig"}}}
    other = {"driver": "example.com", "nodeName": "n", "devices": [{"name": "d"}]}
    slices = [
        {"spec": {**base, "nodeName": "n", "devices": [mig]}},
        {"spec": {**base, "allNodes": True, "devices": [{"name": "g", "attributes": {}}]}},
        {"spec": other},
    ]
    inventory = Inventory.from_nodes([_node("n", allocatable={"cpu": "4"})], slices=slices)
    assert [(p.device_class, p.dra) for p in inventory.pools] == [(DeviceClass.CPU, None)]


def test_one_product_spelled_two_ways_by_labels_is_one_pool_with_both_values() -> None:
    labels = {"nvidia.com/gpu.present": "true"}
    old = _node(
        "old", allocatable={"nvidia.com/gpu": "4"},
        labels={**labels, "nvidia.com/gpu.product": "A100-SXM4-40GB"},
    )  # fmt: skip
    new = _node(
        "new", allocatable={"nvidia.com/gpu": "4"},
        labels={**labels, "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
    )  # fmt: skip
    (pool,) = Inventory.from_nodes([old, new]).pools_of(DeviceClass.NVIDIA)
    assert pool.product == "A100-SXM4-40GB" and pool.allocatable == 8
    assert "nvidia.com/gpu.product" not in pool.selector
    assert pool.any_of == {"nvidia.com/gpu.product": ("A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB")}
