# SPDX-License-Identifier: Apache-2.0
"""Manifests from the builders: restricted pods, device placement, probes, store access."""

from __future__ import annotations

from typing import Any

import pytest

from inferplane.api import v1alpha1
from inferplane.control import builders
from inferplane.control.inventory import Taint
from inferplane.control.settings import OperatorSettings
from inferplane.devices import ArtifactFormat, BackendName, DeviceClass

OWNER = {
    "apiVersion": "inferplane.io/v1alpha1",
    "kind": "InferenceModel",
    "name": "lenet",
    "uid": "u",
    "controller": True,
    "blockOwnerDeletion": True,
}
SPEC = v1alpha1.validate_spec(
    {
        "source": {
            "uri": "pvc://models/lenet.ckpt",
            "format": "mindspore-checkpoint",
            "network": "network:lenet5",
            "image": "registry.example/lenet-code:1",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
        },
        "deviceOptions": {"nvidia": {"resources": {"limits": {"memory": "8Gi"}}}},
        "replicas": {"min": 1, "max": 4, "metric": "inflight", "target": 5},
        "batching": {"maxBatchSize": 8, "maxDelayMs": 3},
        "verification": {"samples": 4, "atol": 1e-4, "validation": "s3://data/val.npz"},
    }
)
T4 = builders.Placement(
    DeviceClass.NVIDIA,
    "nvidia.com/gpu",
    {"nvidia.com/gpu.product": "T4"},
    (Taint("nvidia.com/gpu", "NoSchedule"),),
    "nvidia",
)


def _settings(**fields: Any) -> OperatorSettings:
    return OperatorSettings(**{"store": "s3://store/artifacts", "store_secret": "creds", **fields})


def _restricted(pod: dict[str, Any]) -> None:
    """The restricted Pod Security Standard, as the API server's admission checks it."""
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim"}, volume


def _job(fmt: ArtifactFormat, placement: builders.Placement, **settings: Any) -> dict[str, Any]:
    return builders.job(
        name="convert-x",
        namespace="ml",
        owners=[OWNER],
        spec=SPEC,
        model="lenet",
        target_format=fmt,
        placement=placement,
        product="T4" if placement.selector else None,
        precision="fp16",
        batch=(1, 8, 32),
        key="ml.tensorrt-nvidia-t4-abc",
        settings=_settings(**settings),
    )


def _steps(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod.get("initContainers", []) + pod["containers"]}


