# SPDX-License-Identifier: Apache-2.0
"""The pure centre: spec + inventory (+ what exists) → targets, conversions, pools and status.

``choose_targets(spec, inventory)`` decides which device targets serve a model, best first, and
why; the local mode calls it directly. ``plan(...)`` builds on it for the operator: a conversion
Job per target whose artifact is not known yet, a server pool (Deployment, Services, HPA, PDB)
per target whose artifact is, the children to delete, the status and the Events to post.

Choosing targets:

- ``devices: [auto]``: every class the cluster has capacity for, best first (``PREFERENCE``).
- an explicit list is an ordered preference: the first class with capacity serves; each class
  passed over is named in the target's ``reason`` (the fallback).
- a TensorRT engine is built per GPU product present, an OM file per Ascend SoC version present
  (both run only where they were built); ``deviceOptions.<class>.products`` narrows that list.
- a class the source cannot be converted for (e.g. ascend910 needs MindIR, which an ONNX file
  cannot become) is passed over with that reason.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from inferplane import errors, products
from inferplane.api import v1alpha1
from inferplane.artifacts.key import TargetOptions, artifact_key, checkpoint_graph
from inferplane.control import builders, naming
from inferplane.control import scaling as scaling_mod
from inferplane.control import status as status_mod
from inferplane.control.inventory import DevicePool, Devices, DraOffer, Inventory, Taint, merge
from inferplane.control.observed import Artifact, JobPhase, Observed
from inferplane.control.settings import DEFAULT_DEVICES, OperatorSettings
from inferplane.devices import PROFILES, ArtifactFormat, BackendName, DeviceClass

Manifest = dict[str, Any]

CONVERTIBLE: dict[ArtifactFormat, frozenset[ArtifactFormat]] = {
    ArtifactFormat.MINDSPORE_CHECKPOINT: frozenset(
        {
            ArtifactFormat.ONNX,
            ArtifactFormat.MINDIR,
            ArtifactFormat.AIR,
            ArtifactFormat.OM,
            ArtifactFormat.TENSORRT,
            ArtifactFormat.MS,
        }
    ),
    ArtifactFormat.MINDIR: frozenset({ArtifactFormat.MINDIR, ArtifactFormat.MS}),
    ArtifactFormat.ONNX: frozenset(
        {ArtifactFormat.ONNX, ArtifactFormat.OM, ArtifactFormat.TENSORRT, ArtifactFormat.MS}
    ),
    ArtifactFormat.AIR: frozenset({ArtifactFormat.OM}),
}
"""Which artifact formats each source format can become (MindSpore export, ATC, trtexec,
converter_lite; MindIR cannot become ONNX, and ONNX cannot become MindIR)."""

PER_PRODUCT = (DeviceClass.NVIDIA, DeviceClass.ASCEND310)
"""Classes whose artifacts are built for one product and run only there."""


@dataclass(frozen=True)
class Target:
    """One device target to serve: class (and product), the artifact to make, the backend."""

    device_class: DeviceClass
    product: str | None
    format: ArtifactFormat
    backend: BackendName
    reason: str
    precision: str = "fp32"
    resource: str | None = None
    """The extended resource a server pod requests (None for cpu/edge)."""
    selector: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    dra: DraOffer | None = None
    """Devices claimed through DRA (a ResourceClaimTemplate per pool) instead of ``resource``."""
    any_of: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Node labels whose value must be one of these (a product spelled two ways)."""

    @property
    def label(self) -> str:
        """``nvidia/T4``, ``cpu``: how status.devices names the target."""
        return f"{self.device_class}/{self.product}" if self.product else str(self.device_class)

    @property
    def key(self) -> str:
        """What tells targets apart: the label, and ``+dra`` for a pool claiming through DRA
        (a product offered both ways has a pool of each kind)."""
        return f"{self.label}+dra" if self.dra is not None else self.label

    @property
    def request(self) -> v1alpha1.DeviceRequest | None:
        """How its server pods get their device (None for cpu and edge)."""
        if self.dra is not None:
            return v1alpha1.DeviceRequest.DRA
        return v1alpha1.DeviceRequest.DEVICE_PLUGIN if self.resource else None


def _format_for(device_class: DeviceClass, source: ArtifactFormat) -> ArtifactFormat | None:
    """The best artifact format of the class the source can become."""
    for fmt in PROFILES[device_class].artifacts:
        if fmt in CONVERTIBLE[source]:
            return fmt
    return None


