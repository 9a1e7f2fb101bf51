# SPDX-License-Identifier: Apache-2.0
"""kopf wiring: watch events enqueue models; a worker reconciles one model at a time.

kopf provides the watches (with bookmarks), peering (of several replicas one is active) and the
liveness endpoint. The reconcile of a model — validate → observe → plan → apply → status — runs
in our own small work queue rather than in kopf's change handlers: it is level-based (the same
result whatever event woke it), keeps no progress annotations on the objects (no extra writes), and
one queue deduplicates bursts of events. What wakes a model: any event on it, on a Job or
Deployment it owns, the deletion of any other child, a change of the cluster's device pools
(Nodes), and a periodic resync.

The reconcile reads no lists: the model's body comes from its latest event (or our own status
patch's answer), the children from kopf indexes fed by the watches (``cache.py``). The resync
trusts neither: it reads the model and every planned child from the API server, so an object the
cache wrongly believes present is applied again.

Writes are kept to what changed: objects carry a hash of the manifest last applied and are applied
again only when it differs; the status is patched only when it differs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
import pydantic_settings

from inferplane import errors
from inferplane.api import v1alpha1
from inferplane.artifacts import store as store_mod
from inferplane.control import builders, naming, observed, planner, scaling
from inferplane.control import cache as cache_mod
from inferplane.control import inventory as inventory_mod
from inferplane.control import kube as kube_mod
from inferplane.control.inventory import DevicePool, Inventory
from inferplane.control.settings import DEFAULT_DEVICES, OperatorSettings

log = logging.getLogger("inferplane.operator")

APPLIED_ANNOTATION = "inferplane.io/applied-hash"
CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("resource.k8s.io/v1", "ResourceClaimTemplate"),
)
JOB = ("batch/v1", "Job")
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
"""Watched (and indexed) only with the ``keda`` setting on: only then may the operator read it."""
CUSTOM_METRICS = ("custom.metrics.k8s.io/v1beta2", "custom.metrics.k8s.io/v1beta1")
DISCOVERY_S = 60.0
"""How often the operator looks again at which autoscaling APIs the cluster serves."""
RESOURCE_API = "resource.k8s.io/v1"
"""Dynamic Resource Allocation, GA (and always served) since Kubernetes 1.34."""
MANAGED = {"app.kubernetes.io/managed-by": naming.MANAGED_BY}
RESYNC_S = 300.0
MAX_BACKOFF_S = 60.0
INVENTORY_DEBOUNCE_S = 1.0
"""Node events within this window rebuild the inventory once."""


@dataclass
class Runtime:
    """Everything the handlers share; built once at start-up, kept in kopf's memo."""

    settings: OperatorSettings
    kube: kube_mod.Kube
    nodes: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    slices: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """ResourceSlices by name: devices offered through DRA."""
    inventory: Inventory = field(default_factory=Inventory)
    cache: cache_mod.Cache = field(default_factory=cache_mod.Cache)
    models: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """The latest body of every model, from its events and our status patches' answers."""
    artifacts: dict[str, observed.Artifact] = field(default_factory=dict)
    """Artifacts found in the store: a key names immutable content, so a hit is kept."""
    queue: asyncio.Queue[tuple[str, str]] = field(default_factory=asyncio.Queue)
    pending: set[tuple[str, str]] = field(default_factory=set)
    verify: set[tuple[str, str]] = field(default_factory=set)
    """Models whose next reconcile reads the API server instead of the cache (the resync)."""
    active: set[tuple[str, str]] = field(default_factory=set)
    """Models being reconciled: a model is never reconciled by two workers at once."""
    dirty: set[tuple[str, str]] = field(default_factory=set)
    """Models woken while being reconciled: queued again when that reconcile ends."""
    failures: dict[tuple[str, str], int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    inventory_dirty: bool = False
    grace_timer: asyncio.TimerHandle | None = None
    """Rebuilds the inventory when a NotReady node's grace ends (no event marks that moment)."""
    rechecks: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    """Per model: the timer that plans it again when a retained pool's class-gone grace ends
    (``Plan.recheck_s``; no event marks that moment)."""
    conflicts: dict[tuple[str, str], dict[tuple[str, str], str]] = field(default_factory=dict)
    """Per model: (kind, name) of objects it would create that exist and are not its own."""
    apis: scaling.Apis = scaling.NO_APIS
    """The autoscaling APIs the cluster serves (``discover``, every DISCOVERY_S)."""
    reconciles: int = 0
    queued_at: dict[tuple[str, str], float] = field(default_factory=dict)
    waited_s: float = 0.0
    """Time models spent queued, in all (the scale benchmark reads it from the log)."""
    busy_s: float = 0.0
    """Time workers spent reconciling, in all."""
    _store: store_mod.Store | None = None

    def store(self) -> store_mod.Store:
        """The artifact store, opened once (an s3 store holds one client for every lookup)."""
        if self._store is None:
            self._store = store_mod.open_store(self.settings.store)
        return self._store

    def remember(self, body: Mapping[str, Any]) -> None:
        """Keep a model's body unless the one kept is newer."""
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        kept = self.models.get(key)
        if kept is None or cache_mod.version(body) >= cache_mod.version(kept):
            self.models[key] = body

    def enqueue(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self.active:
            self.dirty.add(key)
        elif key not in self.pending:
            self.pending.add(key)
            self.queued_at[key] = time.monotonic()
            self.queue.put_nowait(key)

    def refresh_inventory(self) -> bool:
        """Rebuild the inventory; True when the device pools changed. When a NotReady node is
        within its grace, a timer rebuilds it again when the grace ends."""
        now = datetime.now(UTC)
        grace = self.settings.not_ready_grace_s
        nodes = list(self.nodes.values())
        new = Inventory.from_nodes(
            nodes, self.settings.devices, self.slices.values(), now=now,
            not_ready_grace_s=grace,
        )  # fmt: skip
        changed = _pools_signature(new) != _pools_signature(self.inventory)
        self.inventory = new
        if self.grace_timer is not None:
            self.grace_timer.cancel()
            self.grace_timer = None
        left = inventory_mod.grace_left(nodes, now=now, not_ready_grace_s=grace)
        if left is not None:
            self.grace_timer = asyncio.get_running_loop().call_later(left + 0.5, _refresh, self)
        return changed


def _pools_signature(inventory: Inventory) -> list[tuple[Any, ...]]:
    usable = [
        (p.device_class, p.product, p.has_capacity, p.taints, p.dra, dict(p.any_of))
        for p in inventory.pools
    ]
    unusable = [("unusable", p.device_class, p.product) for p in inventory.unusable]
    return [*usable, *unusable, ("dra nodes", inventory.dra_nodes())]


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    return naming.digest(json.dumps(manifest, sort_keys=True, separators=(",", ":")), 16)


def _with_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    annotations = manifest["metadata"].setdefault("annotations", {})
    annotations.pop(APPLIED_ANNOTATION, None)
    annotations[APPLIED_ANNOTATION] = manifest_hash(manifest)
    return manifest


def _status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``old`` into ``new`` (top-level keys; lists replace whole)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def first_report_waits(old: Mapping[str, Any], plan: planner.Plan, created: set[str]) -> bool:
    """Whether a new model's first status is left to the reconcile that its new Deployments
    wake. When the reconcile that created them has nothing to say but ``Deploying`` (no
    failure, no conflict, no Event), the watch delivers each Deployment it created, and then the
    Deployment controller's reports on it; each wakes the model, and the reconcile woken writes
    the status with what the pods do by then. Under a burst of new models, when that reconcile
    waits its turn on the queue, that is often ``Ready`` already: one status write instead of
    two. Until then the model has no status, as before its first reconcile. A status saying
    anything else (a failure, a conflict, a conversion) is written at once."""
    return (
        not old
        and "Deployment" in created
        and plan.status.get("phase") == v1alpha1.Phase.DEPLOYING
        and not plan.events
    )


async def _lookup_artifacts(rt: Runtime, keys: list[str]) -> dict[str, observed.Artifact]:
    """Store lookups of the keys the operator assigned: what a conversion produced is what the
    operator finds there itself."""
    found = {}
    for key in keys:
        if key not in rt.artifacts:
            try:
                manifest = await asyncio.to_thread(rt.store().lookup, key)
            except errors.StoreError as exc:
                log.warning("store lookup of %s failed: %s", key, exc)
                continue
            if manifest is None:
                continue
            rt.artifacts[key] = observed.Artifact.from_manifest(manifest)
        found[key] = rt.artifacts[key]
    return found


async def _observe(
    rt: Runtime,
    model: planner.Model,
    spec: v1alpha1.InferenceModelSpec,
    targets: list[planner.Target],
    previous: v1alpha1.InferenceModelStatus | None,
    *,
    verify: bool,
) -> tuple[observed.Observed, dict[tuple[str, str], str | None]]:
    """What exists for one model, from the cache (``verify``: Jobs from the API server)."""
    kube = rt.kube
    keys = [
        planner.assigned_key(
            spec,
            planner.cluster_options(spec, t, rt.settings),
            namespace=model.namespace,
            settings=rt.settings,
        )
        for t in targets
    ]
    artifacts = await _lookup_artifacts(rt, keys)
    remembered = {t.job for t in previous.targets if t.key and t.job} if previous else set()
    unknown = [t for t, key in zip(targets, keys, strict=True) if key not in artifacts]
    jobs = []
    for name in planner.conversion_jobs(spec, unknown, rt.settings, model.retry):
        if name in remembered:
            continue  # converted before: the status has its key, the Job is not needed
        job = (
            await kube.get(*JOB, name, namespace=model.namespace)
            if verify
            else rt.cache.job(model.namespace, name)
        )
        if job is not None:
            jobs.append(job)
    converted = [t for t, key in zip(targets, keys, strict=True) if key in artifacts]
    for name in planner.conversion_jobs(spec, converted, rt.settings, model.retry):
        # the Job that just published a found artifact, from the cache only (no API call):
        # it tells a conversion that ran (an Event) from a store hit (none)
        job = None if name in remembered else rt.cache.job(model.namespace, name)
        if job is not None:
            jobs.append(job)
    pods: list[dict[str, Any]] = []
    for job in jobs:
        conditions = job.get("status", {}).get("conditions") or []
        if any(c.get("type") == "Failed" and c.get("status") == "True" for c in conditions):
            pods += await kube.list(  # the failure's message; a success is read from the store
                "v1", "Pod", namespace=model.namespace, labels={"job-name": job["metadata"]["name"]}
            )
    owned = rt.cache.owned(model.namespace, model.uid)
    deployments = [o for o in owned if o["kind"] == "Deployment"]
    allocated = await _allocations(rt, model, targets, deployments)
    seen = observed.from_objects(
        jobs=jobs,
        pods=pods,
        deployments=deployments,
        owned=owned,
        artifacts=artifacts,
        key_annotation=naming.KEY_ANNOTATION,
        owned_jobs=rt.cache.jobs_of(model.namespace, model.uid),
        # the resync probes every planned name again: a conflicting object may have gone
        conflicts={} if verify else rt.conflicts.get((model.namespace, model.name)),
        allocated=allocated,
    )
    hashes = {
        (o["kind"], o["metadata"]["name"]): (o["metadata"].get("annotations") or {}).get(
            APPLIED_ANNOTATION
        )
        for o in owned
    }
    return seen, hashes


def _wrote(rt: Runtime, answer: Mapping[str, Any] | None) -> None:
    """Keep the API server's answer to a patch of a Job (None: the Job is gone)."""
    if answer is not None:
        rt.cache.wrote({**answer, "apiVersion": JOB[0], "kind": JOB[1]})


async def _allocations(
    rt: Runtime,
    model: planner.Model,
    targets: list[planner.Target],
    deployments: list[Mapping[str, Any]],
) -> dict[str, tuple[v1alpha1.AllocatedDevice, ...]]:
    """For pools claiming through DRA that have a Deployment: the device each ready pod got
    (its pods and their claims, listed by the pool's label, which the claims inherit from
    the pool's ResourceClaimTemplate)."""
    existing = {d["metadata"]["name"] for d in deployments}
    found: dict[str, tuple[v1alpha1.AllocatedDevice, ...]] = {}
    for target in targets:
        pool = planner.pool_name(model.name, target)
        if target.dra is None or pool not in existing:
            continue
        selector = naming.pool_selector(model.uid, pool)
        pods = await rt.kube.list("v1", "Pod", namespace=model.namespace, labels=selector)
        claims = await rt.kube.list(
            RESOURCE_API, "ResourceClaim", namespace=model.namespace, labels=selector
        )
        found.update(
            observed.allocations(
                pods=pods, claims=claims, pool_label=naming.POOL_LABEL,
                claim_name=builders.CLAIM_NAME,
            )
        )  # fmt: skip
    return found


async def _post_event(rt: Runtime, body: Mapping[str, Any], event: planner.Event) -> None:
    meta = body["metadata"]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    manifest = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": v1alpha1.API_VERSION,
            "kind": v1alpha1.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": "inferplane-operator"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": "inferplane-operator",
    }
    try:
        await rt.kube.create(manifest)
    except errors.KubeError as exc:
        log.warning("posting event %s failed: %s", event.reason, exc)


async def _invalid(rt: Runtime, body: Mapping[str, Any], problem: str) -> None:
    """A spec the API server let through but the models reject: Failed, once, no retries."""
    meta = body["metadata"]
    old = body.get("status") or {}
    if old.get("phase") == "Failed" and old.get("observedGeneration") == meta.get("generation"):
        return
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    condition = {
        "type": "Ready", "status": "False", "reason": "InvalidSpec", "message": problem,
        "lastTransitionTime": now, "observedGeneration": meta.get("generation"),
    }  # fmt: skip
    new = {
        "phase": "Failed",
        "conditions": [condition],
        "observedGeneration": meta.get("generation"),
    }
    await rt.kube.patch_status(
        v1alpha1.API_VERSION, v1alpha1.KIND, meta["name"], namespace=meta["namespace"],
        status=_status_patch(old, new),
    )  # fmt: skip
    await _post_event(rt, body, planner.Event("Warning", "InvalidSpec", problem))


async def _current(rt: Runtime, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The object as the API server has it (None: absent)."""
    meta = manifest["metadata"]
    return await rt.kube.get(
        manifest["apiVersion"], manifest["kind"], meta["name"], namespace=meta["namespace"]
    )


def _applied_hash(current: Mapping[str, Any] | None) -> str | None:
    if current is None:
        return None
    annotations: Mapping[str, str] = current["metadata"].get("annotations") or {}
    return annotations.get(APPLIED_ANNOTATION)


def conflict(current: Mapping[str, Any] | None, uid: str) -> str | None:
    """Why an existing object is not the model's to write (None: absent, or the model is its
    controller). Such an object is reported and never taken over: a forced apply would move
    another model's (or a person's) Service to this model's pods."""
    if current is None:
        return None
    refs = current["metadata"].get("ownerReferences") or []
    if any(r.get("uid") == uid and r.get("controller") for r in refs):
        return None
    owner = next((r for r in refs if r.get("controller")), None)
    whose = f"{owner.get('kind')} {owner.get('name')}" if owner else "nobody"
    return (
        f"{current.get('kind', 'object')} {current['metadata']['name']} exists and is "
        f"controlled by {whose}, not by this InferenceModel: left alone (rename or delete it)"
    )


