# SPDX-License-Identifier: Apache-2.0
"""THE API: ``InferenceModel`` in ``inferplane.io/v1alpha1``, as pydantic models.

These models are the single definition of the resource. ``api.crd`` turns them into the
CustomResourceDefinition (the docstring under each field becomes its ``kubectl explain`` text, the
``RULES`` below become ``x-kubernetes-validations``), the operator validates ``spec`` with
them, and ``inferplane run`` loads a manifest with ``InferenceModel.load``. Each cross-field rule
is written twice, once as CEL for the API server and once in Python for the local mode; the tests
check both reject the same manifests.

Field names are snake_case in Python and camelCase on the wire (``populate_by_name``); dump with
``to_wire()`` (or ``model_dump(by_alias=True, exclude_none=True, mode="json")``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.devices import PREFERENCE, ArtifactFormat, DeviceClass

GROUP = "inferplane.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceModel"
PLURAL = "inferencemodels"
SINGULAR = "inferencemodel"
SHORT_NAMES = ("im",)

AUTO: Literal["auto"] = "auto"

SOURCE_FORMATS: tuple[ArtifactFormat, ...] = (
    ArtifactFormat.MINDSPORE_CHECKPOINT,
    ArtifactFormat.MINDIR,
    ArtifactFormat.ONNX,
    ArtifactFormat.AIR,
)
"""The formats a source may have; the other ``ArtifactFormat`` values are conversion targets."""

URI_SCHEMES = ("s3", "pvc", "http", "https", "file")
URI_PATTERN = r"^((s3|pvc|https?|file)://[^\s]+|[^\s:]+)$"
"""A URI with a supported scheme, or a plain path (no scheme, no spaces)."""
NETWORK_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"
PRODUCT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$"

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"'{value}' is not a resource quantity (e.g. 2, 500m, 4Gi)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
"""A Kubernetes resource quantity (``2``, ``500m``, ``4Gi``)."""


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python, field docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


class Precision(enum.StrEnum):
    """Numeric precision of a converted artifact."""

    FP32 = "fp32"
    FP16 = "fp16"


class ScalingMetric(enum.StrEnum):
    """The signal each pool's autoscaler (KEDA ScaledObject or HorizontalPodAutoscaler) follows."""

    CPU = "cpu"
    """Average CPU utilisation, in percent of the pods' CPU request."""
    INFLIGHT = "inflight"
    """Average number of requests in flight per pod (``inferplane_in_flight_requests``)."""


class Phase(enum.StrEnum):
    """Where an InferenceModel is in its life."""

    PENDING = "Pending"
    CONVERTING = "Converting"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class DeviceRequest(enum.StrEnum):
    """How a pool's server pods get their device."""

    DEVICE_PLUGIN = "DevicePlugin"
    """An extended resource (``nvidia.com/gpu``) in the container's limits."""
    DRA = "DRA"
    """A ResourceClaim from the pool's ResourceClaimTemplate (Dynamic Resource Allocation)."""


class ConditionType(enum.StrEnum):
    """The conditions the operator reports."""

    CONVERTED = "Converted"
    VERIFIED = "Verified"
    READY = "Ready"
    SCALING_SIGNAL_UNAVAILABLE = "ScalingSignalUnavailable"
    """metric inflight: True while the pools scale on CPU because the cluster serves neither KEDA
    nor custom.metrics.k8s.io."""
    SOURCE_IMAGE_PINNED = "SourceImagePinned"
    """Only with ``source.image``: False while it is a tag (mutable), True when pinned by digest."""


# --- spec -----------------------------------------------------------------------------------------


