# SPDX-License-Identifier: Apache-2.0
"""The planner: targets per inventory, fallback with reasons, and the operator's plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.cluster.profile import Profile

from inferplane import errors
from inferplane.api import v1alpha1
from inferplane.control import naming, planner
from inferplane.control.inventory import DevicePool, Inventory
from inferplane.control.observed import Artifact, JobPhase, JobState, Observed, PoolState
from inferplane.control.settings import OperatorSettings
from inferplane.devices import ArtifactFormat, BackendName, DeviceClass

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
CHECKPOINT = {
    "uri": "s3://models/lenet.ckpt",
    "format": "mindspore-checkpoint",
    "network": "network:lenet5",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
}
FULL = Inventory.from_nodes(
    n.manifest() for n in Profile(cpu=2, nvidia=1, ascend910=1, ascend310=1).nodes
)
CPU_ONLY = Inventory.from_nodes(
    n.manifest() for n in Profile(cpu=2, nvidia=0, ascend910=0, ascend310=0).nodes
)
NO_ASCEND = Inventory.from_nodes(
    n.manifest() for n in Profile(cpu=1, nvidia=1, ascend910=0, ascend310=0).nodes
)
SETTINGS = OperatorSettings(store="s3://store/artifacts", store_secret="store-creds")
MODEL = planner.Model("lenet", "ml", "uid-1", 3)
POOL = naming.pool_name("lenet", DeviceClass.CPU, None)


def _spec(**fields: Any) -> v1alpha1.InferenceModelSpec:
    return v1alpha1.validate_spec({"source": CHECKPOINT, **fields})


def _summary(targets: list[planner.Target]) -> list[tuple[str, str | None, str, str]]:
    return [(t.device_class.value, t.product, t.format.value, t.backend.value) for t in targets]


@pytest.mark.parametrize(
    ("spec", "inventory", "expected"),
    [
        pytest.param(
            {"devices": ["auto"]},
            FULL,
            [
                ("ascend910", None, "mindir", "mindspore"),
                ("ascend310", "Ascend310P3", "om", "acl"),
                ("nvidia", "A100-SXM4-40GB", "tensorrt", "tensorrt"),
                ("nvidia", "T4", "tensorrt", "tensorrt"),
                ("cpu", None, "onnx", "onnxruntime"),
            ],
            id="auto-everything",
        ),
        pytest.param(
            {"devices": ["ascend910", "cpu"]},
            NO_ASCEND,
            [("cpu", None, "onnx", "onnxruntime")],
            id="fallback-to-cpu",
        ),
        pytest.param(
            {"devices": ["nvidia", "cpu"]},
            FULL,
            [
                ("nvidia", "A100-SXM4-40GB", "tensorrt", "tensorrt"),
                ("nvidia", "T4", "tensorrt", "tensorrt"),
            ],
            id="first-preference-wins",
        ),
        pytest.param(
            {
                "devices": ["nvidia"],
                "deviceOptions": {"nvidia": {"products": ["T4"], "precision": "fp16"}},
            },
            FULL,
            [("nvidia", "T4", "tensorrt", "tensorrt")],
            id="products-narrow",
        ),
        pytest.param(
            {"source": {"uri": "m.onnx", "format": "onnx"}, "devices": ["auto"]},
            FULL,
            [
                ("ascend310", "Ascend310P3", "om", "acl"),
                ("nvidia", "A100-SXM4-40GB", "tensorrt", "tensorrt"),
                ("nvidia", "T4", "tensorrt", "tensorrt"),
                ("cpu", None, "onnx", "onnxruntime"),
            ],
            id="onnx-cannot-become-mindir",
        ),
        pytest.param(
            {"source": {"uri": "m.mindir", "format": "mindir"}, "devices": ["nvidia", "cpu"]},
            FULL,
            [("cpu", None, "mindir", "mindspore")],
            id="mindir-on-cpu-via-mindspore",
        ),
        pytest.param(
            {"source": {"uri": "m.air", "format": "air"}, "devices": ["auto"]},
            FULL,
            [("ascend310", "Ascend310P3", "om", "acl")],
            id="air-only-to-om",
        ),
        pytest.param(
            {"devices": ["auto"]}, CPU_ONLY, [("cpu", None, "onnx", "onnxruntime")], id="cpu-only"
        ),
    ],
)
def test_choose_targets(spec: dict[str, Any], inventory: Inventory, expected: list[Any]) -> None:
    merged = {"source": CHECKPOINT, **spec}
    assert _summary(planner.choose_targets(v1alpha1.validate_spec(merged), inventory)) == expected


def test_fallback_says_why() -> None:
    (target,) = planner.choose_targets(_spec(devices=["ascend910", "cpu"]), NO_ASCEND)
    assert target.reason.startswith("fallback to cpu: ascend910 has no capacity")
    assert "huawei.com/Ascend910" in target.reason


def test_targets_carry_placement() -> None:
    targets = planner.choose_targets(_spec(devices=["nvidia"]), FULL)
    assert targets[1].selector == {"nvidia.com/gpu.product": "T4"}
    assert targets[1].resource == "nvidia.com/gpu"
    assert targets[1].taints[0].key == "nvidia.com/gpu"


@pytest.mark.parametrize(
    ("spec", "inventory", "message"),
    [
        ({"devices": ["ascend910"]}, CPU_ONLY, "ascend910 has no capacity"),
        (
            {"devices": ["nvidia"], "deviceOptions": {"nvidia": {"products": ["H100"]}}},
            FULL,
            "none of the products H100 is present (the cluster has A100-SXM4-40GB, T4)",
        ),
        (
            {"source": {"uri": "m.onnx", "format": "onnx"}, "devices": ["ascend910"]},
            FULL,
            "ascend910 needs mindir, which a onnx source cannot become",
        ),
        ({"devices": ["auto"]}, Inventory(), "the cluster offers no device class"),
    ],
)
def test_no_target_is_a_plan_error(
    spec: dict[str, Any], inventory: Inventory, message: str
) -> None:
    with pytest.raises(errors.PlanError, match="no device can serve this model") as caught:
        planner.choose_targets(v1alpha1.validate_spec({"source": CHECKPOINT, **spec}), inventory)
    assert message in str(caught.value)


def test_local_mode_inventory() -> None:
    inventory = Inventory.from_pools(
        [DevicePool(DeviceClass.CPU, allocatable=2000, nodes=("localhost",))]
    )
    (target,) = planner.choose_targets(_spec(), inventory)
    assert (target.format, target.backend) == (ArtifactFormat.ONNX, BackendName.ONNXRUNTIME)


def test_batch_profile_only_for_fixed_profile_formats() -> None:
    spec = _spec(batching={"maxBatchSize": 8})
    assert planner.batch_profile(spec, ArtifactFormat.TENSORRT) == (1, 8, 32)
    assert planner.batch_profile(spec, ArtifactFormat.ONNX) is None


def test_conversion_identity_is_stable_and_ignores_the_model() -> None:
    spec = _spec()
    (target,) = planner.choose_targets(spec, CPU_ONLY)
    options = planner.target_options(spec, target)
    other = _spec(replicas={"min": 2, "max": 5})
    assert planner.conversion_id(spec, options) == planner.conversion_id(other, options)
    changed = _spec(verification={"samples": 16})
    assert planner.conversion_id(spec, options) != planner.conversion_id(changed, options)


# --- plan ---------------------------------------------------------------------------------------


def _plan(
    spec: v1alpha1.InferenceModelSpec,
    observed: Observed | None = None,
    previous: v1alpha1.InferenceModelStatus | None = None,
    inventory: Inventory = CPU_ONLY,
) -> planner.Plan:
    return planner.plan(
        model=MODEL,
        spec=spec,
        inventory=inventory,
        observed=observed or Observed(),
        previous=previous,
        settings=SETTINGS,
        now=NOW,
    )


def _kinds(plan: planner.Plan) -> list[tuple[str, str]]:
    return [(m["kind"], m["metadata"]["name"]) for m in plan.apply]


def _job_name(spec: v1alpha1.InferenceModelSpec, inventory: Inventory = CPU_ONLY) -> str:
    return _plan(spec, inventory=inventory).targets[0].job or ""


def test_first_plan_converts_and_creates_the_model_service() -> None:
    spec = _spec()
    plan = _plan(spec)
    job = plan.targets[0].job
    assert _kinds(plan) == [("Job", job), ("Service", "lenet")]
    assert plan.status["phase"] == "Converting"
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    assert conditions["Converted"]["status"] == "False"
    assert conditions["Converted"]["reason"] == "Converting"
    assert conditions["Ready"]["status"] == "False"
    assert plan.status["url"] == "http://lenet.ml.svc.cluster.local"
    assert plan.status["observedGeneration"] == 3
    assert [e.reason for e in plan.events] == ["Converting"]


def test_running_job_owned_by_us_is_left_alone() -> None:
    spec = _spec()
    job = _job_name(spec)
    owner = MODEL.owner(controller=False)
    observed = Observed(jobs={job: JobState(job, JobPhase.RUNNING, "", (owner,))})
    plan = _plan(spec, observed)
    assert _kinds(plan) == [("Service", "lenet")]
    assert plan.status["phase"] == "Converting"


def test_second_model_joins_a_shared_job_as_owner() -> None:
    spec = _spec()
    job = _job_name(spec)
    other = {
        "apiVersion": "inferplane.io/v1alpha1",
        "kind": "InferenceModel",
        "name": "twin",
        "uid": "uid-2",
        "controller": False,
        "blockOwnerDeletion": True,
    }
    observed = Observed(jobs={job: JobState(job, JobPhase.RUNNING, "", (other,))})
    plan = _plan(spec, observed)
    assert "Job" not in [m["kind"] for m in plan.apply]  # its template names the other model
    assert plan.join == [job]


VERIFIED = v1alpha1.TargetVerification(verified=True, max_abs_error=3e-8)


def _key(spec: v1alpha1.InferenceModelSpec, device_class: DeviceClass = DeviceClass.CPU) -> str:
    """The key the operator assigns the conversion of ``spec``'s target of ``device_class``."""
    for target in planner.choose_targets(spec, FULL):
        if target.device_class is device_class:
            options = planner.cluster_options(spec, target, SETTINGS)
            return planner.assigned_key(spec, options, namespace="ml", settings=SETTINGS)
    raise AssertionError(f"no {device_class} target")