async def _create(rt: Runtime, manifest: Mapping[str, Any]) -> bool:
    """Create an object the cache does not know, with a create-only apply; False when it exists
    already (then whose it is must be read). Creating without reading first saves a GET per new
    object: the usual case, as names are unique per model."""
    try:
        created = await rt.kube.apply(manifest, manager=naming.FIELD_MANAGER, create_only=True)
    except errors.KubeError as exc:
        if exc.status == 409:
            return False
        raise
    rt.cache.wrote(created)
    return True


async def _apply(
    rt: Runtime,
    plan: planner.Plan,
    model: planner.Model,
    hashes: Mapping[tuple[str, str], str | None],
    *,
    verify: bool,
) -> tuple[dict[tuple[str, str], str], set[str]]:
    """Apply the plan's objects; returns the conflicts found (objects left alone) and the kinds
    of the objects created.

    An object the cache knows as the model's is applied (forced) when its hash changed. Any
    other is created with a create-only apply; only when that finds the object exists (409: an
    object someone else made, or one of ours the cache does not hold yet) is it read: the
    model's only if controlled by it. With ``verify`` every object is read (the resync).
    """
    for api_version, kind, child in plan.delete:
        if (
            kind in planner.AUTOSCALER_KINDS
        ):  # before its successor: KEDA refuses a workload an HPA scales
            await rt.kube.delete(api_version, kind, child, namespace=model.namespace)
            rt.cache.forget(kind, model.namespace, child)
    for manifest in plan.handover:
        await rt.kube.apply(manifest, manager=naming.HANDOVER_MANAGER)
    found: dict[tuple[str, str], str] = {}
    created: set[str] = set()
    for manifest in plan.apply:
        manifest = _with_hash(manifest)
        key = (manifest["kind"], manifest["metadata"]["name"])
        shared = manifest["kind"] == "Job"  # never controlled by a model; named by its content
        known = shared or key in hashes
        if not verify and not known and await _create(rt, manifest):
            created.add(key[0])
            continue
        if verify or not known:
            current = await _current(rt, manifest)
            why = None if shared else conflict(current, model.uid)
            if why is not None:
                found[key] = why
                continue
            applied = _applied_hash(current)
        else:
            applied = hashes.get(key)
        if applied == manifest["metadata"]["annotations"][APPLIED_ANNOTATION]:
            continue
        try:
            rt.cache.wrote(await rt.kube.apply(manifest, manager=naming.FIELD_MANAGER))
        except errors.KubeError as exc:
            if manifest["kind"] == "Job" and exc.status == 422:
                # another model created the same conversion first (a Job's template names its
                # model, and is immutable): the next reconcile reads it and joins its owners;
                # without that, no event of the Job would ever wake this model
                log.info("job %s exists, created by another model: joining it", key[1])
                rt.verify.add((model.namespace, model.name))
                rt.enqueue(model.namespace, model.name)
                continue
            raise
    return found, created