class ModelSource(_Wire):
    """The trained model to serve and how to read it."""

    uri: str = Field(min_length=1, max_length=2048, pattern=URI_PATTERN)
    """Where the model is: s3://bucket/key, pvc://claim/path, http(s)://..., file://path or a plain
    path (``inferplane run`` resolves relative paths against the manifest's directory)."""
    format: Annotated[
        ArtifactFormat,
        WithJsonSchema({"type": "string", "enum": [f.value for f in SOURCE_FORMATS]}),
    ]
    """The source's format: mindspore-checkpoint (weights only: needs network and inputs), mindir,
    onnx or air."""
    network: str | None = Field(default=None, max_length=253, pattern=NETWORK_PATTERN)
    """Python entry point ``module:callable`` that returns the MindSpore nn.Cell the checkpoint's
    weights belong to. Required for mindspore-checkpoint sources."""
    image: str | None = Field(default=None, min_length=1, max_length=512)
    """Container image that holds the network's code (cluster only); conversion pods copy it in.
    Pin it by digest (image@sha256:...): the artifact key names the image by this reference."""
    inputs: list[TensorSpec] = Field(default_factory=list, max_length=32)
    """Input signature: name, V2 datatype and shape (-1 for a dynamic dimension). Required for
    mindspore-checkpoint sources; read from the file for the others."""
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    """Expected sha256 digest (lowercase hex) of the source file; a mismatch fails the model."""

    @field_validator("inputs")
    @classmethod
    def _unique_inputs(cls, value: list[TensorSpec]) -> list[TensorSpec]:
        names = [t.name for t in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"input names must be unique: {', '.join(twice)} given more than once")
        return value

    @field_validator("format")
    @classmethod
    def _source_format(cls, value: ArtifactFormat) -> ArtifactFormat:
        if value not in SOURCE_FORMATS:
            names = ", ".join(f.value for f in SOURCE_FORMATS)
            raise ValueError(
                f"'{value.value}' is a conversion target, not a source (one of {names})"
            )
        return value


class ResourceRequirements(_Wire):
    """Compute resources of the server containers, as in a Pod's ``resources``."""

    limits: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Maximum resources per container (e.g. cpu: 2, memory: 4Gi, nvidia.com/gpu: 1)."""
    requests: dict[str, Quantity] | None = Field(default=None, max_length=16)
    """Resources each container is guaranteed (the scheduler places pods by these)."""


class DeviceOptions(_Wire):
    """Per-device-class conversion and serving options."""

    precision: Precision | None = None
    """Precision to convert to (fp32 or fp16); default fp32."""
    products: list[Annotated[str, Field(max_length=63, pattern=PRODUCT_PATTERN)]] | None = Field(
        default=None, max_length=16
    )
    """GPU products (e.g. A100-SXM4-40GB) or Ascend SoC versions (e.g. Ascend310P3) to build
    for; default every one present in the cluster. Any spelling is accepted (DRA's
    'NVIDIA A100-SXM4-40GB', GPU feature discovery's 'NVIDIA-A100-SXM4-40GB', npu-smi's
    '310P3'); the status shows the canonical one. nvidia and ascend310 only: a TensorRT engine
    or an OM file runs only on the product it was built for."""
    min_memory: Quantity | None = None
    """Least device memory (e.g. 24Gi): on nodes offering devices through DRA, the claim's
    selector asks for a device with at least this memory capacity."""
    resources: ResourceRequirements | None = None
    """Overrides of the server containers' resources for this class."""


class DeviceOptionsByClass(_Wire):
    """Options per device class; classes left out use the defaults."""

    ascend910: DeviceOptions | None = None
    """Options for Ascend 910 NPUs (MindIR on MindSpore)."""
    ascend310: DeviceOptions | None = None
    """Options for Ascend 310/310P NPUs (OM files built by ATC per SoC version)."""
    nvidia: DeviceOptions | None = None
    """Options for NVIDIA GPUs (TensorRT engines per GPU product, ONNX Runtime as fallback)."""
    cpu: DeviceOptions | None = None
    """Options for plain CPU nodes (ONNX Runtime)."""
    edge: DeviceOptions | None = None
    """Options for edge nodes (MindSpore Lite .ms files)."""

    def get(self, device_class: DeviceClass) -> DeviceOptions:
        """The options of one class, or the defaults when the manifest gives none."""
        options = getattr(self, device_class.value)
        return options if options is not None else DeviceOptions()


class Replicas(_Wire):
    """How many server pods each device pool runs, and the signal that scales them."""

    min: int = Field(default=1, ge=1, le=1000)
    """Fewest pods per pool (the scale subresource sets this)."""
    max: int = Field(default=1, ge=1, le=1000)
    """Most pods per pool; equal to min turns autoscaling off."""
    metric: ScalingMetric = ScalingMetric.CPU
    """Scaling signal: cpu (utilisation, percent of request) or inflight (requests in flight per
    pod, the server's inferplane_in_flight_requests gauge)."""
    target: int | None = Field(default=None, ge=1, le=10000)
    """Target value of the metric: percent for cpu (default 70), requests per pod for inflight
    (default 8)."""

    @property
    def effective_target(self) -> int:
        """The target with the metric's default filled in."""
        if self.target is not None:
            return self.target
        return 70 if self.metric is ScalingMetric.CPU else 8


