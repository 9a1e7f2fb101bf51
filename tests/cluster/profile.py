# SPDX-License-Identifier: Apache-2.0
"""The simulated nodes: which exist, and the labels, taints and capacity real clusters give them.

Labels and resources follow what the real agents set: NVIDIA GPU feature discovery
(``nvidia.com/gpu.*``) and the NVIDIA device plugin (``nvidia.com/gpu``); the Ascend device plugin
(``huawei.com/Ascend910``, ``huawei.com/Ascend310P``, ``node.kubernetes.io/npu.chip.name``) and the
administrators' ``accelerator=huawei-Ascend*`` label.

Taints: every accelerator node carries ``<resource name>:NoSchedule`` (``nvidia.com/gpu``,
``huawei.com/Ascend910``, ``huawei.com/Ascend310P``), the convention of GPU clusters that Ascend
clusters follow too: it keeps CPU-only pods off the expensive nodes, and the
``ExtendedResourceToleration`` admission plugin (where enabled) derives the toleration from the
resource a pod requests. That plugin is *not* enabled here, so a pod that targets an accelerator
must tolerate the taint itself, as it must on most managed clusters.

Nodes whose devices are offered through Dynamic Resource Allocation (``nvidia_dra``,
``ascend_dra``) carry neither the extended resource nor GPU feature discovery's labels nor a
taint, as on a cluster running the drivers' kubelet plugins without the device plugin: their
devices are in ResourceSlices (``Profile.resource_slices``) with the attributes the drivers
publish — NVIDIA's ``dra-driver-nvidia-gpu`` (kubernetes-sigs; ``cmd/gpu-kubelet-plugin/
deviceinfo.go``: type, uuid, productName, brand, architecture, cudaComputeCapability,
driverVersion, cudaDriverVersion, capacity memory; devices ``gpu-<minor>``) and Huawei's Ascend
DRA driver (Ascend/mind-cluster ``component/ascend-dynamic-resource-allocation``: deviceType and
physicId; devices ``npu-<physicId>`` as its documentation shows) — and the DeviceClasses those
drivers' charts install are ``DEVICE_CLASSES``. The test tooling plays the drivers' part: it
publishes the slices; the real scheduler allocates claims against them.

``Profile.from_counts`` is the only constructor; ``Profile.to_json``/``from_json`` let a test
session read the profile of a cluster that another process brought up.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterator
from typing import Any

from tests.cluster import versions

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
MAX_NODES = 1000
_NODE_INFO_FIELDS = (
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
)


@dataclasses.dataclass(frozen=True)
class Product:
    """One kind of accelerator node: the resource it offers and the labels that identify it."""

    device_class: str
    """inferplane's device class (DESIGN.md): ``cpu``, ``nvidia``, ``ascend910``, ``ascend310``."""
    name: str
    """The product as labels name it (``A100-SXM4-40GB``, ``910B``, ...); ``cpu`` for CPU nodes."""
    prefix: str
    resource: str | None
    count: int
    labels: dict[str, str]
    arch: str = "amd64"
    cpu: str = "32"
    memory: str = "128Gi"
    driver: str | None = None
    """The DRA driver publishing the devices (then ``resource`` is None: no device plugin)."""
    device_attributes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Attributes every device gets (ResourceSlice form: ``{"string": ...}``, ``{"int": ...}``)."""
    device_capacity: dict[str, str] = dataclasses.field(default_factory=dict)
    device_name: str = "gpu-{index}"


def _nvidia(product: str, *, memory_mib: int, count: int, major: int, minor: int) -> dict[str, str]:
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.memory": str(memory_mib),
        "nvidia.com/gpu.count": str(count),
        "nvidia.com/gpu.compute.major": str(major),
        "nvidia.com/gpu.compute.minor": str(minor),
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.runtime.major": "12",
    }


CPU = Product(device_class="cpu", name="cpu", prefix="cpu", resource=None, count=0, labels={})
A100 = Product(
    device_class="nvidia",
    name="A100-SXM4-40GB",
    prefix="a100",
    resource="nvidia.com/gpu",
    count=8,
    labels=_nvidia("A100-SXM4-40GB", memory_mib=40960, count=8, major=8, minor=0),
    cpu="96",
    memory="1Ti",
)
T4 = Product(
    device_class="nvidia",
    name="T4",
    prefix="t4",
    resource="nvidia.com/gpu",
    count=4,
    labels=_nvidia("T4", memory_mib=15360, count=4, major=7, minor=5),
    cpu="48",
    memory="192Gi",
)
ASCEND910 = Product(
    device_class="ascend910",
    name="910B",
    prefix="ascend910",
    resource="huawei.com/Ascend910",
    count=8,
    labels={
        "accelerator": "huawei-Ascend910",
        "node.kubernetes.io/npu.chip.name": "910B",
        "accelerator-type": "module-910b-8",
        "host-arch": "huawei-arm",
    },
    arch="arm64",
    cpu="192",
    memory="1Ti",
)
ASCEND310P = Product(
    device_class="ascend310",
    name="310P3",
    prefix="ascend310p",
    resource="huawei.com/Ascend310P",
    count=4,
    labels={
        "accelerator": "huawei-Ascend310P",
        "node.kubernetes.io/npu.chip.name": "310P3",
        "host-arch": "huawei-x86",
    },
    cpu="64",
    memory="256Gi",
)

NVIDIA_DRIVER = "gpu.nvidia.com"
ASCEND_DRIVER = "npu.huawei.com"


def _nvidia_dra(
    prefix: str, *, product: str, architecture: str, compute: str, memory: str, count: int
) -> Product:
    """A GPU node as NVIDIA's DRA driver shows it: devices in a ResourceSlice, no labels."""
    return Product(
        device_class="nvidia",
        name=product,
        prefix=prefix,
        resource=None,
        count=count,
        labels={},
        cpu="96",
        memory="1Ti",
        driver=NVIDIA_DRIVER,
        device_attributes={
            "type": {"string": "gpu"},
            "productName": {"string": product},
            "brand": {"string": "Nvidia" if product.startswith("NVIDIA") else "Tesla"},
            "architecture": {"string": architecture},
            "cudaComputeCapability": {"version": compute},
            "driverVersion": {"version": "580.95.5"},
            "cudaDriverVersion": {"version": "13.0.0"},
        },
        device_capacity={"memory": memory},
    )


