# SPDX-License-Identifier: Apache-2.0
"""The operator's configuration: environment variables with the ``INFERPLANE_`` prefix.

Built once at start-up (``OperatorSettings()``) and passed to the planner and builders; nothing
reads the environment later. Mappings and lists are JSON in the environment, e.g.
``INFERPLANE_CONVERSION_LABELS='{"team": "ml"}'``. The Helm chart sets these names.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferplane import __version__
from inferplane.control.scaling import Preference
from inferplane.devices import PROFILES, ArtifactFormat, BackendName, DeviceClass

DEFAULT_REGISTRY = "ghcr.io/inferplane"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""GPU feature discovery's label with the GPU model (A100-SXM4-40GB, T4)."""
NVIDIA_DRA_DRIVER = "gpu.nvidia.com"
"""NVIDIA's DRA driver (kubernetes-sigs/dra-driver-nvidia-gpu) and the DeviceClass its chart
installs for whole GPUs; devices carry productName, architecture, cudaComputeCapability,
driverVersion and capacity memory (cmd/gpu-kubelet-plugin/deviceinfo.go)."""
ASCEND_DRA_DRIVER = "npu.huawei.com"
"""Huawei's Ascend DRA driver (Ascend/mind-cluster, component/ascend-dynamic-resource-allocation)
and its DeviceClass; devices carry deviceType (e.g. Ascend910B) and physicId
(internal/device/generation_*.go); its documentation also names chipName."""
NPU_CHIP_LABEL = "node.kubernetes.io/npu.chip.name"
"""The Ascend device plugin's label with the NPU chip (910B, 310P3)."""
EDGE_ROLE_LABEL = "node-role.kubernetes.io/edge"
"""KubeEdge's role label on edge nodes (value empty)."""
CPU_AVOID_LABELS = (
    "nvidia.com/gpu.present",
    GPU_PRODUCT_LABEL,
    NPU_CHIP_LABEL,
    "accelerator",
    EDGE_ROLE_LABEL,
)
"""Labels of accelerator and edge nodes, which cpu pods keep off."""
DEFAULT_SERVER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"memory": "2Gi"},
}


class DeviceSettings(BaseModel):
    """How the cluster shows one device class, and what its server pods get.

    JSON keys are camelCase, as the chart's ``devices.<class>`` values name them.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    resource_names: tuple[str, ...] = ()
    """Extended resources that carry the class, preferred first; ``*`` matches any suffix
    (virtual NPU slices ``huawei.com/Ascend910-4c``). A node offering one is of this class and a
    server pod requests one of it. Empty: the class has no device resource (cpu, edge)."""
    product_label: str = ""
    """Node label whose value names the product (GPU model, NPU chip): pools are split by it and
    pods select it. Empty: no products."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Labels a node must carry to be of this class; pods get them as their nodeSelector."""
    avoid_labels: tuple[str, ...] = ()
    """Keys of labels whose nodes the class's pods keep off (cpu pods also keep off every
    other class's product label and node selector)."""
    runtime_class_name: str = ""
    """runtimeClassName of server pods (and of conversion Jobs on the device); empty: none."""
    tolerations: tuple[dict[str, Any], ...] = ()
    """Tolerations server pods (and conversion Jobs on the device) get besides those of the
    pool's node taints."""
    resources: dict[str, Any] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_SERVER_RESOURCES.items()}
    )
    """Default server container resources; the device resource is added and
    spec.deviceOptions.<class>.resources overrides."""
    images: dict[BackendName, str] = Field(default_factory=dict)
    """Server image per backend; a backend not listed uses the tool's image (``SERVER_IMAGE``)."""

    # --- Dynamic Resource Allocation (resource.k8s.io/v1) ------------------------------------
    dra_driver: str = ""
    """DRA driver whose ResourceSlices offer this class (``gpu.nvidia.com``, ``npu.huawei.com``);
    empty: the class is not looked for in ResourceSlices."""
    device_class_name: str = ""
    """The DeviceClass (installed by the driver's chart) a ResourceClaimTemplate's request names."""
    dra_attributes: dict[str, str] = Field(default_factory=dict)
    """String attributes a device must carry to be of this class (NVIDIA: ``type: gpu``, so MIG
    slices and VFIO devices are not counted as whole GPUs)."""
    product_attributes: tuple[str, ...] = ()
    """Device attributes that name the product, the first present wins; the claim's CEL
    selector matches the spellings found there."""
    dra_products: tuple[str, ...] = ()
    """Globs over the canonical product (``products.canonical``) a device must match to be of
    this class (one driver serves ascend910 and ascend310); empty: any."""
    memory_capacity: str = ""
    """The device capacity that holds its memory (NVIDIA: ``memory``), for
    ``spec.deviceOptions.<class>.minMemory``; empty: the driver publishes none."""