class Batching(_Wire):
    """Dynamic batching in the server: concurrent requests merged along the first dimension."""

    max_batch_size: int = Field(default=1, ge=1, le=1024)
    """Most rows merged into one model call; 1 turns batching off. Above 1, every input's first
    dimension must be dynamic (-1)."""
    max_delay_ms: float = Field(default=2.0, ge=0, le=1000)
    """Longest a request waits for others to fill a batch, in milliseconds."""


class VerificationSpec(_Wire):
    """How each converted artifact is checked against the source model."""

    samples: int = Field(default=8, ge=1, le=1024)
    """Random inputs on which converted and reference outputs are compared."""
    atol: float | None = Field(default=None, ge=0)
    """Absolute tolerance of the parity check (default by precision)."""
    rtol: float | None = Field(default=None, ge=0)
    """Relative tolerance of the parity check (default by precision)."""
    validation: str | None = Field(default=None, max_length=2048, pattern=URI_PATTERN)
    """Labelled validation set (.npz with arrays x and y), same URI forms as source.uri; when
    given, the converted model's accuracy must stay within maxAccuracyDrop of the source's."""
    max_accuracy_drop: float = Field(default=0.01, ge=0, le=1)
    """Largest accuracy loss (a fraction, 0.01 = one point) a conversion may cause."""


DeviceChoice = DeviceClass | Literal["auto"]


class InferenceModelSpec(_Wire):
    """The desired state: a trained model, the devices to serve it on, and how to scale it."""

    source: ModelSource
    """The trained model."""
    devices: list[DeviceChoice] = Field(
        default_factory=lambda: list[DeviceChoice]([AUTO]),
        min_length=1,
        max_length=5,
        json_schema_extra={"default": [AUTO]},
    )
    """Device classes in order of preference (ascend910, ascend310, nvidia, cpu, edge), or [auto]:
    every class the cluster has, best first. A class without capacity falls back to the next."""
    device_options: DeviceOptionsByClass = Field(default_factory=DeviceOptionsByClass)
    """Per-class options: precision, products / SoC versions, resources."""
    replicas: Replicas = Field(default_factory=Replicas)
    """Server pods per device pool and the autoscaling signal."""
    batching: Batching = Field(default_factory=Batching)
    """Dynamic batching in the server."""
    verification: VerificationSpec = Field(default_factory=VerificationSpec)
    """Parity tolerances and the accuracy check of every conversion."""

    @model_validator(mode="after")
    def _rules(self) -> InferenceModelSpec:
        problems = [f"{rule.path}: {rule.message}" for rule in RULES if not rule.check(self)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def device_classes(self) -> list[DeviceClass]:
        """The preference as device classes: ``[auto]`` expands to every class, best first."""
        if AUTO in self.devices:
            return list(PREFERENCE)
        return [DeviceClass(d) for d in self.devices]

    @field_validator("devices", mode="before")
    @classmethod
    def _known(cls, devices: Any) -> Any:
        if isinstance(devices, list):
            names = [AUTO, *(c.value for c in DeviceClass)]
            for index, device in enumerate(devices):
                if device not in names:
                    raise ValueError(
                        f"[{index}] '{device}' is not a device class (one of {', '.join(names)})"
                    )
        return devices

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices: list[DeviceChoice]) -> list[DeviceChoice]:
        if len(set(devices)) != len(devices):
            raise ValueError("each device class may appear once")
        return devices

    @property
    def auto(self) -> bool:
        """True when the user left the choice of devices to the cluster."""
        return AUTO in self.devices


