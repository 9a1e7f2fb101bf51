# SPDX-License-Identifier: Apache-2.0
"""Planning on clusters that offer devices through Dynamic Resource Allocation (and mixed ones):
pools per product and way of offering, ResourceClaimTemplates instead of extended resources,
one artifact per product whatever its spelling, cpu pools kept off DRA nodes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.cluster.profile import Profile

from inferplane.api import v1alpha1
from inferplane.control import builders, planner
from inferplane.control.inventory import Inventory
from inferplane.control.observed import Artifact, Child, Observed, PoolState
from inferplane.control.settings import OperatorSettings
from inferplane.devices import DeviceClass

NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
SETTINGS = OperatorSettings(store="s3://store/artifacts")
MODEL = planner.Model("lenet", "ml", "uid-1", 1)
ONNX = {"uri": "s3://models/lenet.onnx", "format": "onnx", "sha256": "ab" * 32}
DRA = Profile(cpu=1, nvidia=0, ascend910=0, ascend310=1, nvidia_dra=1, ascend_dra=0)
MIXED = Profile(cpu=1, nvidia=1, ascend910=0, ascend310=0, nvidia_dra=1, ascend_dra=0)


def _inventory(profile: Profile) -> Inventory:
    return Inventory.from_nodes(
        (n.manifest() for n in profile.nodes), SETTINGS.devices, profile.resource_slices()
    )


def _spec(**fields: Any) -> v1alpha1.InferenceModelSpec:
    return v1alpha1.validate_spec({"source": ONNX, **fields})


def _key(spec: v1alpha1.InferenceModelSpec, target: planner.Target) -> str:
    """The store key the operator assigns ``target``'s conversion."""
    options = planner.cluster_options(spec, target, SETTINGS)
    return planner.assigned_key(spec, options, namespace=MODEL.namespace, settings=SETTINGS)


def _converted(
    spec: v1alpha1.InferenceModelSpec,
    inventory: Inventory,
    previous: v1alpha1.InferenceModelStatus | None = None,
    **kw: Any,
) -> planner.Plan:
    """The plan once every target's artifact is in the store."""
    targets, _ = planner.choose(spec, inventory, SETTINGS.devices)
    keys = {_key(spec, t) for t in targets}
    artifacts = {k: Artifact(k, "f" * 64) for k in keys}
    return planner.plan(
        model=MODEL, spec=spec, inventory=inventory, previous=previous, settings=SETTINGS,
        now=NOW, observed=Observed(artifacts=artifacts, **kw),
    )  # fmt: skip


def _named(plan: planner.Plan, kind: str) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in plan.apply if m["kind"] == kind}


def _pools(plan: planner.Plan) -> dict[str, dict[str, Any]]:
    """Deployments by pool name without its hash (``lenet-nvidia-t4-dra``)."""
    return {unhashed(name): m for name, m in _named(plan, "Deployment").items()}


def unhashed(pool: str) -> str:
    return pool.rsplit("-", 1)[0]


