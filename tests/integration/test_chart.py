# SPDX-License-Identifier: Apache-2.0
"""The Helm chart against the real API server of the test cluster, with the real helm.

Install into a namespace that enforces the ``restricted`` Pod Security Standard, check every
permission the operator needs and a list it must not have with ``kubectl auth can-i`` as its
ServiceAccount, upgrade to namespace-scoped mode, uninstall. Pods run on kwok's simulated nodes
(the images are never pulled), which is enough for admission, scheduling and RBAC.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import models
from tests.charts.chart import CHART, S3_VALUES, merge, restricted_violations, write_values
from tests.cluster.handle import Cluster
from tests.e2e import operator_process
from tests.integration.chart_identity import helm, service_account_kubeconfig

from inferplane.artifacts.key import sha256_file

PLANTED = "planted-secret-8d1f0c2a"
"""A store credential that must never show up outside its Secret."""

SECRET_NAME = S3_VALUES["store"]["s3"]["credentialsSecret"]


def can_i(cluster: Cluster, account: str, verb: str, resource: str, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, f"--as={account}", *args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource} {args}: {result.stderr}"
    return answer == "yes"


def restricted_namespace(cluster: Cluster, name: str) -> None:
    cluster.kubectl(
        "label", "--overwrite", "namespace", name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip


def store_secret(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "create", "secret", "generic", SECRET_NAME, "-n", namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID=id-{PLANTED}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={PLANTED}",
    )  # fmt: skip


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    name = cluster.create_namespace("other")
    try:
        yield name
    finally:
        cluster.delete_namespace(name)


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A release name; whatever the test left installed is uninstalled (it has cluster objects)."""
    name = f"ip-{namespace[-8:]}"
    try:
        yield name
    finally:
        helm(cluster, "uninstall", name, "-n", namespace, "--wait", check=False)