def _stored(*keys: str) -> dict[str, Artifact]:
    """Artifacts the operator found in the store itself."""
    return {key: Artifact(key, "f" * 64, VERIFIED) for key in keys}


def test_succeeded_job_deploys_the_artifact() -> None:
    spec = _spec(replicas={"min": 1, "max": 3})
    job = _job_name(spec)
    key = _key(spec)
    observed = Observed(jobs={job: JobState(job, JobPhase.SUCCEEDED)}, artifacts=_stored(key))
    plan = _plan(spec, observed)
    assert _kinds(plan) == [  # one pool: the model's Service is the only one
        ("Deployment", POOL),
        ("HorizontalPodAutoscaler", POOL),
        ("PodDisruptionBudget", POOL),
        ("Service", "lenet"),
    ]
    target = plan.targets[0]
    assert key.startswith("ml.onnx-cpu-")
    assert (target.key, target.artifact, target.phase) == (
        key,
        f"s3://store/artifacts/{key}",
        "Deploying",
    )
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    assert conditions["Converted"]["status"] == "True"
    assert conditions["Verified"]["status"] == "True"
    assert "3e-08" in conditions["Verified"]["message"]
    assert plan.status["phase"] == "Deploying"
    assert [e.reason for e in plan.events] == ["Converted"]


