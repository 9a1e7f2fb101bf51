# SPDX-License-Identifier: Apache-2.0
"""The per-class device table (INFERPLANE_DEVICES): parsed from the environment, recognised by the
inventory, and carried by the planner into the pods it builds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.cluster.profile import Profile

from inferplane.api import v1alpha1
from inferplane.control import planner
from inferplane.control.inventory import Inventory, classify
from inferplane.control.observed import Artifact, JobPhase, JobState, Observed
from inferplane.control.settings import DEFAULT_DEVICES, OperatorSettings
from inferplane.devices import PROFILES, ArtifactFormat, BackendName, DeviceClass

CHECKPOINT = {
    "uri": "s3://models/lenet.ckpt",
    "format": "mindspore-checkpoint",
    "network": "network:lenet5",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
}
MODEL = planner.Model("lenet", "ml", "uid-1", 1)


def _settings(monkeypatch: pytest.MonkeyPatch, devices: dict[str, Any]) -> OperatorSettings:
    monkeypatch.setenv("INFERPLANE_DEVICES", json.dumps(devices))
    monkeypatch.setenv("INFERPLANE_STORE", "s3://store/artifacts")
    return OperatorSettings()


def _node(name: str, allocatable: dict[str, str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {"allocatable": {"cpu": "32", **allocatable}},
    }


def _deployment(
    settings: OperatorSettings, inventory: Inventory, device: str
) -> tuple[planner.Target, dict[str, Any]]:
    """The server Deployment the planner builds once the target's conversion succeeded."""
    spec = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": [device]})
    (target,) = planner.choose_targets(spec, inventory)

    def plan(observed: Observed) -> planner.Plan:
        return planner.plan(
            model=MODEL, spec=spec, inventory=inventory, observed=observed, previous=None,
            settings=settings, now=datetime(2026, 11, 26, tzinfo=UTC),
        )  # fmt: skip

    job = plan(Observed()).targets[0].job or ""
    options = planner.cluster_options(spec, target, settings)
    key = planner.assigned_key(spec, options, namespace=MODEL.namespace, settings=settings)
    stored = {key: Artifact(key, "f" * 64)}
    done = plan(Observed(jobs={job: JobState(job, JobPhase.SUCCEEDED)}, artifacts=stored))
    (deployment,) = [m for m in done.apply if m["kind"] == "Deployment"]
    return target, deployment


def test_defaults_are_the_device_vocabulary() -> None:
    """The table's defaults are devices.PROFILES' names, and give the manifests of before."""
    settings = OperatorSettings()
    for device_class, profile in PROFILES.items():
        device = settings.devices[device_class]
        assert device.resource_names[: len(profile.resources)] == profile.resources
    assert settings.devices == DEFAULT_DEVICES
    assert settings.devices[DeviceClass.NVIDIA].runtime_class_name == "nvidia"
    image = settings.server_image(DeviceClass.ASCEND910, BackendName.MINDSPORE)
    assert image.endswith("/mindspore:0.1.0-ascend")
    assert settings.server_image(DeviceClass.CPU, BackendName.MINDSPORE).endswith("-cpu")
    assert settings.conversion_image(ArtifactFormat.ONNX).endswith("/mindspore:0.1.0-cpu")
    assert settings.avoided_labels(DeviceClass.CPU) == [
        "nvidia.com/gpu.present", "nvidia.com/gpu.product", "node.kubernetes.io/npu.chip.name",
        "accelerator", "node-role.kubernetes.io/edge",
    ]  # fmt: skip
    assert settings.avoided_labels(DeviceClass.NVIDIA) == []


@pytest.mark.parametrize(
    ("device", "override", "node", "resource", "selector"),
    [
        pytest.param(
            "nvidia",
            {"resourceNames": ["nvidia.com/mig-1g.10gb"], "productLabel": "example.com/gpu"},
            _node("mig", {"nvidia.com/mig-1g.10gb": "7"}, {"example.com/gpu": "A100-MIG-1g"}),
            "nvidia.com/mig-1g.10gb",
            {"example.com/gpu": "A100-MIG-1g"},
            id="nvidia-mig",
        ),
        pytest.param(
            "ascend910",
            {
                "resourceNames": ["vendor.example/npu"],
                "productLabel": "vendor.example/chip",
                "nodeSelector": {"vendor.example/npu-node": "true"},
            },
            _node(
                "npu",
                {"vendor.example/npu": "8"},
                {"vendor.example/chip": "910B3", "vendor.example/npu-node": "true"},
            ),
            "vendor.example/npu",
            {"vendor.example/npu-node": "true", "vendor.example/chip": "910B3"},
            id="ascend910-renamed",
        ),
    ],
)
def test_overridden_names_are_recognised_and_requested(
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    override: dict[str, Any],
    node: dict[str, Any],
    resource: str,
    selector: dict[str, str],
) -> None:
    extra = {
        "runtimeClassName": "vendor-runtime",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi"}},
    }
    settings = _settings(monkeypatch, {device: {**override, **extra}})
    default = classify(node)
    assert default.device_class is DeviceClass.CPU  # the default names do not see the device
    inventory = Inventory.from_nodes([node], settings.devices)
    (pool,) = inventory.pools
    assert (pool.device_class.value, pool.resource, dict(pool.selector)) == (
        device,
        resource,
        selector,
    )
    target, deployment = _deployment(settings, inventory, device)
    assert target.resource == resource
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", resource: 1},
        "limits": {"memory": "32Gi", resource: 1},
    }
    assert pod["nodeSelector"] == selector
    assert pod["runtimeClassName"] == "vendor-runtime"
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml"}]
    unserved = v1alpha1.validate_spec({"source": CHECKPOINT, "devices": [device]})
    _, skipped = planner.choose(unserved, Inventory(), settings.devices)
    assert skipped == [f"{device} has no capacity (no node offers {resource})"]
    # a field left out keeps its default; another class keeps all of its defaults
    untouched = DEFAULT_DEVICES[DeviceClass(device)]
    assert settings.devices[DeviceClass(device)].images == untouched.images
    assert settings.devices[DeviceClass.EDGE] == DEFAULT_DEVICES[DeviceClass.EDGE]


