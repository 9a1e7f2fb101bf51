# SPDX-License-Identifier: Apache-2.0
"""The model's phase and conditions from its targets' states (pure).

Conditions follow Kubernetes conventions: ``Converted``, ``Verified`` and ``Ready`` (and, for
``metric: inflight`` with min < max, ``ScalingSignalUnavailable``, True while the pools fall back
to CPU), each with a CamelCase reason and a message for people; ``lastTransitionTime`` moves only
when the condition's status changes, so re-planning an unchanged model patches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from inferplane.api import v1alpha1
from inferplane.control.scaling import Autoscaler, Scaling
from inferplane.devices import DeviceClass


def _label(device_class: DeviceClass, product: str | None) -> str:
    return f"{device_class}/{product}" if product else str(device_class)


def _condition(
    kind: v1alpha1.ConditionType,
    status: str,
    reason: str,
    message: str,
    *,
    previous: v1alpha1.InferenceModelStatus | None,
    generation: int,
    now: datetime,
) -> v1alpha1.Condition:
    """A condition whose lastTransitionTime moves only when its status changes."""
    since = now
    for old in previous.conditions if previous else []:
        if old.type == kind and old.status == status and old.last_transition_time is not None:
            since = old.last_transition_time
    return v1alpha1.Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def conditions(
    targets: list[v1alpha1.TargetStatus],
    failure: str | None,
    ready: bool,
    *,
    previous: v1alpha1.InferenceModelStatus | None,
    generation: int,
    now: datetime,
    degraded: Sequence[str] = (),
    failure_reason: str = "NoDevice",
) -> list[v1alpha1.Condition]:
    """Converted, Verified and Ready. ``failure``: the model cannot be served at all (why, with
    ``failure_reason``); ``degraded``: why it serves with less than planned (a class cordoned)."""
    kinds = v1alpha1.ConditionType
    args: dict[str, Any] = {"previous": previous, "generation": generation, "now": now}
    failed = [t for t in targets if t.phase == "Failed"]
    converted = [t for t in targets if t.key]
    failures = "; ".join(f"{_label(t.device_class, t.product)}: {t.message}" for t in failed)
    if failure is not None:
        out = [
            _condition(kinds.CONVERTED, "False", failure_reason, failure, **args),
            _condition(kinds.VERIFIED, "Unknown", failure_reason, failure, **args),
            _condition(kinds.READY, "False", failure_reason, failure, **args),
        ]
        return out
    count = f"{len(converted)} of {len(targets)} targets converted"
    if failed:
        converted_cond = _condition(kinds.CONVERTED, "False", "ConversionFailed", failures, **args)
    elif len(converted) == len(targets):
        converted_cond = _condition(kinds.CONVERTED, "True", "Converted", count, **args)
    else:
        converted_cond = _condition(kinds.CONVERTED, "False", "Converting", count, **args)
    unverified = [t for t in converted if not (t.verification and t.verification.verified)]
    if not converted:
        verified = _condition(kinds.VERIFIED, "Unknown", "Pending", "nothing converted yet", **args)
    elif unverified:
        why = "; ".join(
            f"{_label(t.device_class, t.product)}: "
            f"{(t.verification.reason if t.verification else None) or 'no parity result'}"
            for t in unverified
        )
        verified = _condition(kinds.VERIFIED, "False", "NotVerified", why, **args)
    else:
        numbers = ", ".join(
            f"{_label(t.device_class, t.product)} max abs error "
            f"{t.verification.max_abs_error if t.verification else None}"
            for t in converted
        )
        verified = _condition(kinds.VERIFIED, "True", "Verified", numbers, **args)
    serving = [t for t in targets if t.phase == "Ready"]
    pools = f"{len(serving)} of {len(targets)} pools ready"
    if ready and (failed or degraded):
        why = "; ".join([pools, *degraded, *([failures] if failures else [])])
        ready_cond = _condition(kinds.READY, "True", "Degraded", why, **args)
    elif ready:
        ready_cond = _condition(kinds.READY, "True", "Ready", pools, **args)
    else:
        reason = "Failed" if failed and len(failed) == len(targets) else "NotReady"
        ready_cond = _condition(kinds.READY, "False", reason, failures or pools, **args)
    return [converted_cond, verified, ready_cond]


def image_pinned(
    image: str | None,
    *,
    previous: v1alpha1.InferenceModelStatus | None,
    generation: int,
    now: datetime,
) -> v1alpha1.Condition | None:
    """``SourceImagePinned`` for a spec whose network code comes from ``source.image``: the
    artifact key names the image by its reference, so a tag pushed again with new code would
    reuse the artifact converted from the old code. Pinned by digest (``@sha256:``) it cannot."""
    if not image:
        return None
    args: dict[str, Any] = {"previous": previous, "generation": generation, "now": now}
    kind = v1alpha1.ConditionType.SOURCE_IMAGE_PINNED
    if "@sha256:" in image:
        return _condition(kind, "True", "PinnedByDigest", f"{image} names one image", **args)
    message = (
        f"source.image {image} is a tag, which can move: new network code pushed under it "
        "would reuse the artifact converted from the old code; pin it by digest (image@sha256:...)"
    )
    return _condition(kind, "False", "MutableTag", message, **args)


def phase(targets: list[v1alpha1.TargetStatus]) -> v1alpha1.Phase:
    phases = [t.phase for t in targets]
    if not phases or all(p == "Failed" for p in phases):
        return v1alpha1.Phase.FAILED
    alive = [p for p in phases if p != "Failed"]
    if all(p == "Ready" for p in alive):
        return v1alpha1.Phase.DEGRADED if len(alive) < len(phases) else v1alpha1.Phase.READY
    if all(p == "Converting" for p in alive):
        return v1alpha1.Phase.CONVERTING
    return v1alpha1.Phase.DEPLOYING


def scaling_condition(
    replicas: v1alpha1.Replicas,
    scaling: Scaling,
    *,
    previous: v1alpha1.InferenceModelStatus | None,
    generation: int,
    now: datetime,
) -> v1alpha1.Condition | None:
    """``ScalingSignalUnavailable`` of an autoscaled ``metric: inflight`` model: True while its
    pools scale on CPU instead, saying why; False naming what scales them. None otherwise."""
    if replicas.metric is not v1alpha1.ScalingMetric.INFLIGHT or scaling.autoscaler is (
        Autoscaler.NONE
    ):
        return None
    args: dict[str, Any] = {"previous": previous, "generation": generation, "now": now}
    kind = v1alpha1.ConditionType.SCALING_SIGNAL_UNAVAILABLE
    if scaling.unavailable:
        message = f"{scaling.unavailable}: each pool scales on {scaling.signal}"
        return _condition(kind, "True", "NoMetricsAPI", message, **args)
    reason = "ScaledObject" if scaling.autoscaler is Autoscaler.KEDA else "CustomMetrics"
    return _condition(kind, "False", reason, f"each pool scales on {scaling.signal}", **args)


def was_true(previous: v1alpha1.InferenceModelStatus | None, kind: v1alpha1.ConditionType) -> bool:
    """Whether the previous status had condition ``kind`` True (for events on transitions)."""
    conditions = previous.conditions if previous is not None else []
    return any(c.type == kind and c.status == "True" for c in conditions)