def test_ready_pool_makes_the_model_ready_and_keeps_transition_times() -> None:
    spec = _spec()
    job = _job_name(spec)
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)},
        pools={POOL: PoolState(POOL, _key(spec), 1, 1, 1, True)},
        artifacts=_stored(_key(spec)),
    )
    first = _plan(spec, observed)
    assert first.status["phase"] == "Ready"
    assert first.status["readyReplicas"] == 1 and first.status["devices"] == "cpu"
    previous = v1alpha1.InferenceModelStatus.model_validate(first.status)
    later = planner.plan(
        model=MODEL,
        spec=spec,
        inventory=CPU_ONLY,
        observed=observed,
        previous=previous,
        settings=SETTINGS,
        now=NOW.replace(hour=5),
    )
    assert later.status["conditions"] == first.status["conditions"]
    assert later.events == []


def test_status_remembers_artifacts_after_the_job_is_gone() -> None:
    """A restarted operator (or a Job removed by its TTL) must not convert again."""
    spec = _spec()
    job = _job_name(spec)
    converted = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)}, artifacts=_stored(_key(spec))
    )
    done = _plan(spec, converted)
    previous = v1alpha1.InferenceModelStatus.model_validate(done.status)
    again = _plan(spec, Observed(), previous)
    assert "Job" not in [k for k, _ in _kinds(again)]
    assert again.targets[0].key == _key(spec)