async def reconcile(rt: Runtime, namespace: str, name: str, *, verify: bool = False) -> None:
    """validate → observe → plan → apply → status, for one InferenceModel.

    From the cache, or with ``verify`` from the API server: the model, its Jobs and each object
    the plan would skip as unchanged.
    """
    rt.reconciles += 1
    body = rt.models.get((namespace, name))
    if verify and body is not None:
        body = await rt.kube.get(v1alpha1.API_VERSION, v1alpha1.KIND, name, namespace=namespace)
        if body is not None:
            rt.remember(body)
    if body is None or body["metadata"].get("deletionTimestamp"):
        rt.models.pop((namespace, name), None)
        rt.conflicts.pop((namespace, name), None)
        _recheck(rt, (namespace, name), None)
        return  # owner references let the garbage collector remove the children
    try:
        spec = v1alpha1.validate_spec(body.get("spec"))
    except errors.SpecError as exc:
        await _invalid(rt, body, str(exc))
        return
    try:
        previous = v1alpha1.InferenceModelStatus.model_validate(body.get("status") or {})
    except ValueError:
        previous = None
    model = planner.Model.from_body(body)
    chosen = planner.choose(spec, rt.inventory, rt.settings.devices)
    seen, hashes = await _observe(rt, model, spec, chosen[0], previous, verify=verify)
    now = datetime.now(UTC)
    args: dict[str, Any] = {
        "model": model, "spec": spec, "inventory": rt.inventory, "previous": previous,
        "settings": rt.settings, "now": now, "chosen": chosen, "apis": rt.apis,
    }  # fmt: skip
    plan = planner.plan(observed=seen, **args)
    found, created = await _apply(rt, plan, model, hashes, verify=verify)
    known = dict(seen.conflicts)
    if verify or found:
        rt.conflicts[(namespace, name)] = {**known, **found}
    if set(found) - set(known):
        # new conflicts: the status says so (what was applied stays applied)
        plan = planner.plan(
            observed=dataclasses.replace(seen, conflicts={**known, **found}), **args
        )
    for api_version, kind, child in plan.delete:
        if kind in planner.AUTOSCALER_KINDS:
            continue  # deleted by _apply, before anything was applied
        await rt.kube.delete(api_version, kind, child, namespace=namespace)
        rt.cache.forget(kind, namespace, child)
    owner = model.owner(controller=False)
    for job in plan.join:
        # appended with a JSON patch: two models joining at once both stay owners; the answer
        # goes to the cache, so the next reconcile does not join twice
        add = [{"op": "add", "path": "/metadata/ownerReferences/-", "value": owner}]
        _wrote(rt, await rt.kube.patch(*JOB, job, namespace=namespace, patch=add, json_patch=True))
    for job, others in plan.disown:
        patch = {"metadata": {"ownerReferences": others}}
        _wrote(rt, await rt.kube.patch(*JOB, job, namespace=namespace, patch=patch))
    old = body.get("status") or {}
    patch = _status_patch(old, plan.status)
    if patch and not first_report_waits(old, plan, created):
        rt.remember(
            await rt.kube.patch_status(
                v1alpha1.API_VERSION, v1alpha1.KIND, name, namespace=namespace, status=patch
            )
        )
    for event in plan.events:
        await _post_event(rt, body, event)
    _recheck(rt, (namespace, name), plan.recheck_s)