def _target(
    pools: Sequence[DevicePool],
    device_class: DeviceClass,
    product: str | None,
    fmt: ArtifactFormat,
    backend: BackendName,
    why: str,
    precision: str,
) -> Target:
    """The target serving ``pools`` (one kind of offer: device plugin or DRA)."""
    pool = merge(pools)
    return Target(
        device_class, product, fmt, backend, why, precision, pool.resource, pool.selector,
        pool.taints, pool.dra, pool.any_of,
    )  # fmt: skip


def _by_kind(pools: Sequence[DevicePool]) -> list[list[DevicePool]]:
    """Pools split by how they offer devices, DRA first (a server pod requests a device one
    way or the other, so each kind is a pool of its own; the two share one conversion, whose
    Job — with its one ResourceClaimTemplate — the first kind places)."""
    kinds = [[p for p in pools if p.dra is not None], [p for p in pools if p.dra is None]]
    return [k for k in kinds if k]


def _targets_of_class(
    spec: v1alpha1.InferenceModelSpec,
    inventory: Inventory,
    device_class: DeviceClass,
    why: str,
    devices: Devices,
) -> tuple[list[Target], str | None]:
    """The targets of one class, or none and the reason it cannot serve."""
    profile = PROFILES[device_class]
    pools = inventory.pools_of(device_class)
    if not pools:
        names = devices[device_class].resource_names
        offered = f"no node offers {names[0]}" if names else "no node"
        return [], f"{device_class} has no capacity ({offered})"
    fmt = _format_for(device_class, spec.source.format)
    if fmt is None:
        wanted = " or ".join(f.value for f in profile.artifacts)
        return (
            [],
            f"{device_class} needs {wanted}, which a {spec.source.format} source cannot become",
        )
    options = spec.device_options.get(device_class)
    precision = (options.precision or v1alpha1.Precision.FP32).value
    backend = profile.backends[profile.artifacts.index(fmt)]
    if device_class not in PER_PRODUCT:
        return [
            _target(kind, device_class, None, fmt, backend, why, precision)
            for kind in _by_kind(pools)
        ], None
    present = inventory.products(device_class)
    wanted_products = options.products or present
    chosen = [p for p in present if any(products.same(p, w) for w in wanted_products)]
    if not chosen:
        return [], (
            f"{device_class}: none of the products {', '.join(wanted_products)} is present "
            f"(the cluster has {', '.join(present) or 'none'})"
        )
    targets = []
    for product in chosen:
        for kind in _by_kind([p for p in pools if p.product == product]):
            targets.append(_target(kind, device_class, product, fmt, backend, why, precision))
    return targets, None


def choose(
    spec: v1alpha1.InferenceModelSpec, inventory: Inventory, devices: Devices = DEFAULT_DEVICES
) -> tuple[list[Target], list[str]]:
    """Targets best first, and the reasons each class passed over was passed over (naming the
    resources ``devices``, the settings' table the inventory was built with, looks for)."""
    skipped: list[str] = []
    if spec.auto:
        targets: list[Target] = []
        for device_class in spec.device_classes():
            if not inventory.pools_of(device_class):
                continue
            found, why_not = _targets_of_class(
                spec, inventory, device_class, "auto: present", devices
            )
            targets += found
            if why_not:
                skipped.append(why_not)
        return targets, skipped
    for device_class in spec.device_classes():
        reason = (
            f"preferred {device_class}"
            if not skipped
            else f"fallback to {device_class}: " + "; ".join(skipped)
        )
        found, why_not = _targets_of_class(spec, inventory, device_class, reason, devices)
        if found:
            return found, skipped
        if why_not:
            skipped.append(why_not)
    return [], skipped


def choose_targets(
    spec: v1alpha1.InferenceModelSpec, inventory: Inventory, devices: Devices = DEFAULT_DEVICES
) -> list[Target]:
    """The device targets to serve, best first; PlanError when none can (saying why)."""
    targets, skipped = choose(spec, inventory, devices)
    if not targets:
        why = "; ".join(skipped) or "the cluster offers no device class"
        raise errors.PlanError(f"no device can serve this model: {why}")
    return targets


def batch_profile(
    spec: v1alpha1.InferenceModelSpec, fmt: ArtifactFormat
) -> tuple[int, int, int] | None:
    """min, opt, max batch for formats with a fixed shape profile (TensorRT, OM): up to the
    server's batch size, and at least 8 (clients may send batches of their own)."""
    if fmt not in (ArtifactFormat.TENSORRT, ArtifactFormat.OM):
        return None
    size = spec.batching.max_batch_size
    return (1, max(size, 8), max(size, 32))


