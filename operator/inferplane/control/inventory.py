# SPDX-License-Identifier: Apache-2.0
"""Nodes → device pools: which device classes the cluster has, of which products, how many.

Pure: it reads Node objects (plain dicts, as the API returns them) and never calls anything. A
pool is every schedulable, ready node of one device class and one product (GPU product as GPU
feature discovery labels it, Ascend chip as the device plugin labels it), with what the nodes can
give (devices, or CPU millicores for cpu/edge pools) and the taints a pod must tolerate there.

Classification follows the per-class table of the operator's settings (``DeviceSettings``: the
defaults are the resources and labels real clusters carry, FACTS.md; clusters that name them
otherwise override them). Classes are tried best first (``PREFERENCE``): a node is of a class
when it carries the class's node selector and offers one of its resources (``*`` matches any
suffix), if it has any; the product is the value of the class's product label (for ascend310 the
SoC version, ``Ascend`` + chip name, e.g. ``Ascend310P3``, as ATC's ``--soc_version`` names it).
A node of no class is cpu.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inferplane.control.settings import DEFAULT_DEVICES, DeviceSettings
from inferplane.devices import PREFERENCE, DeviceClass

Devices = Mapping[DeviceClass, DeviceSettings]
CONDITION_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")
"""Taints Kubernetes sets for a node's condition (not-ready, unreachable, pressure, cordon):
never tolerated by server pods, so left out of the pools."""


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str | None = None

    def toleration(self) -> dict[str, str]:
        """The toleration that lets a pod onto nodes with this taint."""
        if self.value is None:
            return {"key": self.key, "operator": "Exists", "effect": self.effect}
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class DevicePool:
    """Nodes of one device class and product."""

    device_class: DeviceClass
    product: str | None = None
    """GPU product (A100-SXM4-40GB) or Ascend SoC version (Ascend310P3); None for cpu/edge."""
    allocatable: int = 0
    """Devices the pool's nodes offer, or CPU millicores for cpu and edge pools."""
    nodes: tuple[str, ...] = ()
    taints: tuple[Taint, ...] = ()
    """Distinct NoSchedule/NoExecute taints of the pool's nodes."""
    resource: str | None = None
    """The extended resource a server pod requests (nvidia.com/gpu, huawei.com/Ascend310P)."""
    selector: Mapping[str, str] = field(default_factory=dict)
    """Node labels that pick exactly this pool's nodes (beyond the resource request)."""

    @property
    def has_capacity(self) -> bool:
        return self.allocatable > 0


def _quantity_milli(value: Any) -> int:
    """A CPU quantity in millicores ("2", "500m", 2)."""
    text = str(value)
    if text.endswith("m"):
        return int(float(text[:-1]))
    suffixes = {"k": 10**3, "M": 10**6, "G": 10**9}
    if text[-1:] in suffixes:
        return int(float(text[:-1]) * suffixes[text[-1]] * 1000)
    return int(float(text) * 1000)