def operator_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.get(
        "pods", namespace=namespace
    )  # the release namespace holds nothing else
    return [p for p in pods if p["metadata"].get("deletionTimestamp") is None]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_server_side_validation_of_every_ci_values_file(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """Every object the chart renders is accepted by the real API server (dry run)."""
    cluster.kubectl("apply", "-f", str(CHART / "crds"))  # the CRs need their CRDs to validate
    cluster.wait_established(
        "inferencemodels.inferplane.io", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev",
        timeout=30,
    )  # fmt: skip
    for values_file in sorted((CHART / "ci").glob("*-values.yaml")):
        values = yaml.safe_load(values_file.read_text())
        if values.get("watchNamespaces"):
            values["watchNamespaces"] = [namespace]
        values.setdefault("serviceMonitor", {})["enabled"] = False  # no Prometheus CRDs here
        rendered = subprocess.run(
            [
                str(cluster.bin("helm")), "template", "dry", str(CHART), "-n", namespace,
                "--kube-version", "v1.36.1",
                "--values", str(write_values(tmp_path, values)),
            ],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        result = cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
        )
        assert result.returncode == 0, f"{values_file.name}: {result.stderr}"


def test_install_rbac_upgrade_uninstall(
    cluster: Cluster, namespace: str, other_namespace: str, release: str, tmp_path: Path
) -> None:
    restricted_namespace(cluster, namespace)
    restricted_namespace(cluster, other_namespace)
    store_secret(cluster, namespace)
    account = f"system:serviceaccount:{namespace}:{release}-inferplane"

    # The namespace really enforces `restricted`: a plain pod is refused.
    refused = cluster.kubectl(
        "run", "plain", "-n", namespace, "--image=busybox:1.36", "--restart=Never", check=False
    )
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

    # ---- install, cluster-wide --------------------------------------------------------------
    installed = helm(
        cluster, "install", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s",
        "--values", str(write_values(tmp_path, S3_VALUES)),
    )  # fmt: skip
    assert "would violate PodSecurity" not in installed.stderr, installed.stderr
    notes = installed.stdout.split("NOTES:", 1)[1]
    assert f"rollout status deployment/{release}-inferplane" in notes
    assert "kubectl apply -n default" in notes and "/v2/models/lenet/ready" in notes
    assert f'Secret "{SECRET_NAME}"' in notes

    pods = operator_pods(cluster, namespace)
    assert len(pods) == 2 and all(ready(p) for p in pods), [p["status"] for p in pods]
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == f"{release}-inferplane"
        assert restricted_violations(pod["spec"]) == []
    assert cluster.get("clusterkopfpeerings", f"{release}-inferplane")["metadata"]["name"]
    assert cluster.get("crd", "inferencemodels.inferplane.io")["spec"]["group"] == "inferplane.io"
    assert cluster.get("crd", "kopfpeerings.kopf.dev")["spec"]["scope"] == "Namespaced"

    # What the operator needs, cluster-wide (checked in a namespace it has never seen).
    ns = ["-n", other_namespace]
    needed = [
        ("list", "nodes"), ("watch", "nodes"), ("get", "nodes"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("patch", "clusterkopfpeerings.kopf.dev"), ("watch", "clusterkopfpeerings.kopf.dev"),
    ]  # fmt: skip
    needed_ns: list[tuple[str, ...]] = [
        ("watch", "inferencemodels.inferplane.io"), ("get", "inferencemodels.inferplane.io"),
        ("patch", "inferencemodels.inferplane.io", "--subresource=status"),
        ("update", "inferencemodels.inferplane.io", "--subresource=finalizers"),
        ("create", "jobs.batch"), ("patch", "jobs.batch"), ("watch", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("patch", "deployments.apps"), ("delete", "deployments.apps"),
        ("patch", "services"), ("delete", "services"),
        ("patch", "horizontalpodautoscalers.autoscaling"),
        ("patch", "poddisruptionbudgets.policy"),
        ("list", "pods"),
        ("create", "events"), ("create", "events.events.k8s.io"),
    ]  # fmt: skip
    for verb, resource in needed:
        assert can_i(cluster, account, verb, resource), f"cannot {verb} {resource}"
    for verb, resource, *sub in needed_ns:
        assert can_i(cluster, account, verb, resource, *sub, *ns), f"cannot {verb} {resource} {sub}"

    # What it must never do.
    forbidden = [
        ("get", "secrets", *ns), ("list", "secrets", "-A"), ("get", "secrets", "-n", namespace),
        ("watch", "secrets", "-n", namespace),
        ("delete", "nodes"), ("patch", "nodes"),
        ("create", "clusterroles"), ("create", "clusterrolebindings"),
        ("create", "rolebindings", *ns),
        ("escalate", "clusterroles"), ("bind", "clusterroles"),
        ("create", "pods", "--subresource=exec", *ns),
        ("create", "pods", "--subresource=portforward", *ns),
        ("patch", "inferencemodels.inferplane.io", *ns),
        ("create", "pods", *ns), ("delete", "pods", *ns),
        ("get", "pods", "--subresource=log", *ns),  # results are read from the store
        ("impersonate", "serviceaccounts"), ("delete", "namespaces"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "serviceaccounts/token", *ns),
        ("list", "namespaces"),  # only namespace-scoped mode needs it (kopf observes them)
        ("*", "*"),
    ]  # fmt: skip
    for verb, resource, *args in forbidden:
        assert not can_i(cluster, account, verb, resource, *args), f"may {verb} {resource} {args}"

    # The planted credential appears nowhere but in its Secret.
    manifest = helm(cluster, "get", "all", release, "-n", namespace).stdout
    assert SECRET_NAME in manifest and PLANTED not in manifest
    dumped = cluster.kubectl("get", "deploy,rs,pods,sa,cm,events", "-n", namespace, "-o", "yaml")
    assert PLANTED not in dumped.stdout

    # ---- upgrade: namespace-scoped, one replica without peering, NetworkPolicies ------------
    upgraded_values = merge(
        S3_VALUES,
        {
            "watchNamespaces": [other_namespace],
            "operator": {"replicas": 1, "peering": {"enabled": False}},
            "networkPolicy": {"enabled": True},
            "logLevel": "debug",
        },
    )
    upgraded = helm(
        cluster, "upgrade", release, str(CHART), "-n", namespace, "--wait", "--timeout", "120s",
        "--values", str(write_values(tmp_path, upgraded_values, "upgrade.yaml")),
    )  # fmt: skip
    assert "would violate PodSecurity" not in upgraded.stderr, upgraded.stderr
    deployment = cluster.get("deployment", f"{release}-inferplane", namespace=namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-3:] == ["--standalone", "--namespace", other_namespace]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["INFERPLANE_NAMESPACES"]) == [other_namespace]
    assert env["INFERPLANE_LOG_LEVEL"] == "debug"
    cluster.wait_until(
        lambda: len(operator_pods(cluster, namespace)) == 1,
        timeout=60,
        what="the old operator pods to go",
    )
    assert cluster.get("role", f"{release}-inferplane-models", namespace=other_namespace)
    assert cluster.get("networkpolicy", f"{release}-inferplane-servers", namespace=other_namespace)
    gone = cluster.kubectl("get", "clusterrole", f"{release}-inferplane-models", check=False)
    assert gone.returncode != 0
    gone = cluster.kubectl("get", "clusterkopfpeering", f"{release}-inferplane", check=False)
    assert gone.returncode != 0

    assert can_i(cluster, account, "patch", "jobs.batch", "-n", other_namespace)
    assert can_i(cluster, account, "list", "nodes")
    assert can_i(cluster, account, "watch", "namespaces")
    assert not can_i(cluster, account, "patch", "jobs.batch", "-n", namespace)
    assert not can_i(cluster, account, "watch", "inferencemodels.inferplane.io", "-A")
    assert not can_i(cluster, account, "patch", "jobs.batch", "-n", "default")
    assert not can_i(cluster, account, "patch", "kopfpeerings.kopf.dev", "-n", other_namespace)

    # ---- uninstall: everything of the release goes, the CRDs stay (Helm never deletes them) --
    helm(cluster, "uninstall", release, "-n", namespace, "--wait")
    selector = f"app.kubernetes.io/instance={release}"
    for kind in ("clusterroles", "clusterrolebindings"):
        assert cluster.kubectl("get", kind, "-l", selector, "-o", "name").stdout.strip() == ""
    for kind in ("deployments", "serviceaccounts", "roles", "rolebindings", "networkpolicies"):
        for ns_name in (namespace, other_namespace):
            left = cluster.kubectl("get", kind, "-n", ns_name, "-l", selector, "-o", "name")
            assert left.stdout.strip() == "", f"{kind} left in {ns_name}: {left.stdout}"
    assert cluster.get("crd", "inferencemodels.inferplane.io")


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_operator_runs_as_the_chart_service_account(
    cluster: Cluster,
    namespace: str,
    other_namespace: str,
    release: str,
    tmp_path: Path,
    mode: str,
) -> None:
    """The real operator, out of cluster, as the chart's ServiceAccount with the chart's settings:
    it watches, plans and creates children in the namespace it manages, and is never refused."""
    restricted_namespace(cluster, other_namespace)
    store_secret(cluster, namespace)
    store_secret(cluster, other_namespace)
    values = merge(S3_VALUES, {"operator": {"replicas": 1}})
    if mode == "namespaced":
        values["watchNamespaces"] = [other_namespace]
    helm(
        cluster, "install", release, str(CHART), "-n", namespace,
        "--values", str(write_values(tmp_path, values)),
    )  # fmt: skip
    deployment = cluster.get("deployment", f"{release}-inferplane", namespace=namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("INFERPLANE_", "KUBE"))},
        **{e["name"]: e["value"] for e in container["env"] if "value" in e},
        # what envFrom.secretRef gives the pod: the planted credentials
        "AWS_ACCESS_KEY_ID": f"id-{PLANTED}",
        "AWS_SECRET_ACCESS_KEY": PLANTED,
        "INFERPLANE_STORE": f"file://{tmp_path / 'store'}",  # the chart's is an unreachable bucket
        "KUBECONFIG": str(
            service_account_kubeconfig(
                cluster, namespace, f"{release}-inferplane", tmp_path / "sa.kubeconfig"
            )
        ),
    }
    args = container["args"]
    assert args[:3] == ["operator", "--liveness", "http://0.0.0.0:8081/healthz"]
    log = tmp_path / "operator.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "inferplane", "operator", *args[3:]],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        cluster.apply(
            {
                "apiVersion": "inferplane.io/v1alpha1",
                "kind": "InferenceModel",
                "metadata": {"name": "mlp", "namespace": other_namespace},
                "spec": {
                    "source": {"uri": "s3://models/mlp.onnx", "format": "onnx"},
                    "devices": ["cpu"],
                },
            }
        )

        def progressed() -> bool:
            model = cluster.get("inferencemodel", "mlp", namespace=other_namespace)
            children = cluster.kubectl(
                "get", "jobs,deployments", "-n", other_namespace, "-o", "name",
                "-l", "app.kubernetes.io/managed-by=inferplane",
            ).stdout.split()  # fmt: skip
            return bool(model.get("status", {}).get("conditions")) and bool(children)

        cluster.wait_until(progressed, timeout=90, what=f"the operator to act (log: {log})")
        # The namespace enforces `restricted`: the Job controller could create the conversion
        # pod only if the operator's pod template passes it.
        job = cluster.get("jobs", namespace=other_namespace)[0]["metadata"]["name"]
        cluster.wait_until(
            lambda: cluster.get("pods", namespace=other_namespace),
            timeout=60,
            what=f"a pod of {job} (events: "
            + cluster.kubectl("get", "events", "-n", other_namespace).stdout
            + ")",
        )
        assert process.poll() is None, log.read_text()
        serve_converted_model(cluster, other_namespace, tmp_path, env)
        assert process.poll() is None, log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    # An RBAC refusal reads `User "system:serviceaccount:..." cannot <verb> resource ...` (other
    # 403s, such as writes into a namespace being deleted by another test, are not ours).
    refusals = re.findall(r'User "system:serviceaccount:[^"]+" cannot [^"\n]*', text)
    assert not refusals, f"the operator was refused: {sorted(set(refusals))}"

    # The credentials reach the conversion pods by reference, never by value.
    assert PLANTED not in text
    objects = cluster.kubectl(
        "get", "inferencemodels,jobs,deployments,pods,services,events,configmaps",
        "-n", other_namespace, "-o", "yaml",
    ).stdout  # fmt: skip
    assert PLANTED not in objects
    jobs = cluster.get("jobs", namespace=other_namespace)
    assert jobs, "no conversion Job to check"
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            # inferplane's own steps hold the store's Secret; the one running user code none
            holds = {"secretRef": {"name": SECRET_NAME}} in c.get("envFrom", [])
            assert holds is (c["name"] in ("fetch", "publish")), c["name"]
            assert not any(SECRET_NAME in arg for arg in c.get("args", []) + c.get("command", []))


