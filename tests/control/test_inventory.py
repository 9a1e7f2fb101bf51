# SPDX-License-Identifier: Apache-2.0
"""Nodes → device pools, on the nodes the test cluster simulates (tests/cluster/profile.py)."""

from __future__ import annotations

from typing import Any

import pytest
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
        (DeviceClass.ASCEND910, "910B", 8, 1),
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