def target_options(spec: v1alpha1.InferenceModelSpec, target: Target) -> TargetOptions:
    """The options a target is converted with, as the spec decides them (a checkpoint's network
    code named by ``source.image``); ``cluster_options`` adds the converting tool."""
    source = spec.source
    return TargetOptions(
        format=target.format,
        device_class=target.device_class,
        product=target.product,
        precision=target.precision,
        batch=batch_profile(spec, target.format),
        **checkpoint_graph(source.format, source.network, source.inputs, source.image or ""),
    )


def cluster_options(
    spec: v1alpha1.InferenceModelSpec, target: Target, settings: OperatorSettings
) -> TargetOptions:
    """A target's options in the cluster: the converting tool is the conversion image (a new
    image, e.g. another TensorRT, converts again)."""
    options = target_options(spec, target)
    return dataclasses.replace(options, tool=settings.conversion_image(target.format))


def conversion_id(
    spec: v1alpha1.InferenceModelSpec, options: TargetOptions, retry: str = ""
) -> str:
    """Identity of one conversion: the source (digest if known, else URI) and every option the
    convert command gets. The same source and options → the same Job, across models too.
    ``retry``: the model's ``inferplane.io/retry`` annotation; a new value is a new conversion
    (a failed one is not tried again otherwise)."""
    source = spec.source
    identity: dict[str, Any] = {
        "source": source.sha256 or source.uri,
        "format": source.format.value,
        "network": source.network,
        "inputs": [str(i) for i in source.inputs],
        "image": source.image,
        "target": options.document(),
        "verification": spec.verification.model_dump(mode="json"),
    }
    if retry:
        identity["retry"] = retry
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return naming.digest(text, 16)


def assigned_key(
    spec: v1alpha1.InferenceModelSpec,
    options: TargetOptions,
    *,
    namespace: str,
    settings: OperatorSettings,
) -> str:
    """The store key the operator assigns a conversion: the Job's publish step writes exactly
    this key, and the operator serves only what it finds there itself (never a key a pod
    reports). Named by the source's digest when the spec gives it, else by its URI; prefixed by
    the namespace unless ``settings.share_artifacts`` and the digest is given (a URI, a pvc://
    claim above all, means something else in another namespace)."""
    source = spec.source
    key = artifact_key(source.sha256 or f"uri:{source.uri}", options)
    if settings.share_artifacts and source.sha256:
        return key
    return f"{namespace}.{key}"


# --- the operator's plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the InferenceModel."""

    type: str
    """Normal or Warning."""
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    apply: list[Manifest]
    """Objects to server-side apply, in order (Jobs, then Deployments, Services, HPAs, PDBs)."""
    delete: list[tuple[str, str, str]]
    """Owned children no longer wanted: (apiVersion, kind, name)."""
    status: Manifest
    """The new ``status`` (wire form)."""
    events: list[Event]
    targets: list[v1alpha1.TargetStatus]
    handover: list[Manifest] = field(default_factory=list)
    """Replica-only Deployment manifests to apply first, with ``naming.HANDOVER_MANAGER``: a pool
    turning autoscaled keeps its replica count while the operator stops setting it."""
    disown: list[tuple[str, list[Manifest]]] = field(default_factory=list)
    """Shared conversion Jobs this model no longer needs: (name, the other owners to keep)."""
    join: list[str] = field(default_factory=list)
    """Running conversion Jobs of other models this model waits on: it joins their owners."""
    recheck_s: float | None = None
    """Plan again after this many seconds even if nothing happens: a retained pool's
    class-gone grace ends then."""


@dataclass(frozen=True)
class Model:
    """The identity of the InferenceModel being planned."""

    name: str
    namespace: str
    uid: str
    generation: int = 1
    retry: str = ""
    """The ``inferplane.io/retry`` annotation: a new value retries failed conversions."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Model:
        meta = body["metadata"]
        retry = (meta.get("annotations") or {}).get(naming.RETRY_ANNOTATION, "")
        return cls(
            meta["name"], meta.get("namespace", "default"), meta["uid"],
            meta.get("generation", 1), retry,
        )  # fmt: skip

    def owner(self, *, controller: bool = True) -> Manifest:
        return naming.owner_reference(
            {"metadata": {"name": self.name, "uid": self.uid}}, controller=controller
        )


def _previous(status: v1alpha1.InferenceModelStatus | None) -> dict[str, v1alpha1.TargetStatus]:
    if status is None:
        return {}
    return {_status_key(t): t for t in status.targets}


def _status_key(status: v1alpha1.TargetStatus) -> str:
    """``Target.key`` of the target a status entry describes."""
    label = _label(status.device_class, status.product)
    return f"{label}+dra" if status.device_request is v1alpha1.DeviceRequest.DRA else label


def _label(device_class: DeviceClass, product: str | None) -> str:
    return f"{device_class}/{product}" if product else str(device_class)


def onnx_fallback(target: Target, message: str) -> Target:
    return dataclasses.replace(
        target,
        format=ArtifactFormat.ONNX,
        backend=BackendName.ONNXRUNTIME,
        reason=f"TensorRT engine failed "
        f"({message.splitlines()[-1] if message else 'no message'}); "
        "serving ONNX with ONNX Runtime",
    )


def job_of(
    spec: v1alpha1.InferenceModelSpec, target: Target, settings: OperatorSettings, retry: str = ""
) -> str:
    """The name of the conversion Job that makes ``target``'s artifact."""
    cid = conversion_id(spec, cluster_options(spec, target, settings), retry)
    return naming.job_name(cid, target.device_class, target.product)


