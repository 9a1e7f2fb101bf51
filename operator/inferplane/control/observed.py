# SPDX-License-Identifier: Apache-2.0
"""What the operator saw, as plain data: the planner's input besides the spec and the inventory.

Pure: ``kube.py`` lists the objects and the handlers pass them to ``from_objects``; nothing here
talks to the API. A conversion's artifact is what the operator itself finds in the store under
the key it assigned the Job: whatever a pod reports is never trusted for it (a tenant can create
pods with any label and any termination message). A failed pod's termination message is the
error shown in the status. ``parse_result`` reads a converter's termination message (tests and
people reading a pod's status).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferplane.api import v1alpha1
from inferplane.artifacts.manifest import ArtifactManifest


class JobPhase(enum.StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class Artifact:
    """A converted artifact the operator knows of: its key, file digest and parity numbers."""

    key: str
    sha256: str | None = None
    verification: v1alpha1.TargetVerification | None = None

    @classmethod
    def from_manifest(cls, manifest: ArtifactManifest) -> Artifact:
        entry = next((f for f in manifest.files if f.path == manifest.entrypoint), None)
        check = manifest.verification
        accuracy = manifest.accuracy
        return cls(
            key=manifest.key,
            sha256=entry.sha256 if entry else None,
            verification=v1alpha1.TargetVerification(
                verified=check.verified,
                reason=check.reason or None,
                max_abs_error=check.max_abs_error,
                max_rel_error=check.max_rel_error,
                accuracy=accuracy.converted if accuracy else None,
                reference_accuracy=accuracy.reference if accuracy else None,
            ),
        )


def parse_result(message: str | None) -> Artifact | None:
    """The artifact a conversion pod reported in its termination message, or None."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return None
    try:
        return Artifact.from_manifest(ArtifactManifest.model_validate(data))
    except ValueError:
        pass
    verification = data.get("verification")
    try:
        check = (
            v1alpha1.TargetVerification.model_validate(verification)
            if isinstance(verification, dict)
            else None
        )
    except ValueError:
        check = None
    sha = data.get("sha256")
    return Artifact(
        key=data["key"], sha256=sha if isinstance(sha, str) else None, verification=check
    )


@dataclass(frozen=True)
class JobState:
    name: str
    phase: JobPhase
    message: str = ""
    """The conversion pod's termination message (the error of a failed one)."""
    owners: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class PoolState:
    """A server Deployment as observed."""

    name: str
    key: str | None
    """The artifact key its pod template serves."""
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    up_to_date: bool = False
    """The controller has seen the latest template and every pod runs it."""
    wanted: int = 1
    """spec.replicas as the API server has it (set by us, or by an autoscaler)."""


@dataclass(frozen=True)
class Child:
    """An object this model owns (Deployment, Service, HPA, PDB)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Observed:
    jobs: Mapping[str, JobState] = field(default_factory=dict)
    pools: Mapping[str, PoolState] = field(default_factory=dict)
    children: tuple[Child, ...] = ()
    artifacts: Mapping[str, Artifact] = field(default_factory=dict)
    """Artifacts found in the store by key (lookups the operator could make itself)."""
    owned_jobs: Mapping[str, JobState] = field(default_factory=dict)
    """Conversion Jobs this model is an owner of (planned or not any longer)."""
    conflicts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(kind, name) of objects the model would create that exist without it as their controller
    owner: never taken over; the message says whose they are."""
    allocated: Mapping[str, tuple[v1alpha1.AllocatedDevice, ...]] = field(default_factory=dict)
    """Per pool claiming through DRA: the device allocated to each of its ready pods."""


def _job_phase(job: Mapping[str, Any]) -> JobPhase:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobPhase.SUCCEEDED
        if condition.get("type") == "Failed":
            return JobPhase.FAILED
    return JobPhase.RUNNING