def _count(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _soc_version(chip: str | None, resource: str) -> str:
    if chip:
        return chip if chip.lower().startswith("ascend") else f"Ascend{chip}"
    return resource.rsplit("/", 1)[-1]


def not_ready_since(node: Mapping[str, Any]) -> datetime | None:
    """When the node's Ready condition left True (None: Ready, or no condition yet). A node
    whose condition carries no time counts as NotReady since forever."""
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return None
            stamp = condition.get("lastTransitionTime")
            try:
                return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            except ValueError:
                return datetime.min.replace(tzinfo=UTC)
    return None


def usable(
    node: Mapping[str, Any], *, now: datetime | None = None, not_ready_grace_s: float = 0
) -> bool:
    """Schedulable and not NotReady (a node with no conditions yet counts). A node NotReady for
    less than ``not_ready_grace_s`` at ``now`` still counts: a kubelet restart or a network
    flap must not move a model's pools (the node lifecycle controller evicts pods from such a
    node after 300 s by default, the same patience)."""
    if node.get("spec", {}).get("unschedulable"):
        return False
    since = not_ready_since(node)
    if since is None:
        return True
    return now is not None and (now - since).total_seconds() < not_ready_grace_s


def grace_left(
    nodes: Iterable[Mapping[str, Any]], *, now: datetime, not_ready_grace_s: float
) -> float | None:
    """Seconds until the first NotReady node's grace ends (None: no node is in its grace): when
    the inventory must be rebuilt although no node changed."""
    left = []
    for node in nodes:
        since = not_ready_since(node)
        if since is not None and not node.get("spec", {}).get("unschedulable"):
            remaining = not_ready_grace_s - (now - since).total_seconds()
            if remaining > 0:
                left.append(remaining)
    return min(left, default=None)


def _offered(names: Iterable[str], allocatable: Mapping[str, Any]) -> str | None:
    """The first resource name (``*`` matching any suffix) the node has devices of."""
    for name in names:
        found = sorted(
            r for r in allocatable if fnmatch.fnmatchcase(r, name) and _count(allocatable[r]) > 0
        )
        if found:
            return found[0]
    return None


def classify(node: Mapping[str, Any], devices: Devices = DEFAULT_DEVICES) -> DevicePool:
    """The one-node pool a Node belongs to (class, product, what it offers, its taints)."""
    meta = node.get("metadata", {})
    labels: Mapping[str, str] = meta.get("labels") or {}
    allocatable: Mapping[str, Any] = node.get("status", {}).get("allocatable") or {}
    taints = tuple(
        Taint(t["key"], t["effect"], t.get("value") or None)
        for t in node.get("spec", {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
        and not t["key"].startswith(CONDITION_TAINT_PREFIXES)
    )
    name = str(meta.get("name", ""))
    cpu = _quantity_milli(allocatable.get("cpu", 0))
    for device_class in PREFERENCE:
        device = devices[device_class]
        if device_class is DeviceClass.CPU or not (device.resource_names or device.node_selector):
            continue
        if any(labels.get(k) != v for k, v in device.node_selector.items()):
            continue
        selector = dict(device.node_selector)
        product = labels.get(device.product_label) if device.product_label else None
        if product:
            selector[device.product_label] = product
        if not device.resource_names:
            return DevicePool(device_class, product, cpu, (name,), taints, None, selector)
        resource = _offered(device.resource_names, allocatable)
        if resource is None:
            continue
        if device_class is DeviceClass.ASCEND310:
            product = _soc_version(product, resource)
        return DevicePool(
            device_class, product, _count(allocatable[resource]), (name,), taints, resource,
            selector,
        )  # fmt: skip
    return DevicePool(DeviceClass.CPU, None, cpu, (name,), taints)


@dataclass(frozen=True)
class Inventory:
    """The cluster's device pools, best class first, then by product name."""

    pools: tuple[DevicePool, ...] = ()
    unusable: tuple[DevicePool, ...] = ()
    """Pools of nodes that exist but take no new pods (cordoned, or NotReady past the grace):
    a pool serving there keeps its pods (make-before-break), but nothing new is planned there."""

    @classmethod
    def from_pools(
        cls, pools: Iterable[DevicePool], unusable: Iterable[DevicePool] = ()
    ) -> Inventory:
        """An inventory from pools built by hand (local mode detects its own devices)."""
        order = {c: i for i, c in enumerate(PREFERENCE)}

        def ordered(found: Iterable[DevicePool]) -> tuple[DevicePool, ...]:
            return tuple(sorted(found, key=lambda p: (order[p.device_class], p.product or "")))

        return cls(ordered(pools), ordered(unusable))

    @classmethod
    def from_nodes(
        cls,
        nodes: Iterable[Mapping[str, Any]],
        devices: Devices = DEFAULT_DEVICES,
        *,
        now: datetime | None = None,
        not_ready_grace_s: float = 0,
    ) -> Inventory:
        """Group usable Nodes (schedulable, not NotReady past the grace) into pools by class and
        product, as ``devices`` (the operator settings' table) recognises them; the other nodes
        into ``unusable`` pools."""
        nodes = list(nodes)
        good = [n for n in nodes if usable(n, now=now, not_ready_grace_s=not_ready_grace_s)]
        bad = [n for n in nodes if not usable(n, now=now, not_ready_grace_s=not_ready_grace_s)]
        pools = _merge_nodes(good, devices)
        present = {(p.device_class, p.product) for p in pools if p.has_capacity}
        gone = [p for p in _merge_nodes(bad, devices) if (p.device_class, p.product) not in present]
        return cls.from_pools(pools, gone)

    def pools_of(self, device_class: DeviceClass) -> list[DevicePool]:
        """The pools of one class that have capacity."""
        return [p for p in self.pools if p.device_class is device_class and p.has_capacity]

    def unusable_pool(self, device_class: DeviceClass, product: str | None) -> DevicePool | None:
        """The pool of one class and product whose nodes all exist but take no new pods."""
        for pool in self.unusable:
            if pool.device_class is device_class and pool.product == product:
                return pool
        return None

    def classes(self) -> list[DeviceClass]:
        """Classes with capacity, best first."""
        return [c for c in PREFERENCE if self.pools_of(c)]

    def products(self, device_class: DeviceClass) -> list[str]:
        """Distinct products of a class with capacity, sorted."""
        return sorted({p.product for p in self.pools_of(device_class) if p.product})

    def allocatable(self, device_class: DeviceClass) -> int:
        return sum(p.allocatable for p in self.pools_of(device_class))


def _merge_nodes(nodes: Iterable[Mapping[str, Any]], devices: Devices) -> list[DevicePool]:
    """Nodes grouped into pools by class and product."""
    merged: dict[tuple[DeviceClass, str | None], DevicePool] = {}
    for node in nodes:
        one = classify(node, devices)
        key = (one.device_class, one.product)
        seen = merged.get(key)
        if seen is None:
            merged[key] = one
            continue
        merged[key] = DevicePool(
            one.device_class,
            one.product,
            seen.allocatable + one.allocatable,
            seen.nodes + one.nodes,
            seen.taints + tuple(t for t in one.taints if t not in seen.taints),
            seen.resource or one.resource,
            {k: v for k, v in seen.selector.items() if one.selector.get(k) == v},
        )
    return list(merged.values())