def test_conversion_job_runs_convert_with_every_option() -> None:
    job = _job(ArtifactFormat.TENSORRT, T4, conversion_labels={"kwok.inferplane.io/hold": "true"})
    spec = job["spec"]
    pod = spec["template"]["spec"]
    steps = _steps(pod)
    assert [c["name"] for c in pod["initContainers"]] == ["network-code", "fetch", "convert"]
    assert [c["name"] for c in pod["containers"]] == ["publish"]
    common = [
        "inferplane", "convert", "--source", "pvc://models/lenet.ckpt",
        "--format", "mindspore-checkpoint", "--network", "network:lenet5",
        "--input", "x:-1,1,32,32:FP32", "--to", "tensorrt", "--device", "nvidia",
        "--device-spec", "T4", "--precision", "fp16", "--batch", "1,8,32",
        "--code-id", "registry.example/lenet-code:1", "--tool-id", _settings().image_nvidia,
        "--name", "lenet", "--samples", "4", "--atol", "0.0001",
        "--validation", "s3://data/val.npz", "--max-accuracy-drop", "0.01", "--work", "/work",
    ]  # fmt: skip
    assert steps["fetch"]["command"] == [*common, "--stage", "fetch"]
    assert steps["convert"]["command"] == [*common, "--stage", "convert"]
    assert steps["publish"]["command"] == [
        *common, "--stage", "publish", "--store", "s3://store/artifacts",
        "--key", "ml.tensorrt-nvidia-t4-abc", "--json",
    ]  # fmt: skip
    assert job["metadata"]["annotations"]["inferplane.io/artifact-key"] == (
        "ml.tensorrt-nvidia-t4-abc"
    )
    for name in ("fetch", "convert", "publish"):
        assert steps[name]["image"].endswith("/nvidia:0.1.0")
        assert steps[name]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert steps["convert"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in steps["publish"]["resources"]["limits"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "T4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"]["kwok.inferplane.io/hold"] == "true"
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (1, 3600)
    _restricted(pod)


def _credentials(container: dict[str, Any]) -> list[Any]:
    """Everything in a container that could carry a credential: Secret references in env and
    envFrom, projected or secret volumes, and credential-looking variable names."""
    found: list[Any] = list(container.get("envFrom", []))
    for env in container.get("env", []):
        if "valueFrom" in env or any(
            word in env["name"].upper() for word in ("KEY", "SECRET", "TOKEN", "PASSWORD", "AWS")
        ):
            found.append(env)
    return found


@pytest.mark.parametrize("fmt", [ArtifactFormat.TENSORRT, ArtifactFormat.ONNX])
def test_no_container_running_user_code_holds_a_credential(fmt: ArtifactFormat) -> None:
    """The user's image (``network-code``) and the step that imports the network's code
    (``convert``) get no Secret, no store mount and no service-account token; only inferplane's
    own steps get credentials: fetch the sources' (read), publish the store's."""
    pod = _job(fmt, T4, source_secret="source-read", store="pvc://artifacts/store")["spec"][
        "template"
    ]["spec"]
    steps = _steps(pod)
    assert pod["automountServiceAccountToken"] is False
    assert all(set(v) - {"name"} <= {"emptyDir", "persistentVolumeClaim"} for v in pod["volumes"])
    for name in ("network-code", "convert"):
        assert _credentials(steps[name]) == [], name
        volumes = {m["name"] for m in steps[name]["volumeMounts"]}
        assert not any(v.startswith("pvc-") for v in volumes), (name, volumes)
        assert all(m.get("readOnly") for m in steps[name]["volumeMounts"] if m["name"] == "source")
    assert steps["fetch"]["envFrom"] == [{"secretRef": {"name": "source-read"}}]
    assert steps["publish"]["envFrom"] == [{"secretRef": {"name": "creds"}}]
    # The source claim is read-only, in fetch only; the store claim is writable, in publish only.
    mounts = {n: {m["name"]: m for m in c["volumeMounts"]} for n, c in steps.items()}
    source, store = (
        builders.naming.dns_label("pvc", "models"),
        builders.naming.dns_label("pvc", "artifacts"),
    )
    assert mounts["fetch"][source]["readOnly"] is True and store not in mounts["fetch"]
    assert mounts["publish"][store].get("readOnly") is not True and source not in mounts["publish"]
    env = {e["name"]: e.get("value") for e in steps["convert"]["env"]}
    assert env["PYTHONPATH"] == "/network"
    assert "PYTHONPATH" not in {e["name"] for e in steps["publish"]["env"]}
    assert "network" not in mounts["publish"] and "network" not in mounts["fetch"]


def test_without_a_source_secret_fetch_reads_with_the_stores() -> None:
    steps = _steps(_job(ArtifactFormat.ONNX, T4)["spec"]["template"]["spec"])
    assert steps["fetch"]["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert "envFrom" not in steps["convert"]


def test_network_image_and_source_claim_are_mounted() -> None:
    pod = _job(ArtifactFormat.ONNX, T4)["spec"]["template"]["spec"]
    init = _steps(pod)["network-code"]
    assert init["image"] == "registry.example/lenet-code:1"
    assert init["command"] == ["cp", "-R", "/code/.", "/network"]
    assert [m["name"] for m in init["volumeMounts"]] == ["network"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["models"]
    mounts = {m["mountPath"] for m in _steps(pod)["fetch"]["volumeMounts"]}
    assert "/mnt/inferplane/pvc/models" in mounts


def test_cpu_work_keeps_off_accelerator_nodes() -> None:
    pod = _job(ArtifactFormat.ONNX, T4)["spec"]["template"]["spec"]
    convert = _steps(pod)["convert"]
    assert "nodeSelector" not in pod and "runtimeClassName" not in pod
    assert convert["image"].endswith("/mindspore:0.1.0-cpu")  # export: cpu variant
    assert "nvidia.com/gpu" not in convert["resources"].get("limits", {})
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = {e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}
    assert {"nvidia.com/gpu.product", "accelerator", "node-role.kubernetes.io/edge"} <= keys


def _deployment(placement: builders.Placement = T4, **settings: Any) -> dict[str, Any]:
    return builders.deployment(
        name="lenet-nvidia-t4",
        namespace="ml",
        owner=OWNER,
        model="lenet",
        spec=SPEC,
        placement=placement,
        product="T4",
        backend=BackendName.TENSORRT,
        key="tensorrt-nvidia-t4-abc",
        settings=_settings(**settings),
    )


def test_server_deployment_on_the_gpu_product() -> None:
    deployment = _deployment()
    template = deployment["spec"]["template"]
    pod = template["spec"]
    server = pod["containers"][0]
    assert server["command"] == [
        "inferplane",
        "serve",
        "/models/tensorrt-nvidia-t4-abc",
        "--name",
        "lenet",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--backend",
        "tensorrt",
        "--device",
        "nvidia",
        "--max-batch-size",
        "8",
        "--max-queue-delay-ms",
        "3.0",
        "--drain-s",
        "5",
        "--graceful-timeout-s",
        "20",
        "--log-level",
        "info",
    ]
    assert pod["terminationGracePeriodSeconds"] == 30, "the drain and the wait fit the grace"
    assert server["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 1}
    assert server["readinessProbe"]["httpGet"] == {"port": "http", "path": "/v2/health/ready"}
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "T4"}
    assert pod["runtimeClassName"] == "nvidia"
    (fetch,) = pod["initContainers"]
    assert fetch["command"][:2] == ["python", "-c"]
    assert fetch["command"][3:] == ["s3://store/artifacts", "tensorrt-nvidia-t4-abc", "/models"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    assert "replicas" not in deployment["spec"]  # the HPA owns it (min < max)
    assert deployment["metadata"]["ownerReferences"] == [OWNER]
    _restricted(pod)


def test_pvc_store_is_mounted_read_only_instead_of_fetched() -> None:
    pod = _deployment(store="pvc://artifacts/store")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    server = pod["containers"][0]
    assert server["command"][2] == "/mnt/inferplane/pvc/artifacts/store/tensorrt-nvidia-t4-abc"
    mount = next(
        m for m in server["volumeMounts"] if m["mountPath"] == "/mnt/inferplane/pvc/artifacts"
    )
    assert mount["readOnly"] is True


@pytest.mark.parametrize(
    ("store", "path"),
    [
        ("file:///srv/store", "/srv/store/k"),
        ("/srv/store/", "/srv/store/k"),
        ("s3://b/p", "/models/k"),
        ("pvc://c/a/b", "/r/c/a/b/k"),
    ],
)
def test_artifact_path(store: str, path: str) -> None:
    assert builders.artifact_path(store=store, key="k", pvc_root="/r") == path


@pytest.mark.parametrize(
    ("replicas", "metric"),
    [
        (
            {"min": 1, "max": 3},
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            },
        ),
        (
            {"min": 2, "max": 9, "metric": "inflight", "target": 4},
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "inferplane_in_flight_requests"},
                    "target": {"type": "AverageValue", "averageValue": "4"},
                },
            },
        ),
    ],
)
def test_hpa(replicas: dict[str, Any], metric: dict[str, Any]) -> None:
    hpa = builders.hpa(
        name="p",
        namespace="ml",
        owner=OWNER,
        labels={},
        replicas=v1alpha1.Replicas.model_validate(replicas),
    )
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"] == [metric]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        replicas["min"],
        replicas["max"],
    )
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "p",
    }


