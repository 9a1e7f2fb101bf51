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

Devices offered through Dynamic Resource Allocation (``resource.k8s.io/v1`` ResourceSlices, one
pool of devices per node and driver) count as well: a device is of the first class whose
``draDriver`` published it, whose ``draAttributes`` it carries and whose ``draProducts`` its
product matches; its product is the first of the class's ``productAttributes`` it has. A node
offering a class both ways (a device plugin's resource and a DRA driver's slices) is counted
once, through DRA, since both describe the same devices; a node with DRA devices is never a cpu
node, even though it carries no accelerator label. Every product is spelled canonically
(``products.canonical``): ``NVIDIA A100-SXM4-40GB``, ``NVIDIA-A100-SXM4-40GB`` and
``A100-SXM4-40GB`` are one pool.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inferplane import products
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
class DraOffer:
    """How a pool's devices are claimed through DRA: the driver, the DeviceClass to request, and
    the attribute naming the product with the spellings the pool's devices give it."""

    driver: str
    device_class_name: str
    product_attribute: str | None = None
    """Qualified (``gpu.nvidia.com/productName``)."""
    product_values: tuple[str, ...] = ()
    """The attribute's values on the pool's devices (``NVIDIA A100-SXM4-40GB``), sorted."""
    memory_capacity: str | None = None
    """Qualified name of the devices' memory capacity (``gpu.nvidia.com/memory``), if any."""

    def merged(self, other: DraOffer) -> DraOffer:
        values = tuple(sorted({*self.product_values, *other.product_values}))
        return DraOffer(
            self.driver, self.device_class_name, self.product_attribute, values,
            self.memory_capacity,
        )  # fmt: skip


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
    dra: DraOffer | None = None
    """Set when the devices are claimed through DRA (then ``resource`` is None and the
    selector carries no product label: the claim's selector picks the product)."""
    any_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Node labels whose value must be one of these (one product spelled two ways by the
    nodes' labels, e.g. GFD's old ``A100-SXM4-40GB`` and new ``NVIDIA-A100-SXM4-40GB``)."""

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
    return products.canonical(chip or resource.rsplit("/", 1)[-1])


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
        label = labels.get(device.product_label) if device.product_label else None
        product = products.canonical(label) if label else None
        if label:
            selector[device.product_label] = label
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
        slices: Iterable[Mapping[str, Any]] = (),
        *,
        now: datetime | None = None,
        not_ready_grace_s: float = 0,
    ) -> Inventory:
        """Group usable Nodes (schedulable, not NotReady past the grace) into pools by class,
        product and way of offering (device plugin or DRA), as ``devices`` (the operator
        settings' table) recognises them, ``slices`` being the cluster's ResourceSlices; the
        other nodes into ``unusable`` pools."""
        nodes = list(nodes)
        offered = dra_devices(slices, devices)
        good = [n for n in nodes if usable(n, now=now, not_ready_grace_s=not_ready_grace_s)]
        bad = [n for n in nodes if not usable(n, now=now, not_ready_grace_s=not_ready_grace_s)]
        pools = _merge_nodes(good, devices, offered)
        present = {(p.device_class, p.product) for p in pools if p.has_capacity}
        gone = [
            p
            for p in _merge_nodes(bad, devices, offered)
            if (p.device_class, p.product) not in present
        ]
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

    def has_nodes(self, device_class: DeviceClass, product: str | None) -> bool:
        """Whether any node of the class and product exists, usable or not (with capacity or
        not): False once its nodes are deleted."""
        return any(
            p.device_class is device_class and p.product == product
            for p in (*self.pools, *self.unusable)
        )

    def classes(self) -> list[DeviceClass]:
        """Classes with capacity, best first."""
        return [c for c in PREFERENCE if self.pools_of(c)]

    def products(self, device_class: DeviceClass) -> list[str]:
        """Distinct products of a class with capacity, sorted."""
        return sorted({p.product for p in self.pools_of(device_class) if p.product})

    def allocatable(self, device_class: DeviceClass) -> int:
        return sum(p.allocatable for p in self.pools_of(device_class))

    def dra_nodes(self) -> tuple[str, ...]:
        """Nodes whose accelerators are offered through DRA (cpu pods keep off them: they
        carry none of the labels device plugins and feature discovery set)."""
        return tuple(sorted({n for p in self.pools if p.dra is not None for n in p.nodes}))


def _merge_nodes(
    nodes: Iterable[Mapping[str, Any]],
    devices: Devices,
    offered: Mapping[str, Mapping[tuple[DeviceClass, str | None], tuple[int, DraOffer]]],
) -> list[DevicePool]:
    """Nodes grouped into pools by class, product and way of offering: a node's DRA devices
    (``offered``, by node name) replace its device plugin's resource of the same class."""
    groups: dict[tuple[DeviceClass, str | None, bool], list[DevicePool]] = {}
    for node in nodes:
        name = str(node.get("metadata", {}).get("name", ""))
        one = classify(node, devices)
        through_dra = node_dra_pools(one, offered.get(name, {}))
        if through_dra:
            if one.device_class not in {p.device_class for p in through_dra} and one.resource:
                groups.setdefault(_group(one), []).append(one)
            for pool in through_dra:
                groups.setdefault(_group(pool), []).append(pool)
            continue
        groups.setdefault(_group(one), []).append(one)
    return [merge(group) for group in groups.values()]


def _group(pool: DevicePool) -> tuple[DeviceClass, str | None, bool]:
    return (pool.device_class, pool.product, pool.dra is not None)


def merge(pools: Sequence[DevicePool]) -> DevicePool:
    """One pool of several (same class; same product, unless the caller merges products): the
    devices and nodes added up, the taints of any, the labels all share, and for a label the
    nodes give different values, those values as ``any_of``."""
    first = pools[0]
    selector: dict[str, str] = {}
    any_of: dict[str, tuple[str, ...]] = {}
    keys = set(first.selector) | set(first.any_of)
    for pool in pools[1:]:
        keys &= set(pool.selector) | set(pool.any_of)
    for key in sorted(keys):
        values = sorted(
            {v for p in pools for v in ((p.selector[key],) if key in p.selector else p.any_of[key])}
        )
        if len(values) == 1:
            selector[key] = values[0]
        else:
            any_of[key] = tuple(values)
    taints: list[Taint] = []
    for pool in pools:
        taints += [t for t in pool.taints if t not in taints]
    dra = None
    for pool in pools:
        if pool.dra is not None:
            dra = pool.dra if dra is None else dra.merged(pool.dra)
    return DevicePool(
        first.device_class,
        first.product,
        sum(p.allocatable for p in pools),
        tuple(n for p in pools for n in p.nodes),
        tuple(taints),
        next((p.resource for p in pools if p.resource), None),
        selector,
        dra,
        any_of,
    )


# --- Dynamic Resource Allocation ------------------------------------------------------------------


def _attribute(attributes: Mapping[str, Any], driver: str, name: str) -> str | None:
    """A device attribute's value as text: ``name`` unqualified means the driver's own domain
    (``productName`` is ``gpu.nvidia.com/productName``), as in the ResourceSlice API."""
    qualified = name if "/" in name else f"{driver}/{name}"
    found = attributes.get(name)
    if found is None:
        found = attributes.get(qualified)
    if found is None and "/" in name and name.split("/", 1)[0] == driver:
        found = attributes.get(name.split("/", 1)[1])
    if not isinstance(found, Mapping):
        return None
    for kind in ("string", "version", "int", "bool"):
        if kind in found and found[kind] is not None:
            return str(found[kind])
    return None


def qualified(driver: str, name: str) -> str:
    """An attribute or capacity name with its domain (``gpu.nvidia.com/productName``)."""
    return name if "/" in name else f"{driver}/{name}"


@dataclass(frozen=True)
class DraDevice:
    """One device a ResourceSlice offers, classified."""

    device_class: DeviceClass
    product: str | None
    offer: DraOffer


def _classify_device(driver: str, device: Mapping[str, Any], devices: Devices) -> DraDevice | None:
    attributes: Mapping[str, Any] = device.get("attributes") or {}
    for device_class in PREFERENCE:
        setting = devices[device_class]
        if not setting.dra_driver or setting.dra_driver != driver:
            continue
        if any(_attribute(attributes, driver, k) != v for k, v in setting.dra_attributes.items()):
            continue
        raw, attribute = None, None
        for name in setting.product_attributes:
            raw = _attribute(attributes, driver, name)
            if raw:
                attribute = qualified(driver, name)
                break
        product = products.canonical(raw) if raw else None
        if setting.dra_products and not (
            product and any(fnmatch.fnmatchcase(product, g) for g in setting.dra_products)
        ):
            continue
        memory = qualified(driver, setting.memory_capacity) if setting.memory_capacity else None
        offer = DraOffer(
            driver, setting.device_class_name, attribute, (raw,) if raw else (), memory
        )
        return DraDevice(device_class, product, offer)
    return None


def dra_devices(
    slices: Iterable[Mapping[str, Any]], devices: Devices = DEFAULT_DEVICES
) -> dict[str, dict[tuple[DeviceClass, str | None], tuple[int, DraOffer]]]:
    """Per node, the DRA devices of each (class, product): how many and how to claim them.

    Only slices bound to one node (``spec.nodeName``) count: network-attached pools
    (``nodeSelector``, ``allNodes``) are not a node's devices. Devices a driver published twice
    (the same pool in several slices) count once per name.
    """
    seen: set[tuple[str, str, str, str]] = set()
    found: dict[str, dict[tuple[DeviceClass, str | None], tuple[int, DraOffer]]] = {}
    for item in slices:
        spec = item.get("spec") or {}
        node, driver = spec.get("nodeName"), spec.get("driver")
        if not node or not driver:
            continue
        pool = str((spec.get("pool") or {}).get("name", ""))
        for device in spec.get("devices") or []:
            key = (str(node), str(driver), pool, str(device.get("name", "")))
            if key in seen:
                continue
            seen.add(key)
            classified = _classify_device(str(driver), device, devices)
            if classified is None:
                continue
            per_node = found.setdefault(str(node), {})
            group = (classified.device_class, classified.product)
            count, offer = per_node.get(group, (0, classified.offer))
            per_node[group] = (count + 1, offer.merged(classified.offer))
    return found


def node_dra_pools(
    node: DevicePool, offered: Mapping[tuple[DeviceClass, str | None], tuple[int, DraOffer]]
) -> list[DevicePool]:
    """The one-node DRA pools of a node (``node``: what ``classify`` made of it, for its name,
    taints and the class's node selector)."""
    pools = []
    for (device_class, product), (count, offer) in sorted(
        offered.items(), key=lambda item: (item[0][0].value, item[0][1] or "")
    ):
        pools.append(
            DevicePool(device_class, product, count, node.nodes, node.taints, None, {}, offer)
        )
    return pools
