# SPDX-License-Identifier: Apache-2.0
"""The chart rendered by the real helm over a matrix of values, checked object by object.

No API server here (``helm template --kube-version``); install, upgrade, RBAC and Pod Security
against the real one are in ``tests/integration/test_chart.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.charts.chart import (
    CHART,
    ROOT,
    S3_VALUES,
    env_of,
    find,
    helm,
    merge,
    one,
    render,
    restricted_violations,
    template,
)
from tests.images import IMAGES

from inferplane.control.settings import DEFAULT_DEVICES
from inferplane.devices import BackendName, DeviceClass

FORBIDDEN_VERBS = {"escalate", "bind", "impersonate", "*"}
READ = {"get", "list", "watch"}


def rules_of(objects: list[dict[str, Any]]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Every RBAC rule: (kind of role, its namespace, rule)."""
    return [
        (o["kind"], o["metadata"].get("namespace"), rule)
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
        for rule in o.get("rules", [])
    ]


def granted(objects: list[dict[str, Any]], group: str, resource: str) -> dict[str | None, set[str]]:
    """Verbs granted on group/resource, per namespace (None: cluster-wide)."""
    out: dict[str | None, set[str]] = {}
    for kind, namespace, rule in rules_of(objects):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            key = None if kind == "ClusterRole" else namespace
            out.setdefault(key, set()).update(rule["verbs"])
    return out