def _image(name: str, variant: str = "") -> str:
    return f"{DEFAULT_REGISTRY}/{name}:{__version__}{'-' + variant if variant else ''}"


DEFAULT_DEVICES: dict[DeviceClass, DeviceSettings] = {
    DeviceClass.ASCEND910: DeviceSettings(
        resource_names=(*PROFILES[DeviceClass.ASCEND910].resources, "huawei.com/Ascend910*"),
        product_label=NPU_CHIP_LABEL,
        images={BackendName.MINDSPORE: _image("mindspore", "ascend")},
        dra_driver=ASCEND_DRA_DRIVER,
        device_class_name=ASCEND_DRA_DRIVER,
        product_attributes=("chipName", "deviceType"),
        dra_products=("Ascend910*",),
    ),
    DeviceClass.ASCEND310: DeviceSettings(
        resource_names=PROFILES[DeviceClass.ASCEND310].resources,
        product_label=NPU_CHIP_LABEL,
        dra_driver=ASCEND_DRA_DRIVER,
        device_class_name=ASCEND_DRA_DRIVER,
        product_attributes=("chipName", "deviceType"),
        dra_products=("Ascend310*",),
    ),
    DeviceClass.NVIDIA: DeviceSettings(
        resource_names=PROFILES[DeviceClass.NVIDIA].resources,
        product_label=GPU_PRODUCT_LABEL,
        runtime_class_name="nvidia",
        dra_driver=NVIDIA_DRA_DRIVER,
        device_class_name=NVIDIA_DRA_DRIVER,
        dra_attributes={"type": "gpu"},
        product_attributes=("productName",),
        memory_capacity="memory",
    ),
    DeviceClass.CPU: DeviceSettings(avoid_labels=CPU_AVOID_LABELS),
    DeviceClass.EDGE: DeviceSettings(node_selector={EDGE_ROLE_LABEL: ""}),
}
"""Today's device plugins and labels (FACTS.md); the GPU operator creates RuntimeClass nvidia.
Only ascend910 names its own image (MindSpore's ascend variant): the other classes serve from the
tool images (``image_*``), so overriding one of those still reaches the servers."""