def test_cpu_pods_keep_off_renamed_accelerator_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(
        monkeypatch,
        {"nvidia": {"productLabel": "example.com/gpu"}, "cpu": {"avoidLabels": ["gpu-node"]}},
    )
    nodes = [n.manifest() for n in Profile(cpu=1, nvidia=0, ascend910=0, ascend310=0).nodes]
    _, deployment = _deployment(settings, Inventory.from_nodes(nodes, settings.devices), "cpu")
    pod = deployment["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = [e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]]
    assert keys == ["gpu-node", "node.kubernetes.io/npu.chip.name", "example.com/gpu",
                    "node-role.kubernetes.io/edge"]  # fmt: skip
    assert pod["containers"][0]["resources"] == DEFAULT_DEVICES[DeviceClass.CPU].resources
    assert "runtimeClassName" not in pod


@pytest.mark.parametrize(
    "devices",
    [{"gpu": {}}, {"nvidia": {"resourceName": "x"}}, {"cpu": {"resources": "lots"}}],
    ids=["unknown-class", "unknown-field", "wrong-type"],
)
def test_bad_tables_are_refused(monkeypatch: pytest.MonkeyPatch, devices: dict[str, Any]) -> None:
    from inferplane import errors
    from inferplane.control import handlers

    monkeypatch.setenv("INFERPLANE_DEVICES", json.dumps(devices))
    with pytest.raises(errors.SpecError, match="INFERPLANE_"):
        handlers.load_settings()


def test_another_dra_driver_is_configured_without_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """INFERPLANE_DEVICES names another GPU driver, its DeviceClass and its product attribute:
    the inventory finds its devices and the pools' claim templates request that class."""
    settings = _settings(
        monkeypatch,
        {
            "nvidia": {
                "draDriver": "gpu.example.com",
                "deviceClassName": "example-gpus",
                "draAttributes": {},
                "productAttributes": ["gpu.example.com/model"],
                "memoryCapacity": "",
            }
        },
    )
    device = {"name": "g0", "attributes": {"model": {"string": 'NVIDIA L40S "rev" 2'}}}
    slice_ = {
        "spec": {
            "driver": "gpu.example.com", "nodeName": "n1", "pool": {"name": "n1"},
            "devices": [device, {**device, "name": "g1"}],
        }
    }  # fmt: skip
    nodes = [_node("n1", {"cpu": "8"}, {}), _node("n2", {"cpu": "8"}, {})]
    inventory = Inventory.from_nodes(nodes, settings.devices, [slice_])
    (pool,) = inventory.pools_of(DeviceClass.NVIDIA)
    assert (pool.product, pool.allocatable, pool.nodes) == ('L40S-"rev"-2', 2, ("n1",))
    assert inventory.pools_of(DeviceClass.CPU)[0].nodes == ("n2",)
    spec = v1alpha1.validate_spec(
        {
            "source": {"uri": "s3://m/a.onnx", "format": "onnx", "sha256": "a" * 64},
            "devices": ["nvidia"],
            "deviceOptions": {"nvidia": {"minMemory": "8Gi"}},
        }
    )
    plan = planner.plan(
        model=planner.Model("m", "ns", "uid"), spec=spec, inventory=inventory,
        observed=Observed(), previous=None, settings=settings, now=datetime.now(UTC),
    )  # fmt: skip
    (template,) = [m for m in plan.apply if m["kind"] == "ResourceClaimTemplate"]
    request = template["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    assert request["deviceClassName"] == "example-gpus"
    # the raw value, quoted for CEL; no memory selector: the driver publishes no capacity
    assert [s["cel"]["expression"] for s in request["selectors"]] == [
        'has(device.attributes["gpu.example.com"].model) && '
        'device.attributes["gpu.example.com"].model in ["NVIDIA L40S \\"rev\\" 2"]'
    ]
