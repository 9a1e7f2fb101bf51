# SPDX-License-Identifier: Apache-2.0
"""The test cluster is a real Kubernetes: its API server, scheduler, controllers, admission,
kubectl and helm behave as in production, and kwok's simulated nodes carry the devices."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from tests.cluster import handle
from tests.cluster.profile import A100, ASCEND310P, ASCEND910, T4, Product

PAUSE = "registry.k8s.io/pause:3.10"


def _pod_spec(
    *,
    resources: dict[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerate: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": PAUSE}
    if resources:
        container["resources"] = {"limits": resources, "requests": resources}
    spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerate:
        spec["tolerations"] = [{"key": tolerate, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def _deployment(name: str, replicas: int, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
        },
    }


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def _pods(cluster: handle.Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    )["items"]
    return pods


def _ready_pods(
    cluster: handle.Cluster, namespace: str, selector: str, count: int
) -> list[dict[str, Any]] | None:
    """The pods matching ``selector`` once there are ``count`` of them, all Running and Ready."""
    pods = _pods(cluster, namespace, selector)
    return pods if len(pods) == count and all(map(_ready, pods)) else None


def _selector(product: Product) -> dict[str, str]:
    """The label a workload selects a product by: GPU feature discovery's product label for
    NVIDIA, the administrators' accelerator label for Ascend."""
    if product.device_class == "nvidia":
        return {"nvidia.com/gpu.product": product.name}
    return {"accelerator": product.labels["accelerator"]}


def test_crd_schema_descriptions_reach_kubectl_explain(
    cluster: handle.Cluster, wait_until: Any
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.inferplane.io"},
        "spec": {
            "group": "test.inferplane.io",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A gadget made by the cluster test.",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "description": "What the gadget should be.",
                                    "properties": {
                                        "size": {
                                            "type": "integer",
                                            "description": "Number of sprockets, at least one.",
                                            "minimum": 1,
                                        }
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    cluster.apply(crd)
    try:
        cluster.wait_established("gadgets.test.inferplane.io", timeout=30)
        explained = wait_until(
            lambda: cluster.kubectl("explain", "gadgets.spec.size", check=False).stdout,
            timeout=30,
            what="kubectl explain gadgets.spec.size",
        )
        assert "Number of sprockets, at least one." in explained
        bad = cluster.kubectl(
            "apply",
            "-f",
            "-",
            check=False,
            input=json.dumps(
                {
                    "apiVersion": "test.inferplane.io/v1",
                    "kind": "Gadget",
                    "metadata": {"name": "g", "namespace": "default"},
                    "spec": {"size": 0},
                }
            ),
        )
        assert bad.returncode != 0
        assert "spec.size" in bad.stderr
    finally:
        cluster.kubectl("delete", "crd", "gadgets.test.inferplane.io", "--wait=false")


@pytest.mark.parametrize("product", [A100, T4, ASCEND910, ASCEND310P], ids=lambda p: p.prefix)
def test_scheduler_binds_accelerator_pods_to_their_product(
    cluster: handle.Cluster, namespace: str, wait_until: Any, product: Product
) -> None:
    assert product.resource is not None
    expected_nodes = {n.name: n for n in cluster.nodes.of_product(product)}
    assert expected_nodes, f"the session profile has no {product.name} node"
    spec = _pod_spec(
        resources={product.resource: "1"},
        node_selector=_selector(product),
        tolerate=product.resource,
    )
    cluster.apply(_deployment("accel", 2, spec), namespace)
    pods = wait_until(
        lambda: _ready_pods(cluster, namespace, "app=accel", 2),
        timeout=60,
        what=f"2 Ready pods on {product.name}",
    )
    for pod in pods:
        assert pod["spec"]["nodeName"] in expected_nodes
        assert pod["status"]["hostIP"] == expected_nodes[pod["spec"]["nodeName"]].internal_ip
        scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert scheduled and scheduled[0]["status"] == "True"
    events = cluster.get("events", namespace=namespace)
    assert any(
        e["reason"] == "Scheduled" and e.get("reportingComponent") == "default-scheduler"
        for e in events
    ), [e["reason"] for e in events]


def test_accelerator_taints_keep_plain_pods_on_cpu_nodes(
    cluster: handle.Cluster, namespace: str, wait_until: Any
) -> None:
    cpu_nodes = {n.name for n in cluster.nodes.of_class("cpu")}
    cluster.apply(_deployment("plain", 4, _pod_spec(resources={"cpu": "100m"})), namespace)
    pods = wait_until(
        lambda: _ready_pods(cluster, namespace, "app=plain", 4),
        timeout=60,
        what="4 Ready CPU pods",
    )
    assert {pod["spec"]["nodeName"] for pod in pods} <= cpu_nodes


def test_request_beyond_every_node_stays_pending(
    cluster: handle.Cluster, namespace: str, wait_until: Any
) -> None:
    too_many = str(max(p.count for p in (A100, T4)) + 1)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "greedy"},
        "spec": _pod_spec(resources={"nvidia.com/gpu": too_many}, tolerate="nvidia.com/gpu"),
    }
    cluster.apply(pod, namespace)
    event = wait_until(
        lambda: next(
            (
                e
                for e in cluster.get("events", namespace=namespace)
                if e["reason"] == "FailedScheduling" and e["involvedObject"]["name"] == "greedy"
            ),
            None,
        ),
        timeout=60,
        what="a FailedScheduling event",
    )
    assert "Insufficient nvidia.com/gpu" in event["message"]
    assert cluster.get("pod", "greedy", namespace)["status"]["phase"] == "Pending"


def _job(name: str, *, hold: bool = False) -> dict[str, Any]:
    labels = {"job": name}
    if hold:
        labels[handle.HOLD_LABEL] = "true"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {**_pod_spec(resources={"cpu": "100m"}), "restartPolicy": "Never"},
            },
        },
    }