def _limits(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return dict(container["resources"].get("limits") or {})


def test_an_auto_model_gets_a_pool_per_product_and_class_claiming_through_dra() -> None:
    inventory = _inventory(DRA)
    plan = _converted(_spec(), inventory)
    assert [(t.device_class, t.product, t.device_request) for t in plan.targets] == [
        (DeviceClass.ASCEND310, "Ascend310P3", v1alpha1.DeviceRequest.DEVICE_PLUGIN),
        (DeviceClass.NVIDIA, "A100-SXM4-40GB", v1alpha1.DeviceRequest.DRA),
        (DeviceClass.NVIDIA, "T4", v1alpha1.DeviceRequest.DRA),
        (DeviceClass.CPU, None, None),
    ]
    deployments = _pools(plan)
    assert sorted(deployments) == [
        "lenet-ascend310-ascend310p3", "lenet-cpu", "lenet-nvidia-a100-sxm4-40gb-dra",
        "lenet-nvidia-t4-dra",
    ]  # fmt: skip
    templates = _named(plan, "ResourceClaimTemplate")
    for pool, spelled in (("a100-sxm4-40gb", "NVIDIA A100-SXM4-40GB"), ("t4", "Tesla T4")):
        deployment = deployments[f"lenet-nvidia-{pool}-dra"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert "nvidia.com/gpu" not in _limits(deployment)
        assert container["resources"]["claims"] == [{"name": "device"}]
        assert "nvidia.com/gpu.product" not in (pod.get("nodeSelector") or {})
        (claim,) = pod["resourceClaims"]
        template = templates[claim["resourceClaimTemplateName"]]
        assert template["metadata"]["ownerReferences"][0]["uid"] == MODEL.uid
        assert unhashed(template["spec"]["metadata"]["labels"]["inferplane.io/pool"]) == (
            f"lenet-nvidia-{pool}-dra"
        )
        (request,) = template["spec"]["spec"]["devices"]["requests"]
        assert request["exactly"]["deviceClassName"] == "gpu.nvidia.com"
        assert request["exactly"]["count"] == 1
        (selector,) = request["exactly"]["selectors"]
        assert f'["{spelled}"]' in selector["cel"]["expression"]
        assert 'device.attributes["gpu.nvidia.com"].productName' in selector["cel"]["expression"]
    ascend = deployments["lenet-ascend310-ascend310p3"]
    assert _limits(ascend)["huawei.com/Ascend310P"] == 1
    assert "resourceClaims" not in ascend["spec"]["template"]["spec"]


def test_cpu_pods_and_cpu_side_jobs_keep_off_dra_nodes() -> None:
    """A DRA GPU node carries none of the labels the cpu pool avoids: it is avoided by name."""
    inventory = _inventory(DRA)
    plan = _converted(_spec(devices=["cpu"]), inventory)
    pod = _pools(plan)["lenet-cpu"]["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert {
        "key": "kubernetes.io/hostname",
        "operator": "NotIn",
        "values": ["kwok-a100-dra-0", "kwok-t4-dra-0"],
    } in term["matchExpressions"]
    assert "resourceClaims" not in pod


def test_a_tensorrt_build_on_a_dra_node_claims_its_gpu() -> None:
    spec = v1alpha1.validate_spec({"source": {**ONNX, "sha256": None}, "devices": ["nvidia"]})
    inventory = _inventory(DRA)
    plan = planner.plan(
        model=MODEL, spec=spec, inventory=inventory, observed=Observed(), previous=None,
        settings=SETTINGS, now=NOW,
    )  # fmt: skip
    jobs = _named(plan, "Job")
    templates = _named(plan, "ResourceClaimTemplate")
    assert len(jobs) == 2 and len(templates) == 2
    for job in jobs.values():
        pod = job["spec"]["template"]["spec"]
        (claim,) = pod["resourceClaims"]
        assert claim["resourceClaimTemplateName"] in templates
        (convert,) = [c for c in pod["initContainers"] if c["name"] == "convert"]
        resources = convert["resources"]  # the step that builds the engine holds the GPU
        assert resources["claims"] == [{"name": "device"}]
        assert "nvidia.com/gpu" not in resources.get("limits", {})
        assert "claims" not in pod["containers"][0]["resources"]
        assert "nodeSelector" not in pod
    kept = {name for kind, name in ((m["kind"], m["metadata"]["name"]) for m in plan.apply)}
    assert set(templates) <= kept


def test_a_mixed_cluster_serves_one_product_from_a_pool_of_each_kind_with_one_artifact() -> None:
    """Same product through the device plugin and through DRA: a pod requests its device one
    way or the other, so each kind is a pool; the TensorRT engine (and its Job) is shared."""
    spec = v1alpha1.validate_spec(
        {"source": {**ONNX, "sha256": None}, "deviceOptions": {"nvidia": {"products": ["T4"]}}}
    )
    inventory = _inventory(MIXED)
    first = planner.plan(
        model=MODEL, spec=spec, inventory=inventory, observed=Observed(), previous=None,
        settings=SETTINGS, now=NOW,
    )  # fmt: skip
    gpu = [t for t in first.targets if t.device_class is DeviceClass.NVIDIA]
    assert [(t.product, t.device_request) for t in gpu] == [
        ("T4", v1alpha1.DeviceRequest.DRA),
        ("T4", v1alpha1.DeviceRequest.DEVICE_PLUGIN),
    ]
    assert gpu[0].job == gpu[1].job
    assert len([m for m in first.apply if m["metadata"]["name"] == gpu[0].job]) == 1
    job = _named(first, "Job")[gpu[0].job or ""]
    (template,) = _named(first, "ResourceClaimTemplate")
    assert (
        job["spec"]["template"]["spec"]["resourceClaims"][0]["resourceClaimTemplateName"]
        == template
    )
    done = _converted(_spec(deviceOptions={"nvidia": {"products": ["T4"]}}), inventory)
    deployments = _pools(done)
    assert _limits(deployments["lenet-nvidia-t4"])["nvidia.com/gpu"] == 1
    assert deployments["lenet-nvidia-t4"]["spec"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "T4"
    }
    assert "resourceClaims" in deployments["lenet-nvidia-t4-dra"]["spec"]["template"]["spec"]
    keys = {t.key for t in done.targets if t.device_class is DeviceClass.NVIDIA}
    assert len(keys) == 1


def test_any_spelling_of_a_product_in_the_spec_picks_the_pool_and_one_artifact() -> None:
    inventory = _inventory(MIXED)
    keys = set()
    for spelled in ("NVIDIA-A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"):
        spec = _spec(devices=["nvidia"], deviceOptions={"nvidia": {"products": [spelled]}})
        targets = planner.choose_targets(spec, inventory, SETTINGS.devices)
        assert {t.product for t in targets} == {"A100-SXM4-40GB"}
        assert len(targets) == 2  # the plugin pool and the DRA pool
        keys |= {_key(spec, t) for t in targets}
    assert len(keys) == 1


def test_min_memory_adds_a_capacity_selector() -> None:
    spec = _spec(devices=["nvidia"], deviceOptions={"nvidia": {"minMemory": "24Gi"}})
    plan = _converted(spec, _inventory(DRA))
    expressions = {
        name: [s["cel"]["expression"] for s in t["spec"]["spec"]["devices"]["requests"][0]
               ["exactly"]["selectors"]]
        for name, t in _named(plan, "ResourceClaimTemplate").items()
    }  # fmt: skip
    assert len(expressions) == 2
    for found in expressions.values():
        assert found[1] == (
            'has(device.capacity["gpu.nvidia.com"].memory) && '
            'device.capacity["gpu.nvidia.com"].memory.compareTo(quantity("24Gi")) >= 0'
        )


def test_the_status_names_the_device_each_ready_pod_was_allocated() -> None:
    allocated = v1alpha1.AllocatedDevice(
        pod="p-1", node="kwok-t4-dra-0", driver="gpu.nvidia.com", pool="kwok-t4-dra-0",
        device="gpu-2",
    )  # fmt: skip
    spec = _spec(devices=["nvidia"])
    targets = planner.choose_targets(spec, _inventory(DRA), SETTINGS.devices)
    t4_target = next(t for t in targets if t.product == "T4")
    plan = _converted(
        spec, _inventory(DRA),
        allocated={planner.pool_name("lenet", t4_target): (allocated,)},
    )  # fmt: skip
    t4 = next(t for t in plan.status["targets"] if t["product"] == "T4")
    assert t4["deviceRequest"] == "DRA"
    assert t4["allocated"] == [
        {"pod": "p-1", "node": "kwok-t4-dra-0", "driver": "gpu.nvidia.com",
         "pool": "kwok-t4-dra-0", "device": "gpu-2"}
    ]  # fmt: skip


def test_a_changed_claim_spec_is_a_new_template() -> None:
    """ResourceClaimTemplate specs are immutable: the name follows the spec."""
    offer = _inventory(DRA).pools_of(DeviceClass.NVIDIA)[0].dra
    assert offer is not None
    one = builders.claim_template_spec(offer)
    other = builders.claim_template_spec(offer, min_memory="24Gi")
    assert builders.claim_template_name("p", one) == builders.claim_template_name("p", one)
    assert builders.claim_template_name("p", one) != builders.claim_template_name("p", other)


def test_a_cordoned_dra_pool_keeps_serving_with_its_claim_template() -> None:
    """Make-before-break for DRA pools: the T4 DRA node cordoned, its pool is retained and so
    is the claim template its pods were made from (a restarted pod needs it)."""
    spec = _spec(devices=["nvidia"])
    before = _converted(spec, _inventory(DRA))
    t4 = next(t for t in before.targets if t.product == "T4")
    pool = planner.pool_name("lenet", t4)
    (template,) = [n for n in _named(before, "ResourceClaimTemplate") if n.startswith(f"{pool}-")]
    cordoned = [n.manifest() for n in DRA.nodes]
    for node in cordoned:
        if node["metadata"]["name"] == "kwok-t4-dra-0":
            node["spec"]["unschedulable"] = True
    inventory = Inventory.from_nodes(cordoned, SETTINGS.devices, DRA.resource_slices())
    previous = v1alpha1.InferenceModelStatus.model_validate(before.status)
    after = _converted(
        spec, inventory, previous=previous,
        pools={pool: PoolState(pool, t4.key, 1, 1, 1, True)},
        children=(
            Child("apps/v1", "Deployment", pool),
            Child("resource.k8s.io/v1", "ResourceClaimTemplate", template),
        ),
    )  # fmt: skip
    assert ("resource.k8s.io/v1", "ResourceClaimTemplate", template) not in after.delete
    assert ("apps/v1", "Deployment", pool) not in after.delete
    retained = [t for t in after.status["targets"] if t.get("phase") == "Retained"]
    assert [(t["product"], t["deviceRequest"]) for t in retained] == [("T4", "DRA")]
