# SPDX-License-Identifier: Apache-2.0
"""The planner under the events of a real cluster: cordon, NotReady flaps, nodes and products
coming and going (make-before-break), name conflicts, the replica hand-off to and from an
autoscaler, failed conversions that must not come back, Jobs no model needs any longer.

Time and pod readiness are inputs (``now``, ``PoolState``): the planner stays pure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.cluster.profile import Profile
from tests.e2e.operator_process import CHECKPOINT

from inferplane.api import v1alpha1
from inferplane.control import inventory as inventory_mod
from inferplane.control import naming, planner
from inferplane.control.inventory import Inventory
from inferplane.control.observed import Artifact, Child, JobPhase, JobState, Observed, PoolState
from inferplane.control.settings import OperatorSettings
from inferplane.devices import DeviceClass

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(store="s3://store/artifacts")
MODEL = planner.Model("lenet", "ml", "uid-1", 1)
T4 = naming.pool_name("lenet", DeviceClass.NVIDIA, "T4")
CPU = naming.pool_name("lenet", DeviceClass.CPU, None)
PREFER_T4 = {"devices": ["nvidia", "cpu"], "deviceOptions": {"nvidia": {"products": ["T4"]}}}


def _nodes(**counts: int) -> list[dict[str, Any]]:
    profile = Profile(**{"cpu": 1, "nvidia": 1, "ascend910": 0, "ascend310": 0, **counts})
    return [n.manifest() for n in profile.nodes]


def _t4(node: dict[str, Any]) -> bool:
    return bool(node["metadata"]["labels"].get("nvidia.com/gpu.product") == "T4")


def _cordon(nodes: list[dict[str, Any]], which: Any = _t4) -> list[dict[str, Any]]:
    return [{**n, "spec": {**n["spec"], "unschedulable": True}} if which(n) else n for n in nodes]


def _not_ready(nodes: list[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    stamp = since.isoformat().replace("+00:00", "Z")
    condition = {"type": "Ready", "status": "Unknown", "lastTransitionTime": stamp}
    return [
        {**n, "status": {**n["status"], "conditions": [condition]}} if _t4(n) else n for n in nodes
    ]


def _inventory(nodes: list[dict[str, Any]], now: datetime = NOW) -> Inventory:
    return Inventory.from_nodes(nodes, now=now, not_ready_grace_s=SETTINGS.not_ready_grace_s)


def _spec(**fields: Any) -> v1alpha1.InferenceModelSpec:
    return v1alpha1.validate_spec({"source": CHECKPOINT, **PREFER_T4, **fields})


def _assigned(spec: v1alpha1.InferenceModelSpec, target: planner.Target | None = None) -> str:
    """The key the operator assigns a target's conversion, the first by default (what the store
    holds once it succeeded: the operator reads results from the store, not from pods)."""
    target = target or planner.choose_targets(spec, _inventory(_nodes()))[0]
    options = planner.cluster_options(spec, target, SETTINGS)
    return planner.assigned_key(spec, options, namespace="ml", settings=SETTINGS)


TRT_T4 = _assigned(_spec())
ONNX_CPU = _assigned(v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["cpu"]}))


def _stored(key: str) -> dict[str, Artifact]:
    return {key: Artifact(key, "f" * 64, v1alpha1.TargetVerification(verified=True))}


def _plan(
    spec: v1alpha1.InferenceModelSpec,
    inventory: Inventory,
    observed: Observed,
    previous: v1alpha1.InferenceModelStatus | None = None,
    model: planner.Model = MODEL,
    now: datetime = NOW,
) -> planner.Plan:
    return planner.plan(
        model=model, spec=spec, inventory=inventory, observed=observed, previous=previous,
        settings=SETTINGS, now=now,
    )  # fmt: skip


def _status(plan: planner.Plan) -> v1alpha1.InferenceModelStatus:
    return v1alpha1.InferenceModelStatus.model_validate(plan.status)


def _children(*pools: str) -> tuple[Child, ...]:
    return (
        *tuple(Child("apps/v1", "Deployment", p) for p in pools),
        Child("v1", "Service", "lenet"),
    )


def _serving_on_t4(spec: v1alpha1.InferenceModelSpec) -> v1alpha1.InferenceModelStatus:
    """The status of a model whose T4 pool serves (the state before each event)."""
    inventory = _inventory(_nodes())
    job = planner.job_of(spec, planner.choose_targets(spec, inventory)[0], SETTINGS)
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)},
        artifacts=_stored(TRT_T4),
        pools={T4: PoolState(T4, TRT_T4, 2, 2, 2, True, 2)},
        children=_children(T4),
    )
    status = _status(_plan(spec, inventory, observed))
    assert status.phase == "Ready" and status.devices == "nvidia/T4"
    return status


def _ready(name: str, key: str, ready: int = 1) -> PoolState:
    return PoolState(name, key, ready, ready, ready, True, ready)


# --- inventory: cordon and NotReady --------------------------------------------------------------


def test_a_not_ready_node_counts_during_its_grace() -> None:
    nodes = _nodes()
    flapping = _not_ready(nodes, NOW - timedelta(seconds=60))
    assert "T4" in _inventory(flapping).products(DeviceClass.NVIDIA)
    assert _inventory(flapping).unusable_pool(DeviceClass.NVIDIA, "T4") is None
    left = inventory_mod.grace_left(flapping, now=NOW, not_ready_grace_s=300)
    assert left is not None and abs(left - 240) < 1e-6
    gone = _not_ready(nodes, NOW - timedelta(seconds=301))
    assert "T4" not in _inventory(gone).products(DeviceClass.NVIDIA)
    assert _inventory(gone).unusable_pool(DeviceClass.NVIDIA, "T4") is not None
    assert inventory_mod.grace_left(gone, now=NOW, not_ready_grace_s=300) is None


def test_a_cordoned_class_is_unusable_but_present() -> None:
    inventory = _inventory(_cordon(_nodes()))
    assert "T4" not in inventory.products(DeviceClass.NVIDIA)
    assert inventory.unusable_pool(DeviceClass.NVIDIA, "T4") is not None
    # one node of the product still schedulable: the product is usable, nothing is unusable
    two = _nodes(nvidia=2)
    first = next(n for n in two if _t4(n))
    mixed = _cordon(two, lambda n: n is first)
    assert "T4" in _inventory(mixed).products(DeviceClass.NVIDIA)
    assert _inventory(mixed).unusable_pool(DeviceClass.NVIDIA, "T4") is None


# --- make-before-break ---------------------------------------------------------------------------


def test_cordoning_the_last_node_keeps_the_pool_and_prepares_the_fallback_beside_it() -> None:
    spec = _spec()
    previous = _serving_on_t4(spec)
    cordoned = _inventory(_cordon(_nodes()))
    observed = Observed(pools={T4: _ready(T4, TRT_T4, 2)}, children=_children(T4))
    plan = _plan(spec, cordoned, observed, previous)
    assert plan.delete == []
    kinds = [(m["kind"], m["metadata"]["name"]) for m in plan.apply]
    assert kinds[0][0] == "Job" and ("Deployment", T4) not in kinds  # the T4 pool is left as is
    status = _status(plan)
    assert status.phase == "Degraded"
    by_label = {(t.device_class.value, t.product): t for t in status.targets}
    assert by_label[("nvidia", "T4")].phase == "Retained"
    assert by_label[("nvidia", "T4")].ready_replicas == 2
    assert by_label[("cpu", None)].phase == "Converting"
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert (ready.status, ready.reason) == ("True", "Degraded")
    assert "nvidia/T4: every node is cordoned or NotReady" in ready.message
    assert status.ready_replicas == 2

    # the fallback is ready: the cordoned pool still keeps its pods (cordon is not drain)
    cpu_job = by_label[("cpu", None)].job or ""
    observed = Observed(
        jobs={cpu_job: JobState(cpu_job, JobPhase.SUCCEEDED)},
        artifacts=_stored(ONNX_CPU),
        pools={T4: _ready(T4, TRT_T4, 2), CPU: _ready(CPU, ONNX_CPU)},
        children=_children(T4, CPU),
    )
    later = _plan(spec, cordoned, observed, status)
    assert later.delete == []
    assert _status(later).phase == "Degraded"

    # uncordoned: T4 is planned again, the cpu fallback goes once T4 serves
    back = _inventory(_nodes())
    observed = Observed(
        pools={T4: _ready(T4, TRT_T4, 2), CPU: _ready(CPU, ONNX_CPU)},
        children=_children(T4, CPU),
    )
    again = _plan(spec, back, observed, _status(later))
    assert ("apps/v1", "Deployment", CPU) in again.delete
    assert _status(again).phase == "Ready"


def test_a_not_ready_flap_inside_the_grace_changes_nothing() -> None:
    spec = _spec()
    previous = _serving_on_t4(spec)
    flapping = _inventory(_not_ready(_nodes(), NOW - timedelta(seconds=30)))
    observed = Observed(pools={T4: _ready(T4, TRT_T4, 2)}, children=_children(T4))
    plan = _plan(spec, flapping, observed, previous)
    assert plan.delete == [] and _status(plan).phase == "Ready"
    assert all(t.device_class is DeviceClass.NVIDIA for t in _status(plan).targets)


def test_a_class_not_ready_past_the_grace_is_degraded_not_deleted() -> None:
    spec = _spec()
    previous = _serving_on_t4(spec)
    down = _inventory(_not_ready(_nodes(), NOW - timedelta(seconds=600)))
    # the node lifecycle controller marks the pods not ready: still, the pool is not deleted
    observed = Observed(pools={T4: PoolState(T4, TRT_T4, 2, 0, 2, True, 2)}, children=_children(T4))
    plan = _plan(spec, down, observed, previous)
    assert plan.delete == []
    assert any(t.phase == "Retained" for t in _status(plan).targets)


def _retained_t4(status: v1alpha1.InferenceModelStatus) -> v1alpha1.TargetStatus:
    (t4,) = [t for t in status.targets if t.product == "T4"]
    assert t4.phase == "Retained"
    return t4


def _t4_deleted(
    spec: v1alpha1.InferenceModelSpec, pool: PoolState
) -> tuple[Inventory, Observed, planner.Plan]:
    """A model serving on T4, then every T4 node deleted (at NOW): the inventory without them,
    the T4 pool as ``pool`` says, and the first plan."""
    previous = _serving_on_t4(spec)
    without_t4 = _inventory([n for n in _nodes() if not _t4(n)])
    observed = Observed(pools={T4: pool}, children=_children(T4))
    return without_t4, observed, _plan(spec, without_t4, observed, previous)


NVIDIA_ONLY = {"devices": ["nvidia"], "deviceOptions": PREFER_T4["deviceOptions"]}


def test_node_deleted_keeps_the_pool_for_the_grace_and_until_the_replacement_is_ready() -> None:
    spec = _spec()
    grace = SETTINGS.class_gone_grace_s
    without_t4, observed, plan = _t4_deleted(spec, _ready(T4, TRT_T4, 2))
    assert plan.delete == []  # its pods still answer: nothing else serves yet
    assert plan.recheck_s == grace
    status = _status(plan)
    t4 = _retained_t4(status)
    assert t4.class_gone_since == NOW
    assert t4.reason is not None and "no node left since 2026-11-26T02:00:00Z" in t4.reason
    assert status.phase == "Degraded"
    cpu_job = next(t.job for t in plan.targets if t.device_class is DeviceClass.CPU) or ""
    observed = Observed(
        jobs={cpu_job: JobState(cpu_job, JobPhase.SUCCEEDED)},
        artifacts=_stored(ONNX_CPU),
        pools={T4: _ready(T4, TRT_T4, 2), CPU: _ready(CPU, ONNX_CPU)},
        children=_children(T4, CPU),
    )
    # the replacement serves, but the class is gone only for a minute: the pool stays, and the
    # clock runs from the first moment (read back from the status: a restart keeps it)
    minute = _plan(spec, without_t4, observed, status, now=NOW + timedelta(seconds=60))
    assert minute.delete == [] and minute.recheck_s == grace - 60
    assert _retained_t4(_status(minute)).class_gone_since == NOW
    ready = {c.type: c for c in _status(minute).conditions}["Ready"]
    assert _status(minute).phase == "Degraded" and "nvidia/T4: no node left" in ready.message
    done = _plan(spec, without_t4, observed, _status(minute), now=NOW + timedelta(seconds=grace))
    assert ("apps/v1", "Deployment", T4) in done.delete
    assert _status(done).phase == "Ready" and done.recheck_s is None


def test_a_gone_pool_without_ready_pods_goes_when_the_grace_ends() -> None:
    spec = _spec()
    without_t4, observed, plan = _t4_deleted(spec, PoolState(T4, TRT_T4, 0, 0, 0, True, 2))
    assert plan.delete == [] and _retained_t4(_status(plan)).ready_replicas == 0
    almost = NOW + timedelta(seconds=SETTINGS.class_gone_grace_s - 1)
    assert _plan(spec, without_t4, observed, _status(plan), now=almost).delete == []
    after = NOW + timedelta(seconds=SETTINGS.class_gone_grace_s)
    assert ("apps/v1", "Deployment", T4) in _plan(
        spec, without_t4, observed, _status(plan), now=after
    ).delete


def test_a_class_back_within_the_grace_keeps_its_pool_and_drops_the_fallback() -> None:
    spec = _spec()
    *_, gone = _t4_deleted(spec, PoolState(T4, TRT_T4, 2, 0, 2, True, 2))
    cpu_job = next(t.job for t in gone.targets if t.device_class is DeviceClass.CPU) or ""
    assert cpu_job and _retained_t4(_status(gone)).class_gone_since == NOW
    back = _plan(
        spec,
        _inventory(_nodes()),
        Observed(
            jobs={cpu_job: JobState(cpu_job, JobPhase.RUNNING, owners=(MODEL.owner(),))},
            owned_jobs={cpu_job: JobState(cpu_job, JobPhase.RUNNING, owners=(MODEL.owner(),))},
            pools={T4: _ready(T4, TRT_T4, 2)},
            children=_children(T4),
        ),
        _status(gone),
        now=NOW + timedelta(seconds=60),
    )
    assert back.delete == [("batch/v1", "Job", cpu_job)]  # the fallback's conversion, only
    status = _status(back)
    assert status.phase == "Ready" and [t.phase for t in status.targets] == ["Ready"]
    assert status.targets[0].class_gone_since is None and back.recheck_s is None


def test_a_gone_class_whose_pods_still_serve_alone_is_never_removed() -> None:
    spec = _spec(**NVIDIA_ONLY)
    without_t4, observed, first = _t4_deleted(spec, _ready(T4, TRT_T4, 2))
    later = _plan(spec, without_t4, observed, _status(first), now=NOW + timedelta(hours=1))
    assert later.delete == [] and later.recheck_s is None
    status = _status(later)
    assert status.phase == "Degraded" and status.ready_replicas == 2
    assert "ready pods serve until the new pools are ready" in (_retained_t4(status).reason or "")
    # its pods gone too: nothing serves, the model fails (NoDevice) and the pool goes
    empty = Observed(pools={T4: PoolState(T4, TRT_T4, 2, 0, 0, True, 2)}, children=_children(T4))
    gone = _plan(spec, without_t4, empty, status, now=NOW + timedelta(hours=1))
    assert ("apps/v1", "Deployment", T4) in gone.delete and _status(gone).phase == "Failed"


def test_a_gone_class_with_no_fallback_says_the_pool_is_kept() -> None:
    spec = _spec(**NVIDIA_ONLY)
    *_, plan = _t4_deleted(spec, PoolState(T4, TRT_T4, 2, 0, 2, True, 2))
    assert plan.delete == []
    status = _status(plan)
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert status.phase == "Failed" and ready.reason == "NoDevice"
    assert "nvidia/T4: no node left since" in ready.message and "kept until" in ready.message


def test_a_better_class_appearing_keeps_the_old_pool_until_it_serves() -> None:
    """A new GPU product (the preferred class) appears: the cpu pool serves until it is ready."""
    spec = _spec()
    cpu_only = _inventory(_nodes(nvidia=0))
    (cpu_target,) = planner.choose_targets(spec, cpu_only)
    cpu_job = planner.job_of(spec, cpu_target, SETTINGS)
    observed = Observed(
        jobs={cpu_job: JobState(cpu_job, JobPhase.SUCCEEDED)},
        artifacts=_stored(ONNX_CPU),
        pools={CPU: _ready(CPU, ONNX_CPU)},
        children=_children(CPU),
    )
    before = _status(_plan(spec, cpu_only, observed))
    assert before.devices == "cpu" and before.phase == "Ready"
    with_gpu = _inventory(_nodes())
    plan = _plan(spec, with_gpu, Observed(pools=observed.pools, children=observed.children), before)
    assert plan.delete == []
    assert _status(plan).phase == "Degraded"  # serving on the retained pool while converting
    t4_job = next(t.job for t in plan.targets if t.product == "T4") or ""
    observed = Observed(
        jobs={t4_job: JobState(t4_job, JobPhase.SUCCEEDED)},
        artifacts=_stored(TRT_T4),
        pools={CPU: _ready(CPU, ONNX_CPU), T4: _ready(T4, TRT_T4)},
        children=_children(CPU, T4),
    )
    done = _plan(spec, with_gpu, observed, _status(plan))
    assert ("apps/v1", "Deployment", CPU) in done.delete


def test_no_device_left_but_a_cordoned_pool_serves_is_degraded_not_failed() -> None:
    spec = v1alpha1.validate_spec(
        {"source": CHECKPOINT, "devices": ["nvidia"], "deviceOptions": PREFER_T4["deviceOptions"]}
    )
    previous = _serving_on_t4(spec)
    cordoned = _inventory(_cordon(_nodes()))
    observed = Observed(pools={T4: _ready(T4, TRT_T4, 2)}, children=_children(T4))
    plan = _plan(spec, cordoned, observed, previous)
    assert plan.delete == []
    status = _status(plan)
    assert status.phase == "Degraded" and status.ready_replicas == 2
    assert "NoDevice" not in [e.reason for e in plan.events]


# --- names that belong to someone else -----------------------------------------------------------


def test_a_conflicting_pool_object_is_reported_and_not_applied() -> None:
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["cpu"]})
    inventory = _inventory(_nodes())
    job = planner.job_of(spec, planner.choose_targets(spec, inventory)[0], SETTINGS)
    message = f"Deployment {CPU} exists and is controlled by nobody"
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)},
        artifacts=_stored(ONNX_CPU),
        conflicts={("Deployment", CPU): message},
    )
    plan = _plan(spec, inventory, observed)
    assert [m["kind"] for m in plan.apply] == ["Service"]
    (target,) = plan.targets
    assert target.phase == "Failed" and target.message == message
    assert "NameConflict" in [e.reason for e in plan.events]


def test_a_conflicting_model_service_fails_the_model() -> None:
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["cpu"]})
    message = "Service lenet exists and is controlled by InferenceModel other"
    plan = _plan(spec, _inventory(_nodes()), Observed(conflicts={("Service", "lenet"): message}))
    assert "Service" not in [m["kind"] for m in plan.apply]
    status = _status(plan)
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert status.phase == "Failed" and ready.reason == "NameConflict" and ready.message == message


def test_selectors_are_the_uid_and_the_pool() -> None:
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["cpu"]})
    inventory = _inventory(_nodes())
    job = planner.job_of(spec, planner.choose_targets(spec, inventory)[0], SETTINGS)
    observed = Observed(jobs={job: JobState(job, JobPhase.SUCCEEDED)}, artifacts=_stored(ONNX_CPU))
    plan = _plan(spec, inventory, observed)
    deployment = next(m for m in plan.apply if m["kind"] == "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == {
        naming.MODEL_UID_LABEL: "uid-1",
        naming.COMPONENT_LABEL: naming.SERVER,
        naming.POOL_LABEL: CPU,
    }
    service = next(m for m in plan.apply if m["kind"] == "Service")
    assert service["spec"]["selector"] == {
        naming.MODEL_UID_LABEL: "uid-1",
        naming.COMPONENT_LABEL: naming.SERVER,
    }
    assert plan.status["selector"] == naming.selector_string(service["spec"]["selector"])


# --- replicas: fixed <-> autoscaled --------------------------------------------------------------


def _pool_plan(replicas: dict[str, int], pool: PoolState, *children: Child) -> planner.Plan:
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["cpu"], "replicas": replicas})
    inventory = _inventory(_nodes())
    job = planner.job_of(spec, planner.choose_targets(spec, inventory)[0], SETTINGS)
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)},
        artifacts=_stored(ONNX_CPU),
        pools={CPU: pool},
        children=(Child("apps/v1", "Deployment", CPU), *children),
    )
    return _plan(spec, inventory, observed)


def test_turning_autoscaling_on_hands_the_replicas_over_at_the_current_count() -> None:
    plan = _pool_plan({"min": 3, "max": 10}, _ready(CPU, ONNX_CPU, 3))
    deployment = next(m for m in plan.apply if m["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]
    (handover,) = plan.handover
    assert handover == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CPU, "namespace": "ml"},
        "spec": {"replicas": 3},
    }
    # more pods ready than the new minimum (an earlier fixed count of 5): none is lost
    (more,) = _pool_plan({"min": 2, "max": 10}, _ready(CPU, ONNX_CPU, 5)).handover
    assert more["spec"]["replicas"] == 5


def test_once_the_autoscaler_exists_the_operator_leaves_replicas_to_it() -> None:
    hpa = Child("autoscaling/v2", "HorizontalPodAutoscaler", CPU)
    plan = _pool_plan({"min": 3, "max": 10}, _ready(CPU, ONNX_CPU, 7), hpa)
    assert plan.handover == []
    assert ("HorizontalPodAutoscaler", CPU) in [
        (m["kind"], m["metadata"]["name"]) for m in plan.apply
    ]


def test_turning_autoscaling_off_sets_the_count_and_removes_the_autoscaler() -> None:
    hpa = Child("autoscaling/v2", "HorizontalPodAutoscaler", CPU)
    plan = _pool_plan({"min": 4, "max": 4}, _ready(CPU, ONNX_CPU, 7), hpa)
    deployment = next(m for m in plan.apply if m["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 4
    assert plan.handover == []
    assert ("autoscaling/v2", "HorizontalPodAutoscaler", CPU) in plan.delete


def test_a_single_replica_gets_no_budget_and_one_pool_no_pool_service() -> None:
    plan = _pool_plan({"min": 1, "max": 1}, _ready(CPU, ONNX_CPU))
    assert [m["kind"] for m in plan.apply] == ["Deployment", "Service"]
    assert "PoolReady" not in [e.reason for e in plan.events]  # "Ready" says it once
    two = _pool_plan({"min": 2, "max": 2}, _ready(CPU, ONNX_CPU, 2))
    assert [m["kind"] for m in two.apply] == ["Deployment", "PodDisruptionBudget", "Service"]


def test_pools_ready_with_the_model_get_its_ready_event_alone() -> None:
    """Two pools: one turning ready first gets a PoolReady; pools turning ready in the same
    reconcile as the model get none beside its Ready, which names them all."""
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["nvidia"]})
    inventory = _inventory(_nodes())
    targets = planner.choose_targets(spec, inventory)
    keys = [_assigned(spec, t) for t in targets]
    pools = [planner.pool_name("lenet", t) for t in targets]
    assert len(pools) == 2

    def plan_with(ready: list[int], previous: v1alpha1.InferenceModelStatus | None) -> planner.Plan:
        observed = Observed(
            artifacts={k: v for key in keys for k, v in _stored(key).items()},
            pools={p: _ready(p, k, r) for p, k, r in zip(pools, keys, ready, strict=True)},
            children=_children(*pools),
        )
        return _plan(spec, inventory, observed, previous)

    deploying = _status(plan_with([0, 0], None))
    assert deploying.phase == "Deploying"
    together = plan_with([1, 1], deploying)
    assert [e.reason for e in together.events] == ["Ready"]
    first = plan_with([1, 0], deploying)
    assert [e.reason for e in first.events] == ["PoolReady"]
    second = plan_with([1, 1], _status(first))
    assert [e.reason for e in second.events] == ["Ready"]


# --- conversion lifecycle ------------------------------------------------------------------------


def test_a_failed_conversion_is_recorded_and_not_resurrected_when_its_job_goes() -> None:
    spec = v1alpha1.validate_spec(
        {"source": {**CHECKPOINT, "sha256": "a" * 64}, "devices": ["cpu"]}
    )
    inventory = _inventory(_nodes())
    (target,) = planner.choose_targets(spec, inventory)
    job = planner.job_of(spec, target, SETTINGS)
    failed = _plan(
        spec, inventory, Observed(jobs={job: JobState(job, JobPhase.FAILED, "network: boom")})
    )
    status = _status(failed)
    (record,) = status.failed_conversions
    assert record.job == job and record.target == "cpu" and record.message == "network: boom"
    options = planner.cluster_options(spec, target, SETTINGS)
    assert record.key == planner.assigned_key(spec, options, namespace="ml", settings=SETTINGS)
    assert record.key and record.key in failed.status["failedConversions"][0]["key"]
    # the Job expired by its TTL (or the operator restarted): no new Job, still Failed
    again = _plan(spec, inventory, Observed(), status)
    assert "Job" not in [m["kind"] for m in again.apply]
    assert _status(again).phase == "Failed" and _status(again).failed_conversions == [record]
    assert "ConversionFailed" not in [e.reason for e in again.events]
    # the user asks for a retry: a new Job (a new name), the record goes
    retried = _plan(
        spec, inventory, Observed(), _status(again), planner.Model("lenet", "ml", "uid-1", 1, "2")
    )
    (new_job,) = [m for m in retried.apply if m["kind"] == "Job"]
    assert new_job["metadata"]["name"] != job
    assert _status(retried).phase == "Converting" and _status(retried).failed_conversions == []
    # a spec change is a new conversion too
    edited = v1alpha1.validate_spec(
        {"source": {**CHECKPOINT, "sha256": "b" * 64}, "devices": ["cpu"]}
    )
    changed = _plan(edited, inventory, Observed(), _status(again))
    assert next(m["kind"] for m in changed.apply) == "Job"


def test_a_failed_tensorrt_build_is_not_rebuilt_while_onnx_serves() -> None:
    spec = _spec()
    inventory = _inventory(_nodes())
    trt = planner.job_of(spec, planner.choose_targets(spec, inventory)[0], SETTINGS)
    first = _plan(
        spec, inventory, Observed(jobs={trt: JobState(trt, JobPhase.FAILED, "trtexec: oom")})
    )
    status = _status(first)
    assert [f.job for f in status.failed_conversions] == [trt]
    (target,) = status.targets
    assert target.format.value == "onnx"
    later = _plan(spec, inventory, Observed(), status)
    assert trt not in [m["metadata"]["name"] for m in later.apply]
    assert [f.job for f in _status(later).failed_conversions] == [trt]


def test_jobs_no_longer_planned_are_deleted_or_left_to_their_other_owners() -> None:
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": ["cpu"]})
    inventory = _inventory(_nodes())
    planned = planner.job_of(spec, planner.choose_targets(spec, inventory)[0], SETTINGS)
    mine = MODEL.owner(controller=False)
    other = {**mine, "name": "twin", "uid": "uid-2"}
    observed = Observed(
        owned_jobs={
            planned: JobState(planned, JobPhase.RUNNING, "", (mine,)),
            "convert-cpu-old": JobState("convert-cpu-old", JobPhase.RUNNING, "", (mine,)),
            "convert-cpu-shared": JobState(
                "convert-cpu-shared", JobPhase.RUNNING, "", (other, mine)
            ),
        },
        jobs={planned: JobState(planned, JobPhase.RUNNING, "", (mine,))},
    )
    plan = _plan(spec, inventory, observed)
    assert ("batch/v1", "Job", "convert-cpu-old") in plan.delete
    assert ("batch/v1", "Job", planned) not in plan.delete
    assert plan.disown == [("convert-cpu-shared", [other])]