def _termination_message(pods: Iterable[Mapping[str, Any]], job: str) -> str:
    """The newest terminated message among a Job's pods (its last attempt), init containers
    included: a conversion Job's fetch and convert steps are init containers."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        if pod.get("metadata", {}).get("labels", {}).get("job-name") != job:
            continue
        status_of = pod.get("status", {})
        statuses = (status_of.get("initContainerStatuses") or []) + (
            status_of.get("containerStatuses") or []
        )
        for status in statuses:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated:
                found.append((terminated.get("finishedAt") or "", terminated.get("message") or ""))
    found.sort()
    return found[-1][1].strip() if found else ""


def _job_failure_reason(job: Mapping[str, Any]) -> str:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".strip()
    return ""


def from_objects(
    *,
    jobs: Iterable[Mapping[str, Any]] = (),
    pods: Iterable[Mapping[str, Any]] = (),
    deployments: Iterable[Mapping[str, Any]] = (),
    owned: Iterable[Mapping[str, Any]] = (),
    artifacts: Mapping[str, Artifact] | None = None,
    key_annotation: str = "inferplane.io/artifact-key",
    owned_jobs: Iterable[Mapping[str, Any]] = (),
    conflicts: Mapping[tuple[str, str], str] | None = None,
    allocated: Mapping[str, tuple[v1alpha1.AllocatedDevice, ...]] | None = None,
) -> Observed:
    """Observed state from raw API objects (as dicts)."""
    pods = list(pods)

    def state(job: Mapping[str, Any]) -> JobState:
        name = job["metadata"]["name"]
        phase = _job_phase(job)
        message = _termination_message(pods, name)
        if phase is JobPhase.FAILED and not message:
            message = _job_failure_reason(job)
        owners = tuple(job["metadata"].get("ownerReferences") or ())
        return JobState(name, phase, message, owners)

    job_states = {job["metadata"]["name"]: state(job) for job in jobs}
    mine = {job["metadata"]["name"]: state(job) for job in owned_jobs}
    pools = {}
    for deployment in deployments:
        meta = deployment["metadata"]
        status = deployment.get("status") or {}
        wanted = (deployment.get("spec") or {}).get("replicas", 1)
        updated = int(status.get("updatedReplicas") or 0)
        up_to_date = (
            status.get("observedGeneration", 0) >= meta.get("generation", 0)
            and updated >= wanted
            and int(status.get("replicas") or 0) == updated
        )
        pools[meta["name"]] = PoolState(
            name=meta["name"],
            key=(meta.get("annotations") or {}).get(key_annotation),
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=updated,
            up_to_date=up_to_date,
            wanted=int(wanted),
        )
    children = tuple(
        Child(o.get("apiVersion", ""), o.get("kind", ""), o["metadata"]["name"]) for o in owned
    )
    return Observed(
        job_states,
        pools,
        children,
        dict(artifacts or {}),
        mine,
        dict(conflicts or {}),
        dict(allocated or {}),
    )


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def allocations(
    *,
    pods: Iterable[Mapping[str, Any]],
    claims: Iterable[Mapping[str, Any]],
    pool_label: str,
    claim_name: str,
) -> dict[str, tuple[v1alpha1.AllocatedDevice, ...]]:
    """The device each ready pod was allocated, per pool (the pods' ``pool_label``): a pod's
    claim ``claim_name`` is found through ``status.resourceClaimStatuses``, its device in the
    claim's ``status.allocation.devices.results``."""
    by_name = {(c["metadata"].get("namespace", ""), c["metadata"]["name"]): c for c in claims}
    found: dict[str, list[v1alpha1.AllocatedDevice]] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        meta = pod["metadata"]
        pool = (meta.get("labels") or {}).get(pool_label)
        if not pool or not _ready(pod):
            continue
        statuses = (pod.get("status") or {}).get("resourceClaimStatuses") or []
        claim_ref = next(
            (s.get("resourceClaimName") for s in statuses if s.get("name") == claim_name), None
        )
        claim = by_name.get((meta.get("namespace", ""), claim_ref or ""))
        if claim is None:
            continue
        allocation = (claim.get("status") or {}).get("allocation") or {}
        for result in (allocation.get("devices") or {}).get("results") or []:
            found.setdefault(pool, []).append(
                v1alpha1.AllocatedDevice(
                    pod=meta["name"],
                    node=(pod.get("spec") or {}).get("nodeName"),
                    driver=result.get("driver", ""),
                    pool=result.get("pool", ""),
                    device=result.get("device", ""),
                )
            )
    return {pool: tuple(devices) for pool, devices in found.items()}