def _recheck(rt: Runtime, key: tuple[str, str], after_s: float | None) -> None:
    """Plan the model again ``after_s`` from now (None: no timer), replacing its earlier timer."""
    timer = rt.rechecks.pop(key, None)
    if timer is not None:
        timer.cancel()
    if after_s is not None:
        rt.rechecks[key] = asyncio.get_running_loop().call_later(after_s + 0.5, rt.enqueue, *key)


async def _worker(rt: Runtime) -> None:
    while True:
        key = await rt.queue.get()
        rt.pending.discard(key)
        rt.active.add(key)
        verify = key in rt.verify
        rt.verify.discard(key)
        started = time.monotonic()
        rt.waited_s += started - rt.queued_at.pop(key, started)
        try:
            await reconcile(rt, *key, verify=verify)
            rt.failures.pop(key, None)
        except errors.InferplaneError as exc:
            count = rt.failures.get(key, 0) + 1
            rt.failures[key] = count
            delay = min(MAX_BACKOFF_S, 0.5 * 2**count)
            log.warning("reconcile %s/%s failed (retry in %.1fs): %s", *key, delay, exc)
            asyncio.get_running_loop().call_later(delay, rt.enqueue, *key)
        except Exception:
            log.exception("reconcile %s/%s crashed", *key)
            asyncio.get_running_loop().call_later(MAX_BACKOFF_S, rt.enqueue, *key)
        finally:
            rt.busy_s += time.monotonic() - started
            rt.active.discard(key)
            if key in rt.dirty:
                rt.dirty.discard(key)
                rt.enqueue(*key)