def test_known_digest_lets_a_store_hit_skip_the_job() -> None:
    spec = _spec(source={**CHECKPOINT, "sha256": "a" * 64})
    key = _key(spec)
    plan = _plan(spec, Observed(artifacts={key: Artifact(key, "b" * 64)}))
    assert "Job" not in [k for k, _ in _kinds(plan)]
    assert plan.targets[0].key == key


def _cluster_key(spec: v1alpha1.InferenceModelSpec, settings: OperatorSettings = SETTINGS) -> str:
    (target,) = planner.choose_targets(spec, CPU_ONLY)
    options = planner.cluster_options(spec, target, settings)
    return planner.assigned_key(spec, options, namespace="ml", settings=settings)


def test_new_network_code_in_the_cluster_is_a_new_conversion() -> None:
    """The network's code is named by ``source.image``: another image is another key and Job,
    even under the same ``module:callable``."""
    digest = {**CHECKPOINT, "sha256": "a" * 64}
    old = _spec(source={**digest, "image": "registry.example/code@sha256:" + "1" * 64})
    new = _spec(source={**digest, "image": "registry.example/code@sha256:" + "2" * 64})
    assert _cluster_key(old) != _cluster_key(new)
    assert _job_name(old) != _job_name(new)
    # The old artifact does not stand in for the new code.
    plan = _plan(new, Observed(artifacts={_cluster_key(old): Artifact(_cluster_key(old))}))
    assert ("Job", plan.targets[0].job) in _kinds(plan)


def test_a_new_conversion_image_is_a_new_conversion() -> None:
    """The converting tool is named by its image: an upgraded image (another MindSpore, another
    TensorRT) converts again instead of reusing artifacts built by the old one."""
    spec = _spec(source={**CHECKPOINT, "sha256": "a" * 64})
    upgraded = OperatorSettings(
        store="s3://store/artifacts", image_mindspore="registry.example/mindspore:2.11"
    )
    assert _cluster_key(spec) != _cluster_key(spec, upgraded)
    old_job = _job_name(spec)
    new_plan = planner.plan(
        model=MODEL, spec=spec, inventory=CPU_ONLY, observed=Observed(
            artifacts={_cluster_key(spec): Artifact(_cluster_key(spec))}
        ), previous=None, settings=upgraded, now=NOW,
    )  # fmt: skip
    (job,) = [m for m in new_plan.apply if m["kind"] == "Job"]
    assert job["metadata"]["name"] != old_job
    assert (
        "registry.example/mindspore:2.11"
        in job["spec"]["template"]["spec"]["containers"][0]["command"]
    )


def _pinned(plan: planner.Plan) -> dict[str, Any] | None:
    found = [c for c in plan.status["conditions"] if c["type"] == "SourceImagePinned"]
    return found[0] if found else None