@dataclass(frozen=True)
class Rule:
    """One cross-field rule, as CEL for the API server and as Python for the local mode."""

    at: str
    """Schema path the CEL rule is attached to (``spec`` or below)."""
    field: str
    """The field it reports, relative to ``at`` (CEL ``fieldPath``), or "" for ``at`` itself."""
    cel: str
    check: Callable[[InferenceModelSpec], bool]
    message: str

    @property
    def path(self) -> str:
        """The field named in errors, e.g. ``spec.replicas.min``."""
        return self.at + self.field


def _pvc_uri_ok(uri: str | None) -> bool:
    return uri is None or not uri.startswith("pvc://") or bool(re.match(r"^pvc://[^/]+/.+", uri))


def _checkpoint_complete(spec: InferenceModelSpec) -> bool:
    source = spec.source
    if source.format is not ArtifactFormat.MINDSPORE_CHECKPOINT:
        return True
    return source.network is not None and bool(source.inputs)


RULES: tuple[Rule, ...] = (
    Rule(
        "spec",
        ".source",
        "self.source.format != 'mindspore-checkpoint' || (has(self.source.network) && "
        "has(self.source.inputs) && size(self.source.inputs) > 0)",
        _checkpoint_complete,
        "a mindspore-checkpoint source needs network (module:callable) and inputs",
    ),
    Rule(
        "spec",
        ".devices",
        "!has(self.devices) || !('auto' in self.devices) || size(self.devices) == 1",
        lambda s: AUTO not in s.devices or len(s.devices) == 1,
        "'auto' must be the only entry",
    ),
    Rule(
        "spec",
        ".devices",
        "self.source.format != 'air' || !has(self.devices) || 'auto' in self.devices || "
        "'ascend310' in self.devices",
        lambda s: (
            s.source.format is not ArtifactFormat.AIR
            or AUTO in s.devices
            or DeviceClass.ASCEND310 in s.devices
        ),
        "an air source converts only to OM: devices must include ascend310 (or be [auto])",
    ),
    Rule(
        "spec",
        ".batching.maxBatchSize",
        "!has(self.batching) || !has(self.batching.maxBatchSize) || "
        "self.batching.maxBatchSize == 1 || !has(self.source.inputs) || "
        "self.source.inputs.all(i, size(i.shape) > 0 && i.shape[0] == -1)",
        lambda s: s.batching.max_batch_size == 1 or all(i.dynamic_batch for i in s.source.inputs),
        "batching above 1 needs every input's first dimension dynamic (-1)",
    ),
    Rule(
        "spec.replicas",
        ".min",
        "!has(self.min) || !has(self.max) || self.min <= self.max",
        lambda s: s.replicas.min <= s.replicas.max,
        "min must not exceed max",
    ),
    Rule(
        "spec.replicas",
        ".target",
        "(has(self.metric) && self.metric != 'cpu') || !has(self.target) || self.target <= 100",
        lambda s: (
            s.replicas.metric is not ScalingMetric.CPU
            or s.replicas.target is None
            or s.replicas.target <= 100
        ),
        "a cpu target is a utilisation percentage (1-100)",
    ),
    Rule(
        "spec.source",
        ".uri",
        "!self.uri.startsWith('pvc://') || self.uri.matches('^pvc://[^/]+/.+')",
        lambda s: _pvc_uri_ok(s.source.uri),
        "a pvc:// URI needs a claim and a path (pvc://claim/path)",
    ),
    Rule(
        "spec.verification",
        ".validation",
        "!has(self.validation) || !self.validation.startsWith('pvc://') || "
        "self.validation.matches('^pvc://[^/]+/.+')",
        lambda s: _pvc_uri_ok(s.verification.validation),
        "a pvc:// URI needs a claim and a path (pvc://claim/path)",
    ),
    Rule(
        "spec.deviceOptions",
        "",
        "(!has(self.ascend910) || !has(self.ascend910.products)) && "
        "(!has(self.cpu) || !has(self.cpu.products)) && "
        "(!has(self.edge) || !has(self.edge.products))",
        lambda s: all(
            s.device_options.get(c).products is None
            for c in (DeviceClass.ASCEND910, DeviceClass.CPU, DeviceClass.EDGE)
        ),
        "products apply to nvidia and ascend310 only",
    ),
)
"""Cross-field rules; ``api.crd`` attaches the CEL as ``x-kubernetes-validations``. Uniqueness of
``devices`` is ``x-kubernetes-list-type: set`` in the schema (and a Python check below)."""