class OperatorSettings(BaseSettings):
    """Everything the operator needs besides the InferenceModel itself."""

    model_config = SettingsConfigDict(env_prefix="INFERPLANE_", extra="ignore", frozen=True)

    # --- images --------------------------------------------------------------------------------
    image_cpu: str = f"{DEFAULT_REGISTRY}/cpu:{__version__}"
    """Server image for ONNX Runtime on CPU (runtime-images/cpu)."""
    image_mindspore: str = _image("mindspore", "cpu")
    """MindSpore image, cpu variant: checkpoint export (ONNX, MindIR, AIR) Jobs and the mindspore
    backend on cpu; ascend910 serves from the ascend variant (``devices``)."""
    image_nvidia: str = f"{DEFAULT_REGISTRY}/nvidia:{__version__}"
    """TensorRT + trtexec + ONNX Runtime CUDA: engine builds and the nvidia servers."""
    image_ascend: str = f"{DEFAULT_REGISTRY}/ascend:{__version__}"
    """CANN image: ATC (OM builds) and the acl backend."""
    image_edge: str = f"{DEFAULT_REGISTRY}/edge:{__version__}"
    """MindSpore Lite image: converter_lite and the mslite backend."""
    image_pull_policy: str = "IfNotPresent"
    """imagePullPolicy of every container the operator creates."""
    image_pull_secrets: list[str] = Field(default_factory=list)
    """Secrets (in the model's namespace) used to pull the images."""

    # --- artifact store ------------------------------------------------------------------------
    store: str = "s3://inferplane/artifacts"
    """Artifact store URI: s3://bucket/prefix, pvc://claim/path or file:///path (single machine)."""
    store_secret: str | None = None
    """Secret (in each model's namespace) with the store's credentials as environment variables
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...); given only to containers that run
    inferplane's own code: a conversion Job's publish step and the servers' fetch step, never to
    the step that runs the network's code."""
    source_secret: str | None = None
    """Secret (in each model's namespace) with read-only credentials for model sources and
    validation sets (s3://), given only to a conversion Job's fetch step. Unset: the store's."""
    share_artifacts: bool = False
    """Share artifacts across namespaces. Off (the default): every artifact key starts with the
    model's namespace, so a namespace's conversions never write, nor serve, another's. On: a
    model whose spec gives the source's sha256 uses the content-addressed key alone, and another
    namespace converting the same source with the same options reuses that artifact; any
    namespace allowed to create InferenceModels then publishes artifacts the others serve
    (docs/install.md, "Who may write the artifact store")."""
    s3_endpoint: str | None = None
    """S3 endpoint URL for S3-compatible stores (MinIO, Ceph); passed as INFERPLANE_S3_ENDPOINT."""
    pvc_root: str = "/mnt/inferplane/pvc"
    """Where pvc:// claims are mounted inside pods (INFERPLANE_PVC_ROOT of the store)."""

    # --- conversion jobs -----------------------------------------------------------------------
    conversion_labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels on conversion pods (the tests hold them with kwok.inferplane.io/hold)."""
    job_backoff_limit: int = Field(default=1, ge=0, le=10)
    """Retries of a failed conversion pod before the Job fails."""
    job_deadline_s: int = Field(default=3600, ge=60)
    """activeDeadlineSeconds of a conversion Job."""
    job_ttl_s: int = Field(default=86400, ge=0)
    """ttlSecondsAfterFinished: the result lives on in the model's status."""
    conversion_resources: dict[str, Any] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"memory": "8Gi"},
        }
    )
    """Resources of conversion containers (TensorRT jobs add one nvidia.com/gpu)."""

    # --- serving -------------------------------------------------------------------------------
    server_port: int = Field(default=8080, ge=1, le=65535)
    """Container port of the V2 REST API (and /metrics)."""
    devices: dict[DeviceClass, DeviceSettings] = Field(
        default_factory=lambda: dict(DEFAULT_DEVICES)
    )
    """Per device class (``INFERPLANE_DEVICES``, JSON): resource names, labels, server
    resources, runtimeClass, tolerations, images. A class or field left out keeps its default."""
    cluster_domain: str = "cluster.local"
    """DNS domain of the cluster, for status.url."""
    not_ready_grace_s: float = Field(default=300.0, ge=0)
    """How long a NotReady node still counts as its class's capacity: a flap shorter than this
    re-plans nothing. The default is the node lifecycle controller's own patience (pods on a
    NotReady node are evicted after 300 s)."""
    class_gone_grace_s: float = Field(default=300.0, ge=0)
    """How long a pool whose class (and product) has no node left at all (its nodes deleted,
    not cordoned) is kept before it is removed: a node replaced by an upgrade or the cluster
    autoscaler comes back within minutes, and its pool with it, untouched. After this, the pool
    still stays while its pods are ready and nothing else serves the model."""

    # --- autoscaling (control/scaling.py) --------------------------------------------------------
    keda: bool = False
    """Scale ``metric: inflight`` pools with KEDA ScaledObjects where the cluster serves them
    (the chart's ``autoscaling.keda.enabled``, which also grants their RBAC). Off: KEDA is never
    used, even where it is installed."""
    inflight_autoscaler: Preference = Preference.KEDA
    """What ``metric: inflight`` uses where the cluster serves both KEDA and
    custom.metrics.k8s.io: ``keda`` (a ScaledObject) or ``hpa`` (an HPA on the pods metric)."""
    prometheus_address: str = "http://prometheus-operated.monitoring.svc:9090"
    """The Prometheus KEDA's triggers query; it must scrape the server pods through their
    ``prometheus.io/*`` annotations (docs/install.md)."""
    scale_down_window_s: int | None = Field(default=None, ge=0, le=3600)
    """``behavior.scaleDown.stabilizationWindowSeconds`` of every autoscaler: how long the
    highest recommendation holds before pods go. None keeps Kubernetes' default (300 s)."""

    # --- watching ------------------------------------------------------------------------------
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means the whole cluster."""
    peering: str = "inferplane"
    """kopf peering object: of several operator replicas, one is active."""
    watch_timeout_s: int = Field(default=600, ge=1)
    """How long one watch request lasts (kopf's ``watching.server_timeout``): the API server
    ends it and kopf opens it again from the last resourceVersion (no new LIST). A connection
    that died silently is noticed within this, and each new request authenticates afresh (a
    revoked token meets its 401 and kopf's login handler, not a stream that never ends)."""
    priority: int | None = None
    """Peering priority of this replica (highest is active); default random per start, since
    replicas with equal priorities would all pause."""
    log_level: str = "info"
    """Log level of the operator (debug, info, warning, error)."""
    workers: int = Field(default=16, ge=1, le=256)
    """Models reconciled at once. A reconcile mostly waits on the API server; more workers help
    only while the API server has CPU to spare (docs/benchmarks.md, "Operator at scale")."""

    @field_validator("prometheus_address")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"prometheus_address must be an http(s) URL, not {value!r}")
        return value.rstrip("/")

    @field_validator("devices", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """Each given class's fields over that class's defaults; absent classes keep theirs."""
        if not isinstance(value, Mapping):
            return value
        merged: dict[Any, Any] = {
            c: d.model_dump(by_alias=True) for c, d in DEFAULT_DEVICES.items()
        }
        for name, given in value.items():
            key = DeviceClass(name) if name in {c.value for c in DeviceClass} else name
            if isinstance(given, DeviceSettings):
                merged[key] = given
            elif isinstance(given, Mapping):
                merged[key] = {**merged.get(key, {}), **given}
            else:
                merged[key] = given
        return merged

    def image(self, name: str) -> str:
        """The image of ``runtime-images/<name>``."""
        images = {
            "cpu": self.image_cpu,
            "mindspore": self.image_mindspore,
            "nvidia": self.image_nvidia,
            "ascend": self.image_ascend,
            "edge": self.image_edge,
        }
        return images[name]

    def conversion_image(self, target: ArtifactFormat) -> str:
        """The image with the tool that makes ``target`` (MindSpore, ATC, trtexec, ...)."""
        return self.image(CONVERSION_IMAGE[target])

    def server_image(self, device_class: DeviceClass, backend: BackendName) -> str:
        """The image with ``backend`` for ``device_class``: the class's own, else the tool's."""
        own = self.devices[device_class].images.get(backend)
        if own:
            return own
        if backend is BackendName.ONNXRUNTIME:
            return self.image("nvidia" if device_class is DeviceClass.NVIDIA else "cpu")
        return self.image(SERVER_IMAGE[backend])

    def avoided_labels(self, device_class: DeviceClass) -> list[str]:
        """Label keys of nodes the class's pods keep off: its ``avoid_labels``, and for cpu
        every label another class is recognised or selected by."""
        keys = list(self.devices[device_class].avoid_labels)
        if device_class is DeviceClass.CPU:
            for other, device in self.devices.items():
                if other is not DeviceClass.CPU:
                    keys += [device.product_label, *device.node_selector]
        return [k for k in dict.fromkeys(keys) if k]


CONVERSION_IMAGE: dict[ArtifactFormat, str] = {
    ArtifactFormat.ONNX: "mindspore",
    ArtifactFormat.MINDIR: "mindspore",
    ArtifactFormat.AIR: "mindspore",
    ArtifactFormat.OM: "ascend",
    ArtifactFormat.TENSORRT: "nvidia",
    ArtifactFormat.MS: "edge",
}
"""Image per conversion target; checkpoint sources need MindSpore there too (export first)."""

SERVER_IMAGE: dict[BackendName, str] = {
    BackendName.MINDSPORE: "mindspore",
    BackendName.TENSORRT: "nvidia",
    BackendName.ACL: "ascend",
    BackendName.MSLITE: "edge",
}