def test_a_mutable_source_image_tag_is_warned_in_a_condition() -> None:
    tagged = _plan(_spec(source={**CHECKPOINT, "image": "registry.example/code:latest"}))
    condition = _pinned(tagged)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "MutableTag")
    assert "registry.example/code:latest" in condition["message"]
    assert "@sha256" in condition["message"]
    pinned = _plan(
        _spec(source={**CHECKPOINT, "image": "registry.example/code@sha256:" + "1" * 64})
    )
    condition = _pinned(pinned)
    assert condition is not None and (condition["status"], condition["reason"]) == (
        "True",
        "PinnedByDigest",
    )
    assert _pinned(_plan(_spec())) is None


def test_failed_conversion_fails_the_model_with_the_message() -> None:
    spec = _spec()
    job = _job_name(spec)
    message = "inferplane: error: network:lenet5: module 'network' not found"
    plan = _plan(spec, Observed(jobs={job: JobState(job, JobPhase.FAILED, message)}))
    assert plan.status["phase"] == "Failed"
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    assert conditions["Converted"]["reason"] == "ConversionFailed"
    assert message in conditions["Converted"]["message"]
    assert conditions["Ready"]["reason"] == "Failed"
    assert [e.reason for e in plan.events] == ["ConversionFailed"]
    assert _kinds(plan) == [("Service", "lenet")]  # no retry loop: the failed Job stays


def test_failed_tensorrt_falls_back_to_onnx_on_the_same_gpu() -> None:
    spec = _spec(devices=["nvidia"], deviceOptions={"nvidia": {"products": ["T4"]}})
    job = _job_name(spec, FULL)
    plan = _plan(
        spec,
        Observed(jobs={job: JobState(job, JobPhase.FAILED, "trtexec: out of memory")}),
        inventory=FULL,
    )
    (target,) = plan.targets
    assert (target.format, target.backend, target.product) == ("onnx", "onnxruntime", "T4")
    assert "TensorRT engine failed (trtexec: out of memory)" in (target.reason or "")
    assert target.job != job and plan.status["phase"] == "Converting"


def test_some_targets_failed_is_degraded() -> None:
    spec = _spec(devices=["auto"])
    inventory = Inventory.from_nodes(
        n.manifest() for n in Profile(cpu=1, nvidia=0, ascend910=1, ascend310=0).nodes
    )
    first = _plan(spec, inventory=inventory)
    jobs = {t.device_class: t.job or "" for t in first.targets}
    observed = Observed(
        jobs={
            jobs[DeviceClass.ASCEND910]: JobState(
                jobs[DeviceClass.ASCEND910], JobPhase.FAILED, "boom"
            ),
            jobs[DeviceClass.CPU]: JobState(jobs[DeviceClass.CPU], JobPhase.SUCCEEDED),
        },
        pools={POOL: PoolState(POOL, _key(spec), 1, 1, 1, True)},
        artifacts=_stored(_key(spec)),
    )
    plan = _plan(spec, observed, inventory=inventory)
    assert plan.status["phase"] == "Degraded"
    assert plan.status["devices"] == "cpu"
    ready = {c["type"]: c for c in plan.status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Degraded")


def test_no_device_fails_without_children() -> None:
    plan = _plan(_spec(devices=["ascend910"]))
    assert plan.status["phase"] == "Failed"
    ready = {c["type"]: c for c in plan.status["conditions"]}["Ready"]
    assert ready["reason"] == "NoDevice" and "ascend910 has no capacity" in ready["message"]
    assert [e.reason for e in plan.events] == ["NoDevice"]


def test_children_no_longer_planned_are_deleted() -> None:
    from inferplane.control.observed import Child

    spec = _spec()
    job = _job_name(spec)
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)},
        artifacts=_stored(_key(spec)),
        children=(
            Child("apps/v1", "Deployment", POOL),
            Child("apps/v1", "Deployment", "lenet-nvidia-t4"),
            Child("autoscaling/v2", "HorizontalPodAutoscaler", POOL),
            Child("v1", "Service", POOL),
            Child("v1", "Service", "lenet"),
        ),
    )
    plan = _plan(spec, observed)  # min == max: no HPA; one pool: no per-pool Service
    assert plan.delete == [
        ("apps/v1", "Deployment", "lenet-nvidia-t4"),
        ("autoscaling/v2", "HorizontalPodAutoscaler", POOL),
        ("v1", "Service", POOL),
    ]