# --- status ---------------------------------------------------------------------------------------


class Condition(_Wire):
    """A condition in the Kubernetes style (metav1.Condition)."""

    type: ConditionType
    """Converted, Verified, Ready or (metric inflight) ScalingSignalUnavailable."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """One CamelCase word for machines (e.g. ConversionFailed)."""
    message: str = Field(default="", max_length=32768)
    """What happened, for people."""
    last_transition_time: datetime | None = None
    """When status last changed."""
    observed_generation: int | None = None
    """The spec generation this condition describes."""


class TargetVerification(_Wire):
    """How closely a converted artifact matches its reference."""

    verified: bool = False
    """True when the parity (and accuracy) checks ran and passed."""
    reason: str | None = None
    """Why it is not verified, or what failed."""
    max_abs_error: float | None = None
    """Largest absolute difference between converted and reference outputs."""
    max_rel_error: float | None = None
    """Largest relative difference between converted and reference outputs."""
    accuracy: float | None = None
    """Accuracy of the converted model on the validation set."""
    reference_accuracy: float | None = None
    """Accuracy of the source model on the same validation set."""


class AllocatedDevice(_Wire):
    """A device the scheduler allocated to one server pod through DRA."""

    pod: str
    """The server pod."""
    node: str | None = None
    """The node it runs on."""
    driver: str
    """The DRA driver that published the device (e.g. gpu.nvidia.com)."""
    pool: str
    """The driver's pool of devices (one per node for node-local drivers)."""
    device: str
    """The device's name in its ResourceSlice (e.g. gpu-0)."""


class TargetStatus(_Wire):
    """One device target: its artifact, its check, its server pool."""

    device_class: DeviceClass
    """The device class served."""
    product: str | None = None
    """GPU product or Ascend SoC version, for artifacts tied to one."""
    format: ArtifactFormat
    """The artifact format served."""
    backend: str
    """The serving backend (onnxruntime, mindspore, tensorrt, acl, mslite)."""
    reason: str | None = None
    """Why this target was chosen (e.g. the fallback from an absent class)."""
    key: str | None = None
    """Artifact key in the content-addressed store."""
    artifact: str | None = None
    """URI of the artifact directory in the store."""
    job: str | None = None
    """The conversion Job (shared by every model with the same source and target)."""
    message: str | None = None
    """What went wrong, when phase is Failed."""
    sha256: str | None = None
    """sha256 of the artifact's model file."""
    verification: TargetVerification | None = None
    """Parity and accuracy of the conversion."""
    replicas: int = 0
    """Server pods of this pool."""
    ready_replicas: int = 0
    """Server pods of this pool that are ready."""
    phase: str | None = None
    """Converting, Deploying, Ready, Failed, or Retained (a pool no longer planned that keeps
    serving: its class is cordoned or NotReady, its class's nodes are gone for less than the
    operator's grace, or the pools replacing it are not ready yet)."""
    device_request: DeviceRequest | None = None
    """How the pool's pods get their device: DevicePlugin (an extended resource) or DRA (a
    ResourceClaim); absent for cpu and edge."""
    allocated: list[AllocatedDevice] = Field(default_factory=list, max_length=1000)
    """DRA: the device allocated to each ready pod (from its ResourceClaim's status)."""
    class_gone_since: datetime | None = None
    """Retained: when the operator first saw no node of the pool's class (and product) left;
    the pool is removed the operator's class-gone grace after this unless its nodes return."""


class FailedConversion(_Wire):
    """A conversion that failed: not tried again until the spec changes or the annotation
    ``inferplane.io/retry`` gets a new value."""

    job: str
    """The conversion Job that failed (its name is the conversion's identity)."""
    target: str
    """The device target, e.g. nvidia/T4."""
    format: ArtifactFormat
    """The artifact format it was to make."""
    key: str | None = None
    """The artifact key it was to write (when the operator can compute it: source.sha256 given)."""
    message: str = Field(default="", max_length=4096)
    """The failure, as the conversion reported it."""