SERVING_KINDS = ("deployments", "services", "horizontalpodautoscalers", "poddisruptionbudgets")


def serve_converted_model(
    cluster: Cluster, namespace: str, tmp_path: Path, env: dict[str, str]
) -> None:
    """The rest of the operator's path as the chart's identity: a model whose artifact the real
    converter already published (its stages, under the key the operator assigns) goes to
    serving (Deployment, Services, HPA, PDB; pods admitted under `restricted`), becomes Ready,
    and its deletion takes every child with it."""
    source = models.mlp_onnx(tmp_path / "mlp.onnx")
    spec = {
        "source": {"uri": "s3://models/mlp.onnx", "format": "onnx", "sha256": sha256_file(source)},
        "devices": ["cpu"],
        "replicas": {"min": 1, "max": 3},  # an HPA only when it may scale
    }
    operator_process.publish_converted(spec, source, namespace, tmp_path / "work", env)
    cluster.apply(
        {
            "apiVersion": "inferplane.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": "served", "namespace": namespace},
            "spec": spec,
        }
    )
    operator_process.wait_phase(cluster, namespace, "served", "Ready", timeout=120)
    selector = "app.kubernetes.io/instance=served"

    def children() -> dict[str, list[str]]:
        return {
            kind: cluster.kubectl(
                "get", kind, "-n", namespace, "-l", selector, "-o", "name"
            ).stdout.split()
            for kind in SERVING_KINDS
        }

    made = children()
    assert all(made.values()), made
    cluster.kubectl("delete", "inferencemodel", "served", "-n", namespace, "--wait=true")
    cluster.wait_until(
        lambda: not any(children().values()), timeout=90, what="the served model's children to go"
    )