def conversion_jobs(
    spec: v1alpha1.InferenceModelSpec,
    targets: Sequence[Target],
    settings: OperatorSettings,
    retry: str = "",
) -> list[str]:
    """The Jobs the targets use (a TensorRT target's ONNX fallback too): what to observe."""
    names = []
    for target in targets:
        candidates = [target]
        if target.format is ArtifactFormat.TENSORRT:
            candidates.append(onnx_fallback(target, ""))
        names += [job_of(spec, candidate, settings, retry) for candidate in candidates]
    return names


POOL_KINDS = (
    "Deployment", "Service", "HorizontalPodAutoscaler", "ScaledObject", "PodDisruptionBudget",
)  # fmt: skip
"""The kinds of a server pool's objects, all named after the pool."""
AUTOSCALER_KINDS = ("HorizontalPodAutoscaler", "ScaledObject")
"""What scales a pool: the operator's HPA, or a KEDA ScaledObject (whose HPA is KEDA's)."""


@dataclass
class _Work:
    """What planning one target produced."""

    status: v1alpha1.TargetStatus
    apply: list[Manifest] = field(default_factory=list)
    keep: list[tuple[str, str]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    """Conversion Jobs this target uses (or failed in): the ones not to clean up."""
    failures: list[v1alpha1.FailedConversion] = field(default_factory=list)
    handover: list[Manifest] = field(default_factory=list)
    join: list[str] = field(default_factory=list)


def _plan_target(
    target: Target,
    *,
    spec: v1alpha1.InferenceModelSpec,
    model: Model,
    observed: Observed,
    previous: v1alpha1.TargetStatus | None,
    failed: Mapping[str, v1alpha1.FailedConversion],
    settings: OperatorSettings,
    single: bool,
    scaling: scaling_mod.Scaling,
    avoid_nodes: Sequence[str] = (),
) -> _Work:
    options = cluster_options(spec, target, settings)
    job = naming.job_name(
        conversion_id(spec, options, model.retry), target.device_class, target.product
    )
    key = assigned_key(spec, options, namespace=model.namespace, settings=settings)
    state = observed.jobs.get(job)
    artifact: Artifact | None = observed.artifacts.get(key)
    # a conversion that ran (its Job exists, the store has its key: the publish step writes it
    # just before the Job completes) says so with an Event; a store hit with no Job does not
    converted = artifact is not None and state is not None
    if artifact is None and previous is not None and previous.job == job and previous.key == key:
        artifact = Artifact(previous.key, previous.sha256, previous.verification)
    status = v1alpha1.TargetStatus(
        device_class=target.device_class,
        product=target.product,
        format=target.format,
        backend=target.backend.value,
        reason=target.reason,
        job=job,
        device_request=target.request,
    )
    work = _Work(status, jobs=[job])
    label = target.label
    claim_spec = (
        builders.claim_template_spec(
            target.dra, min_memory=spec.device_options.get(target.device_class).min_memory
        )
        if target.dra is not None
        else None
    )

    def placement_for(claim_template: str | None) -> builders.Placement:
        return builders.Placement.of_class(
            target.device_class, settings, resource=target.resource, selector=target.selector,
            taints=target.taints, any_of=target.any_of, claim_template=claim_template,
            avoid_nodes=avoid_nodes,
        )  # fmt: skip

    if artifact is None:
        record = failed.get(job)
        if state is not None and state.phase is JobPhase.FAILED:
            message = state.message or "the conversion Job failed"
            record = v1alpha1.FailedConversion(
                job=job, target=label, format=target.format, key=key, message=message[-4096:]
            )
        if record is not None:
            # failed before (the Job may be gone by its TTL): not tried again until the spec or
            # the retry annotation changes, which changes the Job's name
            work.failures.append(record)
            status.phase = "Failed"
            status.message = record.message
            if previous is None or previous.phase != "Failed" or previous.job != job:
                work.events.append(
                    Event("Warning", "ConversionFailed", f"{label}: {status.message}")
                )
            return work
        job_claim = None
        if claim_spec is not None and target.format is ArtifactFormat.TENSORRT:
            job_claim = builders.claim_template_name(job, claim_spec)
        placement = placement_for(job_claim)
        if job_claim is not None and claim_spec is not None:
            # kept while the Job may still start a pod (a retry needs the template); owned
            # like the Job, by every model that uses it
            others = [dict(r) for r in (state.owners if state else ()) if r.get("uid") != model.uid]
            work.apply.append(
                builders.claim_template(
                    name=job_claim, namespace=model.namespace,
                    owners=[*others, model.owner(controller=False)],
                    labels=naming.conversion_labels(target.device_class, target.product),
                    spec=claim_spec,
                )
            )  # fmt: skip
            work.keep.append(("ResourceClaimTemplate", job_claim))
        if state is not None and state.phase is JobPhase.RUNNING and not _owns(state.owners, model):
            # another model's Job for the same conversion: join its owners (a patch; the Job's
            # template is immutable and names the model that created it) and be woken by it
            work.join.append(job)
        if state is None:
            work.apply.append(
                builders.job(
                    name=job,
                    namespace=model.namespace,
                    owners=[model.owner(controller=False)],
                    spec=spec,
                    model=model.name,
                    target_format=target.format,
                    placement=placement,
                    product=target.product,
                    precision=target.precision,
                    batch=options.batch,
                    key=key,
                    settings=settings,
                )
            )
        if state is not None and state.phase is JobPhase.SUCCEEDED:
            status.phase = "Failed"
            status.message = (
                f"the conversion Job succeeded but the store holds no artifact under its key {key}"
            )
        else:
            status.phase = "Converting"
            if previous is None or previous.phase != "Converting" or previous.job != job:
                work.events.append(
                    Event(
                        "Normal",
                        "Converting",
                        f"{label}: converting to {target.format} (Job {job})",
                    )
                )
        return work
    status.key = artifact.key
    status.sha256 = artifact.sha256
    status.verification = artifact.verification
    status.artifact = builders.store_location(settings.store, artifact.key)
    if converted and (previous is None or previous.key != artifact.key):
        # only a conversion that ran says so: a store hit (the key known from the spec) is in
        # the status and the Converted condition, and costs no Event
        numbers = ""
        if artifact.verification and artifact.verification.max_abs_error is not None:
            numbers = f" (max abs error {artifact.verification.max_abs_error:.3g})"
        work.events.append(
            Event("Normal", "Converted", f"{label}: artifact {artifact.key}{numbers}")
        )
    pool = pool_name(model.name, target)
    taken = [
        observed.conflicts[(kind, pool)]
        for kind in POOL_KINDS
        if (kind, pool) in observed.conflicts
    ]
    if taken:
        status.phase = "Failed"
        status.message = "; ".join(taken)
        if previous is None or previous.message != status.message:
            work.events.append(Event("Warning", "NameConflict", f"{label}: {status.message}"))
        return work
    labels = naming.pool_labels(model.name, model.uid, pool, target.device_class, target.product)
    selector = naming.pool_selector(model.uid, pool)
    owner = model.owner()
    common: dict[str, Any] = {"name": pool, "namespace": model.namespace, "owner": owner}
    seen = observed.pools.get(pool)
    autoscaled = spec.replicas.min < spec.replicas.max
    pool_claim = None
    if claim_spec is not None:
        pool_claim = builders.claim_template_name(pool, claim_spec)
        work.apply.append(
            builders.claim_template(
                name=pool_claim, namespace=model.namespace, owners=[owner], labels=labels,
                spec=claim_spec,
            )
        )  # fmt: skip
        work.keep.append(("ResourceClaimTemplate", pool_claim))
        status.allocated = list(observed.allocated.get(pool, ()))
    placement = placement_for(pool_claim)
    work.apply.append(
        builders.deployment(
            **common,
            model=model.name,
            spec=spec,
            placement=placement,
            product=target.product,
            backend=target.backend,
            key=artifact.key,
            settings=settings,
        )
    )
    work.keep.append(("Deployment", pool))
    if (
        autoscaled
        and seen is not None
        and not {(kind, pool) for kind in AUTOSCALER_KINDS}
        & {(c.kind, c.name) for c in observed.children}
    ):
        # turning autoscaled: the operator stops setting replicas; under server-side apply a
        # field its only manager drops goes back to its default (1). A second manager takes
        # the count over first, at no less than what runs now; the HPA (ours or KEDA's) then
        # owns it.
        work.handover.append(
            builders.replicas_only(
                name=pool,
                namespace=model.namespace,
                replicas=max(seen.wanted, seen.ready_replicas, spec.replicas.min),
            )
        )
    if not single:
        work.apply.append(
            builders.service(
                **common,
                labels=labels,
                selector=selector,
                port=settings.server_port,
                headless=True,
            )
        )
        work.keep.append(("Service", pool))
    window = settings.scale_down_window_s
    if scaling.autoscaler is scaling_mod.Autoscaler.KEDA:
        work.apply.append(
            builders.scaled_object(
                **common,
                labels=labels,
                replicas=scaling.replicas,
                prometheus=settings.prometheus_address,
                scale_down_window_s=window,
            )
        )
        work.keep.append(("ScaledObject", pool))
    elif scaling.autoscaler is scaling_mod.Autoscaler.HPA:
        work.apply.append(
            builders.hpa(
                **common, labels=labels, replicas=scaling.replicas, scale_down_window_s=window
            )
        )
        work.keep.append(("HorizontalPodAutoscaler", pool))
    if spec.replicas.max > 1:
        # with one replica a budget protects nothing, and would only add an object
        work.apply.append(builders.pdb(**common, labels=labels, selector=selector))
        work.keep.append(("PodDisruptionBudget", pool))
    if seen is not None:
        status.replicas = seen.replicas
        status.ready_replicas = seen.ready_replicas if seen.key == artifact.key else 0
    current = seen is not None and seen.key == artifact.key and seen.up_to_date
    if current and status.ready_replicas >= spec.replicas.min:
        status.phase = "Ready"
        if not single and (previous is None or previous.phase != "Ready"):
            # one pool: the model's own Ready event says the same
            work.events.append(
                Event("Normal", "PoolReady", f"{label}: {status.ready_replicas} ready")
            )
    else:
        status.phase = "Deploying"
    return work


def pool_name(model: str, target: Target | v1alpha1.TargetStatus) -> str:
    """The name of a target's pool (Deployment, Services, autoscaler, PDB); a pool claiming its
    devices through DRA ends in ``dra``, so a product offered both ways has two pools."""
    if isinstance(target, Target):
        dra = target.dra is not None
    else:
        dra = target.device_request is v1alpha1.DeviceRequest.DRA
    product = target.product
    if dra:
        product = f"{product}-dra" if product else "dra"
    return naming.pool_name(model, target.device_class, product)


def _owns(owners: Sequence[Mapping[str, Any]], model: Model) -> bool:
    return any(o.get("uid") == model.uid for o in owners)


@dataclass(frozen=True)
class _Retained:
    """A pool no longer planned but kept: its pods serve until it may go (make-before-break)."""

    name: str
    status: v1alpha1.TargetStatus | None
    """Its target as the previous status had it (None: a pool of an older naming)."""
    note: str | None
    """Why the model is degraded by it (its class's nodes take no new pods, or are gone), if so."""
    recheck_s: float | None = None
    """Seconds until the class-gone grace of this pool ends (when it may go; nothing else
    marks that moment)."""


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retained_pools(
    *,
    model: Model,
    observed: Observed,
    planned: set[str],
    replaced: bool,
    previous: v1alpha1.InferenceModelStatus | None,
    inventory: Inventory,
    now: datetime,
    class_gone_grace_s: float,
) -> list[_Retained]:
    """Pools that exist, are not planned, and must stay.

    A pool whose class still has nodes, all cordoned or NotReady past the grace, stays as long
    as those nodes exist: cordon means "no new pods", not "stop serving". A pool whose class
    has no node left at all stays ``class_gone_grace_s`` from the moment that was first seen
    (``class_gone_since`` in its status, so a restarted operator keeps the clock): a node
    replaced by an upgrade or an autoscaler brings it back untouched. Any pool, besides, stays
    while its pods are ready and the planned pools do not all serve yet (``replaced``): a new
    preference, a new product or a vanished class never leaves the model with less capacity
    than it had.
    """
    by_pool = {pool_name(model.name, t): t for t in (previous.targets if previous else [])}
    kept = []
    for name, seen in sorted(observed.pools.items()):
        if name in planned:
            continue
        target = by_pool.get(name)
        stuck = target is not None and inventory.unusable_pool(target.device_class, target.product)
        gone_since = None
        left = 0.0
        if (
            target is not None
            and not stuck
            and not inventory.has_nodes(target.device_class, target.product)
        ):
            gone_since = target.class_gone_since or now
            left = class_gone_grace_s - (now - gone_since).total_seconds()
        if not stuck and left <= 0 and (seen.ready_replicas == 0 or replaced):
            continue
        status = None
        note = None
        if target is not None:
            label = _label(target.device_class, target.product)
            if stuck:
                note = (
                    f"{label}: every node is cordoned or NotReady; its {seen.ready_replicas} "
                    "ready pods keep serving, nothing new is placed there"
                )
            elif gone_since is not None:
                until = gone_since + timedelta(seconds=class_gone_grace_s)
                note = f"{label}: no node left since {_stamp(gone_since)}; " + (
                    f"the pool is kept until {_stamp(until)} in case they return"
                    if left > 0
                    else f"its {seen.ready_replicas} ready pods serve until the new pools are ready"
                )
            reason = note or f"{label}: no longer planned; serving until the new pools are ready"
            status = target.model_copy(
                update={
                    "replicas": seen.replicas,
                    "ready_replicas": seen.ready_replicas,
                    "phase": "Retained",
                    "reason": reason,
                    "message": None,
                    "class_gone_since": gone_since,
                }
            )
        kept.append(_Retained(name, status, note, left if left > 0 else None))
    return kept


def _jobs_to_release(
    observed: Observed, model: Model, planned: set[str]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, list[Manifest]]]]:
    """Conversion Jobs this model owns but plans no longer (a superseded spec, a target gone):
    deleted when no other model owns them (a TensorRT build holds a GPU for nobody), else left
    to the others."""
    delete: list[tuple[str, str, str]] = []
    disown: list[tuple[str, list[Manifest]]] = []
    for name, state in sorted(observed.owned_jobs.items()):
        if name in planned:
            continue
        others = [dict(o) for o in state.owners if o.get("uid") != model.uid]
        if others:
            disown.append((name, others))
        else:
            delete.append(("batch/v1", "Job", name))
    return delete, disown