def test_service_and_pdb() -> None:
    service = builders.service(
        name="lenet", namespace="ml", owner=OWNER, labels={"a": "b"}, selector={"s": "t"}, port=8080
    )
    assert service["spec"]["selector"] == {"s": "t"}
    assert [p["port"] for p in service["spec"]["ports"]] == [80, 8080]
    assert "clusterIP" not in service["spec"]
    pool = builders.service(
        name="p", namespace="ml", owner=OWNER, labels={}, selector={}, port=8080, headless=True
    )
    assert pool["spec"]["clusterIP"] == "None"
    pdb = builders.pdb(name="p", namespace="ml", owner=OWNER, labels={}, selector={"s": "t"})
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"s": "t"}}}


def test_resources_override_order() -> None:
    out = builders.resources(
        base={"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}},
        device_resource="huawei.com/Ascend310P",
        override=v1alpha1.ResourceRequirements(requests={"cpu": 2}),
    )
    assert out == {
        "requests": {"cpu": 2, "huawei.com/Ascend310P": 1},
        "limits": {"memory": "2Gi", "huawei.com/Ascend310P": 1},
    }


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPLANE_STORE", "pvc://artifacts/store")
    monkeypatch.setenv("INFERPLANE_CONVERSION_LABELS", '{"kwok.inferplane.io/hold": "true"}')
    monkeypatch.setenv("INFERPLANE_NAMESPACES", '["ml", "prod"]')
    monkeypatch.setenv("INFERPLANE_IMAGE_CPU", "registry.local/cpu:dev")
    settings = OperatorSettings()
    assert settings.store == "pvc://artifacts/store"
    assert settings.conversion_labels == {"kwok.inferplane.io/hold": "true"}
    assert settings.namespaces == ["ml", "prod"]
    assert (
        settings.server_image(DeviceClass.CPU, BackendName.ONNXRUNTIME) == "registry.local/cpu:dev"
    )
    assert settings.server_image(DeviceClass.NVIDIA, BackendName.ONNXRUNTIME).endswith(
        "/nvidia:0.1.0"
    )