def _job_condition(cluster: handle.Cluster, namespace: str, name: str) -> str | None:
    conditions = cluster.get("job", name, namespace).get("status", {}).get("conditions", [])
    done = [c["type"] for c in conditions if c["type"] in ("Complete", "Failed")]
    return done[0] if done else None


def test_job_completes_through_the_job_controller(
    cluster: handle.Cluster, namespace: str, wait_until: Any
) -> None:
    cluster.apply(_job("once"), namespace)
    assert wait_until(lambda: _job_condition(cluster, namespace, "once"), timeout=60) == "Complete"
    job = cluster.get("job", "once", namespace)
    assert job["status"]["succeeded"] == 1
    (pod,) = _pods(cluster, namespace, "job=once")
    assert pod["status"]["phase"] == "Succeeded"


@pytest.mark.parametrize("result", ["succeeded", "failed"])
def test_held_pod_waits_for_the_test_to_end_it(
    cluster: handle.Cluster,
    namespace: str,
    wait_until: Any,
    hold_release: Any,
    result: str,
) -> None:
    cluster.apply(_job("held", hold=True), namespace)
    (pod,) = wait_until(
        lambda: _ready_pods(cluster, namespace, "job=held", 1),
        timeout=60,
        what="the held pod Running",
    )
    # A job pod that is not held completes as soon as it runs (the test above); this one must not.
    unheld = _job("free")
    cluster.apply(unheld, namespace)
    wait_until(lambda: _job_condition(cluster, namespace, "free"), timeout=60)
    name = pod["metadata"]["name"]
    assert cluster.get("pod", name, namespace)["status"]["phase"] == "Running"
    assert _job_condition(cluster, namespace, "held") is None

    message = f"held pod ended: {result}, max abs error 3e-08"
    hold_release(namespace, name, result, message)
    expected = {"succeeded": ("Succeeded", "Complete", 0), "failed": ("Failed", "Failed", 1)}
    phase, condition, exit_code = expected[result]
    assert wait_until(lambda: _job_condition(cluster, namespace, "held"), timeout=60) == condition
    ended = cluster.get("pod", name, namespace)
    assert ended["status"]["phase"] == phase
    terminated = ended["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == exit_code
    assert terminated["message"] == message


def test_restricted_pod_security_rejects_a_privileged_pod(
    cluster: handle.Cluster, namespace: str
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {
            "containers": [{"name": "c", "image": PAUSE, "securityContext": {"privileged": True}}]
        },
    }
    rejected = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(privileged), check=False
    )
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in rejected.stderr
    assert "privileged" in rejected.stderr
    compliant = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "polite"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": PAUSE,
                    "securityContext": {
                        "runAsUser": 65532,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    cluster.apply(compliant, namespace)
    assert cluster.get("pod", "polite", namespace)["metadata"]["name"] == "polite"


def test_helm_lints_installs_and_uninstalls_a_chart(
    cluster: handle.Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-config
            data:
              greeting: {{ .Values.greeting | quote }}
            """
        )
    )
    helm = str(cluster.bin("helm"))

    def run(*args: str) -> str:
        result = subprocess.run(
            [helm, *args], env=cluster.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "1 chart(s) linted, 0 chart(s) failed" in run("lint", str(chart))
    run("install", "demo", str(chart), "-n", namespace, "--set", "greeting=hi", "--wait")
    config = cluster.get("configmap", "demo-config", namespace)
    assert config["data"] == {"greeting": "hi"}
    assert "demo" in run("list", "-n", namespace, "-q").split()
    run("uninstall", "demo", "-n", namespace, "--wait")
    gone = cluster.kubectl("get", "configmap", "demo-config", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