async def discover(kube: kube_mod.Kube, settings: OperatorSettings) -> scaling.Apis:
    """Which autoscaling APIs the cluster serves: KEDA's ScaledObjects (looked for only when the
    ``keda`` setting allows the operator to manage them) and custom.metrics.k8s.io."""
    keda = False
    if settings.keda:
        resources = await kube.resources(SCALED_OBJECT[0])
        keda = resources is not None and "scaledobjects" in resources
    custom = False
    for group_version in CUSTOM_METRICS:
        if await kube.resources(group_version) is not None:
            custom = True
            break
    return scaling.Apis(keda=keda, custom_metrics=custom)


async def _discover_or_keep(rt: Runtime) -> scaling.Apis:
    """``discover``, or what was known when the API server does not answer it."""
    try:
        return await discover(rt.kube, rt.settings)
    except errors.KubeError as exc:
        log.warning("autoscaling API discovery failed (keeping %s): %s", rt.apis, exc)
        return rt.apis


async def _rediscover(rt: Runtime) -> None:
    """Look at the autoscaling APIs again every DISCOVERY_S; re-plan every model on a change."""
    while True:
        await asyncio.sleep(DISCOVERY_S)
        apis = await _discover_or_keep(rt)
        if apis != rt.apis:
            log.info("autoscaling APIs changed to %s: re-planning %d models", apis, len(rt.models))
            rt.apis = apis
            for key in list(rt.models):
                rt.enqueue(*key)


