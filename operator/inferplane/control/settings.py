# SPDX-License-Identifier: Apache-2.0
"""The operator's configuration: environment variables with the ``INFERPLANE_`` prefix.

Built once at start-up (``OperatorSettings()``) and passed to the planner and builders; nothing
reads the environment later. Mappings and lists are JSON in the environment, e.g.
``INFERPLANE_CONVERSION_LABELS='{"team": "ml"}'``. The Helm chart sets these names.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferplane import __version__
from inferplane.devices import ArtifactFormat, BackendName, DeviceClass

DEFAULT_REGISTRY = "ghcr.io/inferplane"


class OperatorSettings(BaseSettings):
    """Everything the operator needs besides the InferenceModel itself."""

    model_config = SettingsConfigDict(env_prefix="INFERPLANE_", extra="ignore", frozen=True)

    # --- images --------------------------------------------------------------------------------
    image_cpu: str = f"{DEFAULT_REGISTRY}/cpu:{__version__}"
    """Server image for ONNX Runtime on CPU (runtime-images/cpu)."""
    image_mindspore: str = f"{DEFAULT_REGISTRY}/mindspore:{__version__}"
    """MindSpore image: checkpoint export (ONNX, MindIR, AIR) and the mindspore backend."""
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
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...); given to conversion and fetch containers."""
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
    server_resources: dict[str, Any] = Field(
        default_factory=lambda: {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        }
    )
    """Default resources of server containers; the device resource is added per class and
    spec.deviceOptions.<class>.resources overrides."""
    runtime_classes: dict[str, str] = Field(default_factory=lambda: {"nvidia": "nvidia"})
    """runtimeClassName per device class (the GPU operator creates RuntimeClass nvidia)."""
    cluster_domain: str = "cluster.local"
    """DNS domain of the cluster, for status.url."""

    # --- watching ------------------------------------------------------------------------------
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch; empty means the whole cluster."""
    peering: str = "inferplane"
    """kopf peering object: of several operator replicas, one is active."""
    priority: int | None = None
    """Peering priority of this replica (highest is active); default random per start, since
    replicas with equal priorities would all pause."""
    log_level: str = "info"
    """Log level of the operator (debug, info, warning, error)."""

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
        """The image with ``backend`` for ``device_class``."""
        if backend is BackendName.ONNXRUNTIME:
            return self.image("nvidia" if device_class is DeviceClass.NVIDIA else "cpu")
        return self.image(SERVER_IMAGE[backend])


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