def test_lint_strict_with_every_ci_values_file() -> None:
    files = sorted((CHART / "ci").glob("*-values.yaml"))
    assert len(files) >= 3, files
    for values in files:
        result = subprocess.run(
            [str(helm()), "lint", "--strict", str(CHART), "--values", str(values)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{values.name}:\n{result.stdout}{result.stderr}"


def test_chart_crd_is_the_generated_one() -> None:
    generated = ROOT / "crds" / "inferplane.io_inferencemodels.yaml"
    shipped = CHART / "crds" / generated.name
    assert shipped.read_bytes() == generated.read_bytes(), (
        f"{shipped} differs from {generated}: copy it (`cp {generated} {shipped}`)"
    )


def test_cluster_wide_defaults(tmp_path: Path) -> None:
    objects = render(S3_VALUES, tmp_path)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ServiceAccount", "ClusterRole", "ClusterRole", "ClusterRoleBinding",
            "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "ClusterKopfPeering",
        ]
    )  # fmt: skip
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/inferplane/operator:0.1.0"
    assert container["args"][:3] == ["operator", "--liveness", "http://0.0.0.0:8081/healthz"]
    assert "--standalone" not in container["args"] and "--namespace" not in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"][0]["containerPort"] == 8081
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert restricted_violations(pod) == []
    peering = one(objects, "ClusterKopfPeering")
    assert env_of(deployment)["INFERPLANE_PEERING"] == peering["metadata"]["name"]
    for binding in find(objects, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": pod["serviceAccountName"],
             "namespace": "inferplane-system"}
        ]  # fmt: skip
    for o in objects:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "inferplane", o["kind"]
        assert labels["app.kubernetes.io/instance"] == "ip", o["kind"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", o["kind"]
        assert labels["app.kubernetes.io/version"] == "0.1.0", o["kind"]


def test_cluster_wide_rbac(tmp_path: Path) -> None:
    objects = render(S3_VALUES, tmp_path)
    assert not find(objects, "Role")
    assert granted(objects, "inferplane.io", "inferencemodels") == {None: READ}
    assert granted(objects, "inferplane.io", "inferencemodels/status") == {None: {"patch"}}
    assert granted(objects, "batch", "jobs") == {None: READ | {"create", "patch", "delete"}}
    for group, resource in [
        ("apps", "deployments"),
        ("", "services"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("policy", "poddisruptionbudgets"),
    ]:
        assert granted(objects, group, resource)[None] >= {"list", "create", "patch", "delete"}
    assert granted(objects, "", "pods/log") == {}  # a result is read from the store, not a pod
    assert granted(objects, "", "events") == {None: {"create"}}
    assert granted(objects, "", "nodes") == {None: READ}
    assert granted(objects, "resource.k8s.io", "resourceslices") == {None: READ}
    assert granted(objects, "resource.k8s.io", "resourceclaims") == {None: {"list"}}
    assert granted(objects, "resource.k8s.io", "resourceclaimtemplates")[None] >= {
        "list", "watch", "create", "patch", "delete"
    }  # fmt: skip
    assert granted(objects, "", "pods") == {None: {"list"}}
    assert granted(objects, "kopf.dev", "clusterkopfpeerings")[None] >= {"patch", "watch"}
    assert granted(objects, "kopf.dev", "kopfpeerings") == {}
    assert granted(objects, "", "namespaces") == {}


@pytest.mark.parametrize(
    "values",
    [
        S3_VALUES,
        merge(S3_VALUES, {"watchNamespaces": ["team-a", "team-b"]}),
        merge(S3_VALUES, {"networkPolicy": {"enabled": True, "namespaces": ["x"]}}),
    ],
    ids=["cluster-wide", "namespaced", "network-policy"],
)
def test_rbac_is_least_privilege(values: dict[str, Any], tmp_path: Path) -> None:
    objects = render(values, tmp_path)
    rules = rules_of(objects)
    assert rules
    for kind, namespace, rule in rules:
        where = f"{kind}/{namespace}: {rule}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {where}"
        assert not set(rule["verbs"]) & FORBIDDEN_VERBS, where
        assert "secrets" not in rule["resources"], f"secrets granted: {where}"
        assert not {r for r in rule["resources"] if r.startswith("pods/")}, where
        assert "update" not in rule["verbs"] or rule["resources"] == ["inferencemodels/finalizers"]
        if "pods/log" in rule["resources"] or "pods" in rule["resources"]:
            assert set(rule["verbs"]) <= READ, where
        assert not {"clusterroles", "clusterrolebindings", "roles", "rolebindings"} & set(
            rule["resources"]
        ), where
        if {"nodes", "resourceslices", "resourceclaims"} & set(rule["resources"]):
            assert set(rule["verbs"]) <= READ, where
        assert "nonResourceURLs" not in rule, where


def test_namespaced_mode(tmp_path: Path) -> None:
    objects = render(merge(S3_VALUES, {"watchNamespaces": ["team-a", "team-b"]}), tmp_path)
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == "inferplane-system"
    cluster_roles = find(objects, "ClusterRole")
    assert len(cluster_roles) == 1
    cluster_resources = {r for rule in cluster_roles[0]["rules"] for r in rule["resources"]}
    assert cluster_resources == {
        "nodes", "resourceslices", "customresourcedefinitions", "namespaces"
    }  # fmt: skip
    assert granted(objects, "", "namespaces") == {None: {"list", "watch"}}
    assert set(granted(objects, "batch", "jobs")) == {"team-a", "team-b"}
    assert set(granted(objects, "kopf.dev", "kopfpeerings")) == {"team-a", "team-b"}
    assert not find(objects, "ClusterKopfPeering")
    peerings = find(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    deployment = one(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-4:] == ["--namespace", "team-a", "--namespace", "team-b"]
    assert json.loads(env_of(deployment)["INFERPLANE_NAMESPACES"]) == ["team-a", "team-b"]


def test_standalone_single_replica(tmp_path: Path) -> None:
    values = merge(S3_VALUES, {"operator": {"replicas": 1, "peering": {"enabled": False}}})
    objects = render(values, tmp_path)
    assert not find(objects, "ClusterKopfPeering") and not find(objects, "KopfPeering")
    assert not find(objects, "PodDisruptionBudget")
    deployment = one(objects, "Deployment")
    assert "--standalone" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    rules = rules_of(objects)
    assert not any("kopf.dev" in rule["apiGroups"] for _, _, rule in rules)


def test_s3_store_passes_credentials_by_reference_only(tmp_path: Path) -> None:
    values = merge(S3_VALUES, {"store": {"s3": {"endpoint": "http://minio.storage:9000"}}})
    objects = render(values, tmp_path)
    deployment = one(objects, "Deployment")
    env = env_of(deployment)
    assert env["INFERPLANE_STORE"] == "s3://models/inferplane"
    assert env["INFERPLANE_S3_ENDPOINT"] == "http://minio.storage:9000"
    assert env["INFERPLANE_STORE_SECRET"] == "inferplane-store"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "inferplane-store"}}]
    assert not any(name.startswith("AWS_") for name in env)
    assert not find(objects, "Secret")