def plan(
    *,
    model: Model,
    spec: v1alpha1.InferenceModelSpec,
    inventory: Inventory,
    observed: Observed,
    previous: v1alpha1.InferenceModelStatus | None,
    settings: OperatorSettings,
    now: datetime,
    chosen: tuple[list[Target], list[str]] | None = None,
    apis: scaling_mod.Apis = scaling_mod.NO_APIS,
) -> Plan:
    """Everything to do for one InferenceModel, and the status that results. ``chosen``: what
    ``choose`` returned for this spec and inventory, when the caller has it already; ``apis``:
    the autoscaling APIs the cluster serves."""
    targets, skipped = chosen or choose(spec, inventory, settings.devices)
    scaling = scaling_mod.decide(spec.replicas, apis, settings.inflight_autoscaler)
    before = _previous(previous)
    failed = {f.job: f for f in previous.failed_conversions} if previous else {}
    single = len(targets) == 1
    avoid_nodes = inventory.dra_nodes()
    works: list[_Work] = []
    jobs: set[str] = set()
    failures: list[v1alpha1.FailedConversion] = []
    for target in targets:
        args: dict[str, Any] = {
            "spec": spec, "model": model, "observed": observed, "failed": failed,
            "previous": before.get(target.key), "settings": settings, "single": single,
            "scaling": scaling, "avoid_nodes": avoid_nodes,
        }  # fmt: skip
        work = _plan_target(target, **args)
        jobs.update(work.jobs)
        failures += work.failures
        if work.status.phase == "Failed" and target.format is ArtifactFormat.TENSORRT:
            fallback = onnx_fallback(target, work.status.message or "")
            if fallback.format in CONVERTIBLE[spec.source.format]:
                work = _plan_target(fallback, **args)
                jobs.update(work.jobs)
                failures += work.failures
        works.append(work)
    service_name = naming.model_service_name(model.name)
    apply: list[Manifest] = []
    applied: set[tuple[str, str]] = set()
    for manifest in (w for work in works for w in work.apply):
        identity = (manifest["kind"], manifest["metadata"]["name"])
        if identity not in applied:  # a product's plugin and DRA pools share one conversion
            applied.add(identity)
            apply.append(manifest)
    keep = {k for work in works for k in work.keep}
    keep.add(("Service", service_name))
    statuses = [w.status for w in works]
    events = [e for w in works for e in w.events]
    conflict = observed.conflicts.get(("Service", service_name))
    if conflict is None:
        apply.append(
            builders.service(
                name=service_name,
                namespace=model.namespace,
                owner=model.owner(),
                labels=naming.model_labels(model.name, model.uid),
                selector=naming.server_selector(model.uid),
                port=settings.server_port,
            )
        )
    serving = [t for t in statuses if t.phase != "Failed"]
    replaced = bool(serving) and all(t.phase == "Ready" for t in serving)
    retained = _retained_pools(
        model=model, observed=observed, planned={n for k, n in keep if k == "Deployment"},
        replaced=replaced, previous=previous, inventory=inventory, now=now,
        class_gone_grace_s=settings.class_gone_grace_s,
    )  # fmt: skip
    keep |= {(kind, r.name) for r in retained for kind in POOL_KINDS}
    keep |= {  # a retained DRA pool's pods may still need its claim template
        (c.kind, c.name)
        for c in observed.children
        for r in retained
        if c.kind == "ResourceClaimTemplate" and c.name.startswith(f"{r.name}-")
    }
    delete = [
        (c.api_version, c.kind, c.name) for c in observed.children if (c.kind, c.name) not in keep
    ]
    released, disown = _jobs_to_release(observed, model, jobs)
    delete += released
    kept_statuses = [r.status for r in retained if r.status is not None]
    notes = [r.note for r in retained if r.note]
    still_serving = any(t.ready_replicas > 0 for t in kept_statuses)
    failure = None
    if not targets and not still_serving:
        failure = "no device can serve this model: " + "; ".join(
            [*(skipped or ["the cluster offers no device class"]), *notes]
        )
    elif targets and skipped and not spec.auto and (previous is None or not previous.targets):
        events.append(Event("Warning", "Fallback", targets[0].reason))
    phase = status_mod.phase(statuses)
    if (still_serving and phase is not v1alpha1.Phase.READY) or (
        notes and (still_serving or phase is v1alpha1.Phase.READY)
    ):
        phase = v1alpha1.Phase.DEGRADED
        notes += [] if targets else skipped
    if conflict is not None:
        phase = v1alpha1.Phase.FAILED
        failure = conflict
        was = previous.conditions if previous else []
        if not any(c.reason == "NameConflict" for c in was):
            events.append(Event("Warning", "NameConflict", conflict))
    if (
        failure
        and conflict is None
        and (previous is None or previous.phase != v1alpha1.Phase.FAILED)
    ):
        events.append(Event("Warning", "NoDevice", failure))
    ready = phase in (v1alpha1.Phase.READY, v1alpha1.Phase.DEGRADED)
    if previous is not None and previous.phase != phase and ready:
        served = [t.label for t in targets] or [
            _label(t.device_class, t.product) for t in kept_statuses
        ]
        # the Ready event names every pool: pools turning ready with the model get no PoolReady
        events = [e for e in events if e.reason != "PoolReady"]
        events.append(Event("Normal", "Ready", f"serving on {', '.join(served)}"))
    all_statuses = statuses + kept_statuses
    conditions = status_mod.conditions(
        statuses,
        failure,
        ready,
        previous=previous,
        generation=model.generation,
        now=now,
        degraded=notes,
        failure_reason="NameConflict" if conflict else "NoDevice",
    )
    signal = status_mod.scaling_condition(
        spec.replicas, scaling, previous=previous, generation=model.generation, now=now
    )
    if signal is not None:
        conditions.append(signal)
        had = status_mod.was_true(previous, v1alpha1.ConditionType.SCALING_SIGNAL_UNAVAILABLE)
        if signal.status == "True" and not had:
            events.append(Event("Warning", "ScalingSignalUnavailable", signal.message))
        elif signal.status == "False" and had:
            events.append(Event("Normal", "ScalingSignalAvailable", signal.message))
    pinned = status_mod.image_pinned(
        spec.source.image, previous=previous, generation=model.generation, now=now
    )
    if pinned is not None:
        conditions.append(pinned)
    status = v1alpha1.InferenceModelStatus(
        phase=phase,
        conditions=conditions,
        observed_generation=model.generation,
        targets=all_statuses,
        failed_conversions=failures,
        devices=",".join(
            _label(t.device_class, t.product) for t in all_statuses if t.phase != "Failed"
        )
        or None,
        replicas=sum(t.replicas for t in all_statuses),
        ready_replicas=sum(t.ready_replicas for t in all_statuses),
        selector=naming.selector_string(naming.server_selector(model.uid)),
        url=f"http://{service_name}.{model.namespace}.svc.{settings.cluster_domain}",
    )
    return Plan(
        apply=apply,
        delete=delete,
        status=status.model_dump(by_alias=True, exclude_none=True, mode="json"),
        events=events,
        targets=statuses,
        handover=[m for work in works for m in work.handover],
        disown=disown,
        join=[j for work in works for j in work.join],
        recheck_s=min((r.recheck_s for r in retained if r.recheck_s is not None), default=None),
    )