class InferenceModelStatus(_Wire):
    """The observed state, written by the operator."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    """Pending, Converting, Deploying, Ready, Degraded (some targets failed) or Failed."""
    conditions: list[Condition] = Field(default_factory=list)
    """Converted, Verified and Ready (and ScalingSignalUnavailable for metric inflight), with
    reasons and messages."""
    observed_generation: int | None = None
    """The spec generation the status describes."""
    targets: list[TargetStatus] = Field(default_factory=list)
    """Per device target: artifact, verification, replicas."""
    failed_conversions: list[FailedConversion] = Field(default_factory=list)
    """Conversions that failed for the current spec (and retry annotation): not retried."""
    devices: str | None = None
    """Summary of the device targets served, e.g. nvidia/A100-SXM4-40GB,cpu."""
    replicas: int = 0
    """Server pods in all pools (the scale subresource reads this)."""
    ready_replicas: int = 0
    """Ready server pods in all pools."""
    selector: str | None = None
    """Label selector of the server pods (the scale subresource reads this)."""
    url: str | None = None
    """In-cluster endpoint of the V2 REST API (the Service spanning all pools)."""


# --- the resource ---------------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The part of Kubernetes ObjectMeta inferplane reads; everything else passes through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    )
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    generation: int | None = None


class InferenceModel(BaseModel):
    """An InferenceModel: one trained model, converted, verified and served on every device class
    it is asked for."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    api_version: Literal["inferplane.io/v1alpha1"] = Field(
        default="inferplane.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["InferenceModel"] = "InferenceModel"
    metadata: ObjectMeta
    spec: InferenceModelSpec
    status: InferenceModelStatus | None = None

    def to_wire(self) -> dict[str, Any]:
        """The manifest as Kubernetes JSON (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "manifest") -> InferenceModel:
        """Validate a parsed manifest; every problem is a SpecError naming the field."""
        if not isinstance(data, dict):
            raise errors.SpecError(f"{origin}: expected a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise errors.SpecError(f"{origin}: {describe(exc)}") from None

    @classmethod
    def from_yaml(cls, text: str, *, origin: str = "manifest") -> InferenceModel:
        """Parse one InferenceModel from YAML text (a multi-document file must hold exactly one)."""
        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise errors.SpecError(f"{origin}: not valid YAML: {exc}") from None
        models = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
        if len(documents) == 1:
            return cls.from_dict(documents[0], origin=origin)
        if len(models) != 1:
            raise errors.SpecError(
                f"{origin}: expected one {KIND} document, found {len(models)} "
                f"among {len(documents)} documents"
            )
        return cls.from_dict(models[0], origin=origin)

    @classmethod
    def load(cls, path: str | Path) -> InferenceModel:
        """Read and validate a manifest file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise errors.SpecError(f"{path}: cannot read: {exc.strerror}") from None
        return cls.from_yaml(text, origin=str(path))


def validate_spec(spec: Any) -> InferenceModelSpec:
    """Validate a ``spec`` mapping (as the operator receives it); problems are SpecErrors."""
    try:
        return InferenceModelSpec.model_validate(spec)
    except ValidationError as exc:
        raise errors.SpecError(describe(exc, prefix="spec")) from None


_PATTERN_HINTS = {
    URI_PATTERN: "must be s3://, pvc://, http(s)://, file:// or a plain path",
    NETWORK_PATTERN: "must be a Python entry point module:callable",
    SHA256_PATTERN: "must be 64 lowercase hex digits",
    PRODUCT_PATTERN: "must be a product or SoC name (letters, digits, '-', '_', '.', ' ')",
}


def describe(exc: ValidationError, *, prefix: str = "") -> str:
    """A ValidationError as ``field.path: message`` parts joined by '; ', with wire names."""
    parts = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch":
            hint = _PATTERN_HINTS.get(str(error.get("ctx", {}).get("pattern")), message)
            message = f"{hint}, got {error['input']!r}"
        elif error["type"] in ("enum", "literal_error"):
            message = f"{message}, got {error['input']!r}"
        if message.startswith("spec"):
            parts.append(message)  # a cross-field rule: it names its own fields
            continue
        loc = [prefix] if prefix else []
        for item in error["loc"]:
            if isinstance(item, int):
                loc[-1:] = [f"{loc[-1]}[{item}]"] if loc else [f"[{item}]"]
            elif not str(item).startswith(("function-", "json-or-python", "lax-or-strict")):
                loc.append(str(item))
        where = ".".join(loc)
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