def test_pvc_store(tmp_path: Path) -> None:
    objects = render({"store": {"pvc": {"claimName": "artifacts", "path": "/m/"}}}, tmp_path)
    deployment = one(objects, "Deployment")
    env = env_of(deployment)
    assert env["INFERPLANE_STORE"] == "pvc://artifacts/m"
    assert "INFERPLANE_STORE_SECRET" not in env and "INFERPLANE_S3_ENDPOINT" not in env
    pod = deployment["spec"]["template"]["spec"]
    store = next(v for v in pod["volumes"] if v["name"] == "store")
    assert store["persistentVolumeClaim"] == {"claimName": "artifacts", "readOnly": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "store")
    assert mount == {
        "name": "store",
        "mountPath": "/mnt/inferplane/pvc/artifacts",
        "readOnly": True,
    }
    assert env["INFERPLANE_PVC_ROOT"] == "/mnt/inferplane/pvc"
    assert "envFrom" not in pod["containers"][0]
    assert restricted_violations(pod) == []


def test_images_resolve_by_tag_variant_and_digest(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    values = merge(
        S3_VALUES,
        {
            "operator": {"image": {"repository": "reg.local/op", "digest": digest}},
            "images": {
                "cpu": {"tag": "9.9.9"},
                "nvidia": {"repository": "reg.local/trt", "tag": "10.7"},
                "ascend": {"digest": digest},
            },
        },
    )
    deployment = one(render(values, tmp_path), "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"reg.local/op@{digest}"
    )
    env = env_of(deployment)
    assert env["INFERPLANE_IMAGE_CPU"] == "ghcr.io/inferplane/cpu:9.9.9"
    assert env["INFERPLANE_IMAGE_MINDSPORE"] == "ghcr.io/inferplane/mindspore:0.1.0-cpu"
    assert env["INFERPLANE_IMAGE_NVIDIA"] == "reg.local/trt:10.7"
    assert env["INFERPLANE_IMAGE_ASCEND"] == f"ghcr.io/inferplane/ascend@{digest}"
    assert env["INFERPLANE_IMAGE_EDGE"] == "ghcr.io/inferplane/edge:0.1.0"


def test_one_registry_names_every_image(tmp_path: Path) -> None:
    """`image.registry` and `image.tag` move every image at once (a user's own registry); an
    entry's own tag or digest and a repository with a `/` still win."""
    values_text = (CHART / "values.yaml").read_text()
    assert values_text.count("ghcr.io/inferplane") == 1, "the registry is named in one place"
    values = merge(S3_VALUES, {"image": {"registry": "reg.example:5000/ml", "tag": "2.0"}})
    deployment = one(render(values, tmp_path), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.example:5000/ml/operator:2.0"
    env = env_of(deployment)
    assert env["INFERPLANE_IMAGE_CPU"] == "reg.example:5000/ml/cpu:2.0"
    assert env["INFERPLANE_IMAGE_MINDSPORE"] == "reg.example:5000/ml/mindspore:2.0-cpu"
    assert env["INFERPLANE_IMAGE_EDGE"] == "reg.example:5000/ml/edge:2.0"
    devices = json.loads(env["INFERPLANE_DEVICES"])
    assert devices["cpu"]["images"] == {
        "onnxruntime": "reg.example:5000/ml/cpu:2.0",
        "mindspore": "reg.example:5000/ml/mindspore:2.0-cpu",
    }
    assert devices["ascend910"]["images"]["mindspore"] == "reg.example:5000/ml/mindspore:2.0-ascend"
    own = merge(values, {"images": {"nvidia": {"repository": "other.io/trt", "tag": "7"}}})
    env = env_of(one(render(own, tmp_path), "Deployment"))
    assert env["INFERPLANE_IMAGE_NVIDIA"] == "other.io/trt:7"
    bad = merge(S3_VALUES, {"image": {"registry": "reg.example/ml space"}})
    result = template(bad, tmp_path)
    assert result.returncode != 0 and "image" in result.stderr


def test_built_images_carry_the_chart_default_names(tmp_path: Path) -> None:
    """`python -m tests.images build` names its images as the chart's defaults do, so a node
    that imported the archives runs the chart as installed."""

    deployment = one(render(S3_VALUES, tmp_path), "Deployment")
    env = env_of(deployment)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        IMAGES["operator"].reference()
    )
    assert env["INFERPLANE_IMAGE_CPU"] == IMAGES["cpu"].reference()
    assert env["INFERPLANE_IMAGE_MINDSPORE"] == IMAGES["mindspore"].reference()


def test_server_images_per_class_and_variant(tmp_path: Path) -> None:
    """devices.<class>.images: each backend's image from an `images` entry; a reference with its
    own variant gets neither that entry's tag nor its digest (they name another build)."""
    digest = "sha256:" + "cd" * 32
    values = merge(
        S3_VALUES,
        {
            "images": {
                "mindspore": {"repository": "reg.local/ms", "tag": "2.10-cpu", "digest": digest},
                "nvidia": {"tag": "10.7"},
            },
            "devices": {
                "ascend910": {"images": {"mindspore": {"image": "mindspore", "variant": "ascend"}}},
                "nvidia": {"images": {"onnxruntime": {"image": "nvidia", "tag": "ort"}}},
            },
        },
    )
    env = env_of(one(render(values, tmp_path), "Deployment"))
    assert env["INFERPLANE_IMAGE_MINDSPORE"] == f"reg.local/ms@{digest}"  # export: cpu variant
    images = {c: d["images"] for c, d in json.loads(env["INFERPLANE_DEVICES"]).items()}
    assert images == {
        "ascend910": {"mindspore": "reg.local/ms:0.1.0-ascend"},
        "ascend310": {"acl": "ghcr.io/inferplane/ascend:0.1.0"},
        "nvidia": {
            "tensorrt": "ghcr.io/inferplane/nvidia:10.7",
            "onnxruntime": "ghcr.io/inferplane/nvidia:ort",
        },
        "cpu": {
            "onnxruntime": "ghcr.io/inferplane/cpu:0.1.0",
            "mindspore": "reg.local/ms:0.1.0-cpu",
        },
        "edge": {"mslite": "ghcr.io/inferplane/edge:0.1.0"},
    }
    bad = merge(S3_VALUES, {"devices": {"cpu": {"images": {"mindspore": {"image": None}}}}})
    result = template(bad, tmp_path)  # null drops the default: the reference names no image
    assert result.returncode != 0 and "/devices/cpu/images/mindspore" in result.stderr


def test_operator_settings_read_every_variable_the_chart_sets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's INFERPLANE_* names are exactly OperatorSettings fields, with the values set."""
    from inferplane.control import settings as settings_module

    values = merge(
        S3_VALUES,
        {
            "watchNamespaces": ["team-a"],
            "images": {"pullSecrets": ["regcred"], "nvidia": {"tag": "7"}},
            "store": {"s3": {"endpoint": "http://s3.local:9000"}},
            "conversion": {"labels": {"kwok.inferplane.io/hold": "true"}, "backoffLimit": 3},
            "servers": {"port": 9000},
            "devices": {
                "nvidia": {
                    "resourceNames": ["nvidia.com/mig-1g.10gb"],
                    "productLabel": "nvidia.com/mig-1g.10gb.product",
                    "runtimeClassName": "gpu",
                    "resources": {"requests": {"cpu": "2"}},
                },
                "ascend910": {
                    "resourceNames": ["huawei.com/Ascend910B"],
                    "runtimeClassName": "ascend",
                    "tolerations": [{"key": "npu", "operator": "Exists", "effect": "NoSchedule"}],
                },
            },
            "clusterDomain": "corp.local",
        },
    )
    rendered = env_of(one(render(values, tmp_path), "Deployment"))
    env = {k: v for k, v in rendered.items() if k.startswith("INFERPLANE_")}
    fields = {
        f"INFERPLANE_{name.upper()}" for name in settings_module.OperatorSettings.model_fields
    }
    assert set(env) <= fields, sorted(set(env) - fields)
    for name in list(os.environ):
        if name.startswith("INFERPLANE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parsed = settings_module.OperatorSettings()
    assert parsed.namespaces == ["team-a"]
    assert parsed.log_level == "info"
    assert parsed.priority is None  # each replica draws its own: equal priorities would all pause
    assert parsed.peering == "ip-inferplane"
    assert parsed.image_nvidia == "ghcr.io/inferplane/nvidia:7"
    assert parsed.image_pull_secrets == ["regcred"]
    assert parsed.store == "s3://models/inferplane"
    assert parsed.store_secret == "inferplane-store"
    assert parsed.s3_endpoint == "http://s3.local:9000"
    assert parsed.conversion_labels == {"kwok.inferplane.io/hold": "true"}
    assert parsed.job_backoff_limit == 3
    assert parsed.server_port == 9000
    nvidia = parsed.devices[DeviceClass.NVIDIA]
    assert nvidia.resource_names == ("nvidia.com/mig-1g.10gb",)
    assert nvidia.product_label == "nvidia.com/mig-1g.10gb.product"
    assert nvidia.runtime_class_name == "gpu"
    assert nvidia.resources == {  # helm merges maps: the default memory stays
        "requests": {"cpu": "2", "memory": "512Mi"},
        "limits": {"memory": "2Gi"},
    }
    ascend = parsed.devices[DeviceClass.ASCEND910]
    assert ascend.resource_names == ("huawei.com/Ascend910B",)
    assert ascend.product_label == "node.kubernetes.io/npu.chip.name"
    assert ascend.tolerations == ({"key": "npu", "operator": "Exists", "effect": "NoSchedule"},)
    # the classes the values leave alone parse to the operator's own defaults
    for device_class in (DeviceClass.ASCEND310, DeviceClass.CPU, DeviceClass.EDGE):
        assert parsed.devices[device_class].model_dump(exclude={"images"}) == (
            DEFAULT_DEVICES[device_class].model_dump(exclude={"images"})
        )
    assert parsed.server_image(DeviceClass.ASCEND910, BackendName.MINDSPORE) == (
        "ghcr.io/inferplane/mindspore:0.1.0-ascend"
    )
    assert parsed.server_image(DeviceClass.NVIDIA, BackendName.TENSORRT) == parsed.image_nvidia
    assert parsed.cluster_domain == "corp.local"


def test_settings_change_rolls_the_operator(tmp_path: Path) -> None:
    def checksum(values: dict[str, Any]) -> str:
        d = one(render(values, tmp_path), "Deployment")
        return str(d["spec"]["template"]["metadata"]["annotations"]["checksum/settings"])

    assert checksum(S3_VALUES) == checksum(S3_VALUES)
    assert checksum(S3_VALUES) != checksum(merge(S3_VALUES, {"logLevel": "debug"}))


def test_network_policies(tmp_path: Path) -> None:
    values = merge(
        S3_VALUES,
        {
            "watchNamespaces": ["team-a"],
            "networkPolicy": {
                "enabled": True,
                "metricsNamespaceSelector": {"matchLabels": {"name": "monitoring"}},
            },
        },
    )
    policies = find(render(values, tmp_path), "NetworkPolicy")
    operator = next(p for p in policies if p["metadata"]["namespace"] == "inferplane-system")
    assert operator["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in operator["spec"]  # nothing may connect to the operator
    servers = next(p for p in policies if p["metadata"]["namespace"] == "team-a")
    assert servers["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "inferplane",
        "app.kubernetes.io/component": "server",
    }
    (rule,) = servers["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"inferplane.io/client": "true"}}},
        {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}},
    ]
    assert len(policies) == 2
    assert not find(render(S3_VALUES, tmp_path), "NetworkPolicy")


def test_service_monitor(tmp_path: Path) -> None:
    values = merge(S3_VALUES, {"serviceMonitor": {"enabled": True, "labels": {"release": "kp"}}})
    monitor = one(render(values, tmp_path), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kp"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    namespaced = merge(values, {"watchNamespaces": ["team-a"]})
    monitor = one(render(namespaced, tmp_path), "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "store: set store.s3.bucket"),
        (
            merge(S3_VALUES, {"store": {"pvc": {"claimName": "c"}}}),
            "set either store.s3.bucket or store.pvc.claimName, not both",
        ),
        (
            merge(S3_VALUES, {"operator": {"peering": {"enabled": False}}}),
            "operator.replicas > 1 needs operator.peering.enabled",
        ),
        (merge(S3_VALUES, {"logLevel": "verbose"}), "/logLevel"),
        (merge(S3_VALUES, {"operator": {"replica": 3}}), "'replica' not allowed"),
        (merge(S3_VALUES, {"operator": {"replicas": 0}}), "/operator/replicas"),
        (merge(S3_VALUES, {"watchNamespaces": ["Team_A"]}), "/watchNamespaces/0"),
        (
            merge(S3_VALUES, {"images": {"cpu": {"digest": "sha256:xyz"}}}),
            "/images/cpu/digest",
        ),
        (merge(S3_VALUES, {"devices": {"gpu": {}}}), "'gpu' not allowed"),
        (
            merge(S3_VALUES, {"devices": {"nvidia": {"images": {"tensorrt": {"image": "trt"}}}}}),
            "/devices/nvidia/images/tensorrt/image",
        ),
        (
            merge(S3_VALUES, {"devices": {"cpu": {"runtimeClassName": "Not_A_Name"}}}),
            "/devices/cpu/runtimeClassName",
        ),
        (
            merge(S3_VALUES, {"store": {"s3": {"endpoint": "minio:9000"}}}),
            "/store/s3/endpoint",
        ),
        (merge(S3_VALUES, {"serviceAccount": {"create": False}}), "serviceAccount.name"),
    ],
    ids=[
        "no-store", "two-stores", "replicas-without-peering", "log-level", "unknown-key",
        "zero-replicas", "bad-namespace", "bad-digest", "unknown-device-class",
        "unknown-image", "bad-runtime-class",
        "endpoint-no-scheme",
        "no-service-account",
    ],
)  # fmt: skip
def test_bad_values_are_refused(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    result = template(values, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_values_are_documented_and_schema_covers_them() -> None:
    """Every key in values.yaml has a comment above it (or its block's), and a schema entry."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, schema_node: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or not schema_node.get("properties"):
            return
        for key, value in node.items():
            assert key in schema_node["properties"], f"values {path}{key} is not in the schema"
            walk(value, schema_node["properties"][key], f"{path}{key}.")

    walk(values, schema, "")
    block_documented = {"repository", "tag", "variant", "digest", "requests", "limits", "cpu",
                        "memory"}  # fmt: skip
    label_maps = {"selector", "nodeSelector"}
    previous = ""
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)(- )?([\w.\-/]+):", line)
        if match:
            indent, key = len(match.group(1)), match.group(3)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            in_label_map = bool(stack) and stack[-1][1] in label_maps
            # the fields of devices.<class> are documented once, above `devices:`
            in_device_class = len(stack) >= 2 and stack[0][1] == "devices"
            documented = (
                previous.lstrip().startswith("#")
                or key in block_documented
                or in_label_map
                or in_device_class
                or match.group(2) is not None
            )
            assert documented, f"values.yaml: `{line.strip()}` has no comment above it"
            stack.append((indent, key))
        if line.strip():
            previous = line


def test_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)


def test_rendered_objects_are_valid_yaml_documents(tmp_path: Path) -> None:
    for values in (S3_VALUES, merge(S3_VALUES, {"watchNamespaces": ["a"]})):
        for o in render(values, tmp_path):
            assert {"apiVersion", "kind", "metadata"} <= set(o), o
            assert yaml.safe_load(yaml.safe_dump(o)) == o


@pytest.mark.parametrize("namespaces", [[], ["team-a"]], ids=["cluster-wide", "namespaced"])
def test_scaled_object_rbac_only_with_keda(namespaces: list[str], tmp_path: Path) -> None:
    from inferplane.control.settings import OperatorSettings

    base = merge(S3_VALUES, {"watchNamespaces": namespaces})
    for name in ("off", "on"):
        (tmp_path / name).mkdir()
    off = render(base, tmp_path / "off")
    assert granted(off, "keda.sh", "scaledobjects") == {}
    assert env_of(one(off, "Deployment"))["INFERPLANE_KEDA"] == "false"
    assert "INFERPLANE_SCALE_DOWN_WINDOW_S" not in env_of(one(off, "Deployment"))
    on = render(
        merge(
            base,
            {
                "autoscaling": {
                    "keda": {"enabled": True},
                    "prefer": "hpa",
                    "prometheusAddress": "http://prom.mon:9090",
                    "scaleDownWindowSeconds": 0,
                }
            },
        ),
        tmp_path / "on",
    )
    where = namespaces[0] if namespaces else None
    assert granted(on, "keda.sh", "scaledobjects") == {where: READ | {"create", "patch", "delete"}}
    env = env_of(one(on, "Deployment"))
    settings = OperatorSettings(
        **{k.removeprefix("INFERPLANE_").lower(): v for k, v in env.items()
           if k in {"INFERPLANE_KEDA", "INFERPLANE_INFLIGHT_AUTOSCALER",
                    "INFERPLANE_PROMETHEUS_ADDRESS", "INFERPLANE_SCALE_DOWN_WINDOW_S"}}
    )  # fmt: skip
    assert settings.keda is True and settings.inflight_autoscaler == "hpa"
    assert settings.prometheus_address == "http://prom.mon:9090"
    assert settings.scale_down_window_s == 0