async def _resync(rt: Runtime) -> None:
    """Every model once per RESYNC_S, spread evenly over it, read from the API server."""
    while True:
        keys = list(rt.models)
        if not keys:
            await asyncio.sleep(RESYNC_S)
        for key in keys:
            await asyncio.sleep(RESYNC_S / len(keys))
            if key in rt.models:
                rt.verify.add(key)
                rt.enqueue(*key)


def load_settings() -> OperatorSettings:
    """The settings from the environment; a bad variable is a SpecError naming it."""
    try:
        return OperatorSettings()
    except (ValueError, pydantic_settings.SettingsError) as exc:
        raise errors.SpecError(f"operator settings (INFERPLANE_* variables): {exc}") from None


def _runtime(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime


def _index_id(kind: str) -> str:
    return f"{kube_mod.PLURALS[kind]}_index"


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, from the same login as the operator's own calls (``kube.load_config``:
    the official client's configuration) instead of kopf's built-in service-account login, which
    dials ``kubernetes.default.svc`` and ignores ``KUBERNETES_SERVICE_HOST``. kopf calls this again
    when the API server answers 401, so a rotated or revoked token is read afresh."""
    try:
        config = kube_mod.load_config()
    except errors.KubeError as exc:
        raise kopf.LoginError(str(exc)) from None
    return connection_info(config)


def connection_info(config: kube_mod.Config) -> kopf.ConnectionInfo:
    """kopf's view of a login: server, CA, client certificate or ``<scheme> <token>``."""
    scheme, _, token = (config.authorization() or "").partition(" ")
    return kopf.ConnectionInfo(
        server=config.server,
        ca_path=config.ca_path,
        insecure=config.ssl is False,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.certificate_path,
        private_key_path=config.private_key_path,
    )


class NoEssence(kopf.DiffBaseStorage):
    """kopf's "last handled" state, for an operator that has no use for it.

    kopf builds a deep copy of every watched object's essence on each event, and compares it with
    the last handled one, for its change-detecting handlers (``on.create``, ``on.update``,
    ``on.field``, ...). This operator registers none: only event and index handlers, which take
    the body as it is. With 1000 nodes and 1000 models those copies were about a third of the
    operator's CPU (a profile of ``tests/bench/operator_scale.py``), so nothing is built or kept.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


@kopf.on.startup()
async def startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **indexes: Any) -> None:
    config = load_settings()
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = NoEssence()
    settings.watching.server_timeout = config.watch_timeout_s
    settings.watching.client_timeout = config.watch_timeout_s + 60  # the server ends it first
    kube = await kube_mod.Kube(kube_mod.load_config(), connections=config.workers).__aenter__()
    children = {kind: indexes[_index_id(kind)] for _, kind in child_kinds(config)}
    rt = Runtime(config, kube, cache=cache_mod.Cache(children, indexes[_index_id(JOB[1])]))
    for node in await kube.list("v1", "Node"):
        rt.nodes[node["metadata"]["name"]] = node
    for item in await kube.list(RESOURCE_API, "ResourceSlice"):
        rt.slices[item["metadata"]["name"]] = item
    rt.refresh_inventory()
    rt.apis = await _discover_or_keep(rt)
    rt.tasks = [asyncio.create_task(_worker(rt)) for _ in range(config.workers)]
    rt.tasks.append(asyncio.create_task(_resync(rt)))
    rt.tasks.append(asyncio.create_task(_rediscover(rt)))
    memo.runtime = rt
    log.info(
        "inferplane operator started: %d device pools; autoscaling APIs: %s",
        len(rt.inventory.pools), rt.apis,
    )  # fmt: skip


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    rt = _runtime(memo)
    for task in rt.tasks:
        task.cancel()
    await rt.kube.__aexit__()
    log.info(
        "reconciles: %d; API writes: %d; queued %.0f s, reconciling %.0f s in all",
        rt.reconciles, rt.kube.writes, rt.waited_s, rt.busy_s,
    )  # fmt: skip


@kopf.on.event(v1alpha1.GROUP, v1alpha1.VERSION, v1alpha1.PLURAL)
async def model_event(
    *, memo: Any, namespace: str | None, name: str, type: str, body: kopf.Body, **_: Any
) -> None:
    rt = _runtime(memo)
    key = (namespace or "", name)
    if type == "DELETED":
        rt.models.pop(key, None)
        return
    kept = rt.models.get(key)
    if kept is not None and cache_mod.version(kept) == cache_mod.version(body):
        return  # the answer to our own status patch, reconciled already
    rt.remember(dict(body))
    rt.enqueue(*key)


def _enqueue_owners(rt: Runtime, namespace: str, body: Mapping[str, Any]) -> None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == v1alpha1.KIND and ref.get("apiVersion", "").startswith(
            v1alpha1.GROUP
        ):
            rt.enqueue(namespace, ref["name"])


def _watch_children(api_version: str, kind: str) -> None:
    """Index one kind of child for the cache, and wake its owners: on every event of Jobs and
    Deployments (their status is what the model waits for), on the deletion of the rest."""
    group, _, version = api_version.rpartition("/")
    plural = kube_mod.PLURALS[kind]
    keyed = cache_mod.by_name if (api_version, kind) == JOB else cache_mod.by_owner

    @kopf.index(group, version, plural, labels=MANAGED, id=_index_id(kind))
    async def index(*, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return dict(keyed(body, api_version, kind))

    @kopf.on.event(group, version, plural, labels=MANAGED, id=f"{plural}_event")
    async def event(
        *, memo: Any, namespace: str | None, body: kopf.Body, type: str, **_: Any
    ) -> None:
        rt = _runtime(memo)
        rt.cache.watched(kind, body)
        if kind in cache_mod.KEPT_STATUS or type == "DELETED":
            _enqueue_owners(rt, namespace or "", body)


for _api_version, _kind in (*CHILD_KINDS, JOB):
    _watch_children(_api_version, _kind)


def child_kinds(config: OperatorSettings) -> tuple[tuple[str, str], ...]:
    """The kinds of children the operator makes (and watches) with these settings."""
    return (*CHILD_KINDS, SCALED_OBJECT) if config.keda else CHILD_KINDS


def _track(
    kept: dict[str, Mapping[str, Any]], name: str, body: kopf.Body, type: str
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
    """Keep a watched object's latest body (or forget a deleted one): (before, after)."""
    before = kept.get(name)
    if type == "DELETED":
        kept.pop(name, None)
    else:
        kept[name] = dict(body)
    return before, kept.get(name)


@kopf.on.event("", "v1", "nodes")
async def node_event(*, memo: Any, name: str, body: kopf.Body, type: str, **_: Any) -> None:
    rt = _runtime(memo)
    before, after = _track(rt.nodes, name, body, type)
    devices = rt.settings.devices
    if _node_pool(before, devices) == _node_pool(after, devices):
        return  # a heartbeat or a label that does not matter: the pools are the same
    _schedule_refresh(rt)


@kopf.on.event("resource.k8s.io", "v1", "resourceslices")
async def slice_event(*, memo: Any, name: str, body: kopf.Body, type: str, **_: Any) -> None:
    """A driver published, changed or withdrew devices: rebuild the pools (debounced)."""
    rt = _runtime(memo)
    before, after = _track(rt.slices, name, body, type)
    if before is not None and after is not None and before.get("spec") == after.get("spec"):
        return  # metadata only
    _schedule_refresh(rt)


def _schedule_refresh(rt: Runtime) -> None:
    if not rt.inventory_dirty:
        rt.inventory_dirty = True
        asyncio.get_running_loop().call_later(INVENTORY_DEBOUNCE_S, _refresh, rt)


def _node_pool(
    node: Mapping[str, Any] | None, devices: inventory_mod.Devices = DEFAULT_DEVICES
) -> tuple[DevicePool, bool, datetime | None] | None:
    """What one node contributes to the pools: its pool, whether it is cordoned and since when
    it is NotReady (None: no node)."""
    if node is None:
        return None
    cordoned = bool(node.get("spec", {}).get("unschedulable"))
    since = inventory_mod.not_ready_since(node)
    return inventory_mod.classify(node, devices), cordoned, since


def _refresh(rt: Runtime) -> None:
    rt.inventory_dirty = False
    if rt.refresh_inventory():
        log.info("device pools changed: re-planning %d models", len(rt.models))
        for key in list(rt.models):
            rt.enqueue(*key)


def run(
    *, namespaces: tuple[str, ...] = (), liveness: str | None = None, standalone: bool = False
) -> None:
    """``inferplane operator``: run until SIGTERM/SIGINT.

    Without ``--standalone`` peering is mandatory (the chart installs kopf's peering CRDs): a
    second replica waits while the first is active.
    """
    config = load_settings()
    watch = list(namespaces) or config.namespaces
    if config.keda:
        _watch_children(*SCALED_OBJECT)  # kopf watches it once KEDA's CRD exists
    started = time.monotonic()
    kopf.configure(verbose=False)
    logging.getLogger().setLevel(config.log_level.upper())
    for noisy in ("kopf.objects", "aiohttp.access"):  # a line per event / liveness probe
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not watch,
        namespaces=watch,
        liveness_endpoint=liveness,
        standalone=standalone,
        peering_name=None if standalone else config.peering,
        priority=config.priority if config.priority is not None else random.randint(1, 10**6),
    )
    log.info("operator stopped after %.0f s", time.monotonic() - started)