A100_DRA = _nvidia_dra(
    "a100-dra", product="NVIDIA A100-SXM4-40GB", architecture="Ampere", compute="8.0.0",
    memory="40Gi", count=8,
)  # fmt: skip
T4_DRA = _nvidia_dra(
    "t4-dra", product="Tesla T4", architecture="Turing", compute="7.5.0", memory="15Gi", count=4
)
ASCEND910_DRA = Product(
    device_class="ascend910",
    name="Ascend910B",
    prefix="ascend910-dra",
    resource=None,
    count=8,
    labels={"host-arch": "huawei-arm"},
    arch="arm64",
    cpu="192",
    memory="1Ti",
    driver=ASCEND_DRIVER,
    device_attributes={"deviceType": {"string": "Ascend910B"}},
    device_name="npu-{index}",
)

NVIDIA_PRODUCTS = (A100, T4)
NVIDIA_DRA_PRODUCTS = (A100_DRA, T4_DRA)
PRODUCTS = (CPU, A100, T4, ASCEND910, ASCEND310P, A100_DRA, T4_DRA, ASCEND910_DRA)
DEVICE_CLASSES = (
    {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": NVIDIA_DRIVER},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": "device.driver == 'gpu.nvidia.com' && "
                        "device.attributes['gpu.nvidia.com'].type == 'gpu'"
                    }
                }
            ]
        },
    },
    {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": ASCEND_DRIVER},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'npu.huawei.com'"}}]},
    },
)
"""The DeviceClasses the NVIDIA and Ascend DRA drivers' charts install."""