def test_new_artifact_rolls_out_while_old_pods_serve() -> None:
    spec = _spec()
    job = _job_name(spec)
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED)},
        pools={POOL: PoolState(POOL, "ml.onnx-cpu-old", 1, 1, 0, False)},
        artifacts=_stored(_key(spec)),
    )
    plan = _plan(spec, observed)
    deployment = plan.apply[0]
    assert deployment["spec"]["template"]["metadata"]["annotations"][
        "inferplane.io/artifact-key"
    ] == _key(spec)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert plan.status["phase"] == "Deploying"


# --- tenancy: the key is the operator's, scoped to the namespace --------------------------------


def test_keys_are_scoped_to_the_namespace_unless_shared() -> None:
    digest = _spec(source={**CHECKPOINT, "sha256": "a" * 64})
    (target,) = planner.choose_targets(digest, CPU_ONLY)
    options = planner.cluster_options(digest, target, SETTINGS)
    team_a = planner.assigned_key(digest, options, namespace="team-a", settings=SETTINGS)
    team_b = planner.assigned_key(digest, options, namespace="team-b", settings=SETTINGS)
    assert team_a.startswith("team-a.onnx-cpu-") and team_b.startswith("team-b.onnx-cpu-")
    assert team_a.removeprefix("team-a.") == team_b.removeprefix("team-b.")
    shared = OperatorSettings(store="s3://store/artifacts", share_artifacts=True)
    assert planner.assigned_key(digest, options, namespace="team-a", settings=shared) == (
        planner.assigned_key(digest, options, namespace="team-b", settings=shared)
    )
    # Without a digest the source is only a URI, which means something else in another
    # namespace (a pvc:// claim above all): scoped even when sharing is on.
    uri_only = _spec()
    assert planner.assigned_key(uri_only, options, namespace="team-a", settings=shared).startswith(
        "team-a."
    )


def test_a_pod_reporting_another_key_changes_nothing() -> None:
    """A succeeded Job whose pod names another namespace's artifact (any pod can carry any
    termination message) deploys nothing: the operator reads only its own key from the store."""
    spec = _spec()
    job = _job_name(spec)
    victim = "team-b.onnx-cpu-0123456789abcdef01234567"
    forged = json.dumps({"key": victim, "verification": {"verified": True}})
    observed = Observed(
        jobs={job: JobState(job, JobPhase.SUCCEEDED, forged)}, artifacts=_stored(victim)
    )
    plan = _plan(spec, observed)
    assert "Deployment" not in [k for k, _ in _kinds(plan)]
    target = plan.targets[0]
    assert target.key is None and target.phase == "Failed"
    assert _key(spec) in (target.message or "") and victim not in (target.message or "")
    # Nor does a status naming another key stand in for the store.
    forged_status = v1alpha1.InferenceModelStatus.model_validate(
        {**plan.status, "targets": [{**plan.status["targets"][0], "key": victim}]}
    )
    again = _plan(spec, Observed(), forged_status)
    assert "Deployment" not in [k for k, _ in _kinds(again)]
    assert again.targets[0].key is None


def test_an_artifact_published_before_its_job_completes_is_announced_once() -> None:
    """The publish step writes the store, then its container exits: a reconcile in between sees
    the artifact with the Job still running, and that is the conversion that ran (an Event);
    a store hit with no Job is not (the status says it)."""
    spec = _spec()
    job = _job_name(spec)
    running = Observed(jobs={job: JobState(job, JobPhase.RUNNING)}, artifacts=_stored(_key(spec)))
    assert [e.reason for e in _plan(spec, running).events] == ["Converted"]
    assert "Converted" not in [
        e.reason for e in _plan(spec, Observed(artifacts=_stored(_key(spec)))).events
    ]