_CONDITIONS = (
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("NetworkUnavailable", "False", "RouteCreated", "RouteController created a route"),
)
"""kwok's own node conditions (its ``NodeConditions`` template function)."""


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    product: Product
    index: int = 0
    """Position in the profile: gives the node a distinct InternalIP."""

    @property
    def internal_ip(self) -> str:
        return f"10.1.{self.index // 250}.{self.index % 250 + 1}"

    @property
    def device_class(self) -> str:
        return self.product.device_class

    @property
    def labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": self.product.arch,
            "node.kubernetes.io/instance-type": f"kwok-{self.product.prefix}",
            "type": "kwok",
            **self.product.labels,
        }

    @property
    def taints(self) -> list[dict[str, str]]:
        if self.product.resource is None:
            return []
        return [{"key": self.product.resource, "effect": "NoSchedule"}]

    def resource_slice(self) -> dict[str, Any] | None:
        """The ResourceSlice a DRA driver's kubelet plugin publishes for this node (one pool
        per node, named after it), or None for a node without DRA devices."""
        product = self.product
        if product.driver is None:
            return None
        devices = []
        for index in range(product.count):
            attributes = dict(product.device_attributes)
            if product.driver == NVIDIA_DRIVER:
                attributes["uuid"] = {"string": f"GPU-{self.index:08x}-{index:04x}"}
            else:
                attributes["physicId"] = {"int": index}
            device: dict[str, Any] = {
                "name": product.device_name.format(index=index),
                "attributes": attributes,
            }
            if product.device_capacity:
                device["capacity"] = {k: {"value": v} for k, v in product.device_capacity.items()}
            devices.append(device)
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": f"{self.name}-{product.driver}"},
            "spec": {
                "driver": product.driver,
                "nodeName": self.name,
                "pool": {"name": self.name, "generation": 1, "resourceSliceCount": 1},
                "devices": devices,
            },
        }

    @property
    def capacity(self) -> dict[str, str]:
        capacity = {
            "cpu": self.product.cpu,
            "memory": self.product.memory,
            "pods": "110",
            "ephemeral-storage": "1Ti",
        }
        if self.product.resource is not None:
            capacity[self.product.resource] = str(self.product.count)
        return capacity

    def manifest(self, now: str | None = None) -> dict[str, Any]:
        """The Node object with the status a kubelet would post once ready.

        Creating nodes already Ready (as kwok's own ``node-initialize`` stage would make them)
        spares kwok, the API server and the node lifecycle controller a round of status patches
        and taints per node: that is most of the work of bringing up 1000 nodes. kwok then keeps
        them Ready through their leases and its heartbeat stage.
        """
        now = now or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fake = f"kwok-{versions.KWOK}"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels,
                "annotations": {
                    KWOK_ANNOTATION: "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": {"taints": self.taints} if self.taints else {},
            "status": {
                "capacity": self.capacity,
                "allocatable": self.capacity,
                "nodeInfo": {
                    **dict.fromkeys(_NODE_INFO_FIELDS, ""),
                    "architecture": self.product.arch,
                    "operatingSystem": "linux",
                    "kubeletVersion": fake,
                    "kubeProxyVersion": fake,
                    "containerRuntimeVersion": fake,
                    "kernelVersion": fake,
                },
                "addresses": [
                    {"type": "InternalIP", "address": self.internal_ip},
                    {"type": "Hostname", "address": self.name},
                ],
                "conditions": [
                    {
                        "type": kind,
                        "status": status,
                        "reason": reason,
                        "message": message,
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                    for kind, status, reason, message in _CONDITIONS
                ],
                "phase": "Running",
            },
        }


@dataclasses.dataclass(frozen=True)
class Profile:
    """How many nodes of each kind. ``nvidia`` counts nodes *per GPU product* (A100 and T4)."""

    cpu: int = 2
    nvidia: int = 1
    ascend910: int = 1
    ascend310: int = 1
    nvidia_dra: int = 0
    """Nodes per GPU product (A100 and T4) whose GPUs are offered through DRA."""
    ascend_dra: int = 0
    """Ascend 910B nodes whose NPUs are offered through DRA."""

    def __post_init__(self) -> None:
        counts = (
            self.cpu, self.nvidia, self.ascend910, self.ascend310, self.nvidia_dra,
            self.ascend_dra,
        )  # fmt: skip
        if min(counts) < 0:
            raise ValueError(f"node counts cannot be negative: {self}")
        if self.total > MAX_NODES:
            raise ValueError(f"the profile has {self.total} nodes; at most {MAX_NODES} are allowed")

    @classmethod
    def from_counts(
        cls,
        *,
        cpu: int,
        nvidia: int,
        ascend910: int,
        ascend310: int,
        nvidia_dra: int = 0,
        ascend_dra: int = 0,
    ) -> Profile:
        return cls(
            cpu=cpu, nvidia=nvidia, ascend910=ascend910, ascend310=ascend310,
            nvidia_dra=nvidia_dra, ascend_dra=ascend_dra,
        )  # fmt: skip

    @property
    def total(self) -> int:
        return sum(count for _, count in self._counts())

    @property
    def dra(self) -> bool:
        """Whether any node offers devices through DRA."""
        return self.nvidia_dra + self.ascend_dra > 0

    def _counts(self) -> Iterator[tuple[Product, int]]:
        yield CPU, self.cpu
        for product in NVIDIA_PRODUCTS:
            yield product, self.nvidia
        yield ASCEND910, self.ascend910
        yield ASCEND310P, self.ascend310
        for product in NVIDIA_DRA_PRODUCTS:
            yield product, self.nvidia_dra
        yield ASCEND910_DRA, self.ascend_dra

    @property
    def nodes(self) -> tuple[Node, ...]:
        names = [
            (f"kwok-{product.prefix}-{i}", product)
            for product, count in self._counts()
            for i in range(count)
        ]
        return tuple(
            Node(name=name, product=product, index=index)
            for index, (name, product) in enumerate(names)
        )

    def of_class(self, device_class: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.device_class == device_class)

    def of_product(self, product: Product) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.product == product)

    def manifest(self) -> dict[str, Any]:
        """All nodes as one ``v1/List`` for ``kubectl create -f``."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"apiVersion": "v1", "kind": "List", "items": [n.manifest(now) for n in self.nodes]}

    def resource_slices(self) -> list[dict[str, Any]]:
        """The ResourceSlices of the nodes offering devices through DRA."""
        return [s for s in (n.resource_slice() for n in self.nodes) if s is not None]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Profile:
        return cls(**json.loads(text))
