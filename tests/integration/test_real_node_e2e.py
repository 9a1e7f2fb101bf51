# SPDX-License-Identifier: Apache-2.0
"""inferplane as a user runs it, on the real node: the chart installed with the locally built
images, the operator in a pod logging in as its ServiceAccount, LeNet's checkpoint on a
PersistentVolume and on S3 (moto's server on the machine's own address) converted by a Job in
the mindspore image, the server pod Ready on the operator's probes, V2 inference through the
model's Service ClusterIP with ``tritonclient``, a rollout under load, the CPU HPA reading
metrics-server, and deleting the models and uninstalling leaving nothing.

The images come from ``tests.images`` (built from Debian's packages and PyPI, cached by content);
``real_product.installed`` sets everything up as a user would.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest
import yaml
from tests import models
from tests.cluster import handle, node
from tests.cluster import node_config as config
from tests.integration.real_product import (
    RELEASE,
    S3_SOURCE,
    SOURCE_SECRET,
    Load,
    Product,
    cannot_build,
    helm,
    infer,
    installed,
    server_pods,
)

INSTANCE = "app.kubernetes.io/instance"

pytestmark = pytest.mark.timeout(1800)
"""The first test carries the module's setup: building the images on a cold machine (about six
minutes here) and importing them into containerd (the mindspore image alone took 139 s)."""


@pytest.fixture(scope="module")
def product(
    real_cluster: handle.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Product]:
    reason = cannot_build()
    if reason:
        pytest.skip(reason)
    with installed(real_cluster, tmp_path_factory.mktemp("real-e2e")) as product:
        yield product


def test_the_operator_runs_in_a_pod_as_the_chart_s_service_account(product: Product) -> None:
    (pod,) = [
        p
        for p in product.get("pods")
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"
    ]
    assert pod["spec"]["nodeName"] == config.NODE_NAME
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-inferplane"
    (container,) = pod["spec"]["containers"]
    assert container["imagePullPolicy"] == "Never"
    # No kubeconfig: the login can only be the ServiceAccount's projected token.
    assert "KUBECONFIG" not in {e["name"] for e in container.get("env", [])}
    assert pod["spec"].get("automountServiceAccountToken") is not False
    name = pod["metadata"]["name"]

    def logged_in() -> str | None:
        log = product.cluster.kubectl("logs", "-n", product.namespace, name).stdout
        # kopf's line for the operator's own login handler (handlers.login), which loads the
        # in-cluster configuration; the startup handler lists nodes with the same login.
        return log if "Activity 'login' succeeded." in log else None

    log = handle.wait_until(logged_in, timeout=60, what="the operator's in-cluster login")
    assert "inferplane operator started" in log, log[-3000:]
    assert "cannot" not in log.lower() and "LoginError" not in log, log[-3000:]


def test_lenet_from_a_volume_converts_in_a_job_and_answers_through_its_service(
    product: Product,
) -> None:
    started = time.monotonic()
    product.cluster.apply(product.model("lenet", "lenet.ckpt"))
    body = product.wait_ready("lenet")
    uncached = time.monotonic() - started
    (target,) = body["status"]["targets"]
    assert (target["format"], target["backend"]) == ("onnx", "onnxruntime")
    assert (product.store / "inferplane" / target["key"] / "inferplane.json").is_file()
    jobs = product.get("jobs")
    (job,) = [j for j in jobs if j["status"].get("succeeded")]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "ghcr.io/inferplane/mindspore:"
    )
    (pod,) = server_pods(product, "lenet")
    assert pod["spec"]["nodeName"] == config.NODE_NAME
    assert pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])

    url = product.service_url("lenet")
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    reference = models.lenet_reference(product.store / "models" / "lenet.ckpt", x)
    for binary in (False, True):
        np.testing.assert_allclose(infer(url, "lenet", x, binary=binary), reference, atol=1e-4)

    # The same source under another name: the artifact is in the store, nothing converts.
    started = time.monotonic()
    product.cluster.apply(product.model("lenet-again", "lenet.ckpt"))
    again = product.wait_ready("lenet-again", timeout=120)
    cached = time.monotonic() - started
    assert again["status"]["targets"][0]["key"] == target["key"]
    assert len(product.get("jobs")) == len(jobs)
    print(f"\napply -> Ready on the real node: {uncached:.1f} s converting, {cached:.1f} s cached")
    product.cluster.kubectl("delete", "inferencemodel", "lenet-again", "-n", product.namespace)


def test_lenet_from_s3_converts_in_a_job_and_answers_through_its_service(
    product: Product,
) -> None:
    """The checkpoint on S3 (moto on the machine's address): the fetch step gets the source's
    credentials Secret and the endpoint, the Job converts in the mindspore image."""
    started = time.monotonic()
    product.cluster.apply(product.model("lenet-s3", S3_SOURCE))
    body = product.wait_ready("lenet-s3")
    elapsed = time.monotonic() - started
    (target,) = body["status"]["targets"]
    assert (target["format"], target["backend"]) == ("onnx", "onnxruntime")
    assert (product.store / "inferplane" / target["key"] / "inferplane.json").is_file()
    uid = body["metadata"]["uid"]
    (job,) = [
        j
        for j in product.get("jobs")
        if uid in {o["uid"] for o in j["metadata"].get("ownerReferences", [])}
    ]
    assert job["status"].get("succeeded") == 1, job["status"]
    spec = job["spec"]["template"]["spec"]
    steps = {c["name"]: c for c in [*spec["initContainers"], *spec["containers"]]}
    assert steps["convert"]["image"].startswith("ghcr.io/inferplane/mindspore:")
    assert steps["fetch"]["envFrom"] == [{"secretRef": {"name": SOURCE_SECRET}}]
    assert "envFrom" not in steps["convert"]  # the step running the network code holds none
    (pod,) = server_pods(product, "lenet-s3")
    assert pod["spec"]["nodeName"] == config.NODE_NAME
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])

    url = product.service_url("lenet-s3")
    x = np.random.default_rng(2).standard_normal((3, 1, 32, 32)).astype(np.float32)
    reference = models.lenet_reference(product.s3_checkpoint, x)
    for binary in (False, True):
        np.testing.assert_allclose(infer(url, "lenet-s3", x, binary=binary), reference, atol=1e-4)
    print(f"\napply -> Ready on the real node, checkpoint on S3: {elapsed:.1f} s converting")
    product.cluster.kubectl("delete", "inferencemodel", "lenet-s3", "-n", product.namespace)


def test_a_new_artifact_rolls_out_under_load_without_a_failed_request(product: Product) -> None:
    """The server's drain (``--drain-s``: ready 503, still answering, while the endpoints move
    away) leaves no request failed while the old pod goes."""
    body = product.wait_ready("lenet")
    old_key = body["status"]["targets"][0]["key"]
    url = product.service_url("lenet")
    edited = product.model("lenet", "lenet-v2.ckpt")
    with Load(url, "lenet") as load:
        time.sleep(3)
        product.cluster.apply(edited)
        generation = product.get("inferencemodel", "lenet")["metadata"]["generation"]
        body = product.wait_ready("lenet", generation=generation)
        handle.wait_until(
            lambda: len(server_pods(product, "lenet")) == 1,
            timeout=180,
            what="the old server pods gone",
        )
        time.sleep(3)
    assert body["status"]["targets"][0]["key"] != old_key
    assert load.failures == [], load.failures[:10]
    assert len(load.latencies) > 50
    p50, p99 = load.percentiles()
    count = len(load.latencies)
    print(f"\nrollout under load: {count} requests, 0 failed, p50 {p50:.3f} s, p99 {p99:.3f} s")
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    reference = models.lenet_reference(product.store / "models" / "lenet-v2.ckpt", x)
    np.testing.assert_allclose(infer(url, "lenet", x, binary=True), reference, atol=1e-4)


def test_the_cpu_autoscaler_scales_the_pool_up_under_load_and_down_after(product: Product) -> None:
    """metrics-server reads the kubelet's /metrics/resource (the container's real cgroup CPU
    time); the HPA (the chart's scale-down window: 0) follows it up under load and down after.
    Each pod requests 100m CPU so that three fit beside anything else on the 2-CPU node: a pod
    that cannot be scheduled is one the HPA never reads. A model of its own (the rollout's
    artifact, cached): no earlier test's pods, scale or rollout are in its pool."""
    name = "lenet-hpa"
    autoscaled = {"min": 1, "max": 3, "metric": "cpu", "target": 50}
    small = {"cpu": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}}}
    product.cluster.apply(
        product.model(name, "lenet-v2.ckpt", replicas=autoscaled, deviceOptions=small)
    )
    body = product.wait_ready(name)
    (hpa,) = [h for h in product.get("hpa") if h["metadata"]["labels"].get(INSTANCE) == name]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    deployment = hpa["spec"]["scaleTargetRef"]["name"]

    def replicas() -> int:
        return int(product.get("deployment", deployment)["spec"].get("replicas", 0))

    def measured() -> list[str]:
        """The pool's pods that metrics-server has a CPU reading of."""
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{product.namespace}/pods"
        listing = json.loads(product.cluster.kubectl("get", "--raw", path).stdout)
        return [
            m["metadata"]["name"]
            for m in listing["items"]
            if m["metadata"]["name"].startswith(f"{deployment}-")
            and any("cpu" in c["usage"] for c in m["containers"])
        ]

    assert replicas() == 1 and len(server_pods(product, name)) == 1
    handle.wait_until(measured, timeout=120, interval=2, what="metrics-server's reading of it")
    url = product.service_url(name)
    with Load(url, name, workers=8) as load:
        started = time.monotonic()
        handle.wait_until(lambda: replicas() > 1, timeout=120, interval=1, what="a scale-up")
        scale_up = time.monotonic() - started
    stopped = time.monotonic()
    handle.wait_until(lambda: replicas() == 1, timeout=120, interval=1, what="the scale-down")
    scale_down = time.monotonic() - stopped
    p50, p99 = load.percentiles()
    print(
        f"\nHPA scale-up {scale_up:.0f} s after the load's start, back to one pod "
        f"{scale_down:.0f} s after it stopped; {len(load.latencies)} requests, "
        f"{len(load.failures)} failed, p50 {p50:.3f} s, p99 {p99:.3f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    assert load.failures == [], (f"load from {started:.1f}", load.failures[:10])
    assert body["status"]["phase"] == "Ready"
    product.cluster.kubectl("delete", "inferencemodel", name, "-n", product.namespace)


def _containers_of(product: Product, namespace: str) -> list[str]:
    """The node's containerd containers (sandboxes included) of pods in ``namespace``."""
    assert product.cluster.real_node is not None
    label = f'labels."io.kubernetes.pod.namespace"=={namespace}'
    listing = node.ctr(product.cluster.real_node, "containers", "ls", "-q", label)
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.split()


def test_deleting_the_models_and_uninstalling_leave_nothing(product: Product) -> None:
    """docs/install.md section 7's order: delete the models (the garbage collector removes
    their children), then ``helm uninstall``: no object of the models or of the release is
    left, in the namespace or cluster-wide, and no container of theirs on the node."""
    namespace = product.namespace
    release = yaml.safe_load_all(helm(product.cluster, "get", "manifest", RELEASE, "-n", namespace))
    rendered = [(o["kind"], o["metadata"]["name"]) for o in release if o]
    assert ("Deployment", f"{RELEASE}-inferplane") in rendered
    assert any(kind == "ClusterRole" for kind, _ in rendered)
    assert _containers_of(product, namespace) != []  # the operator's and the servers' at least

    product.cluster.kubectl("delete", "inferencemodel", "--all", "-n", namespace, "--wait=true")
    helm(product.cluster, "uninstall", RELEASE, "--namespace", namespace, "--wait")
    kinds = "deployments,replicasets,pods,services,endpointslices,jobs,hpa,pdb,networkpolicies"
    kinds += ",configmaps,serviceaccounts,roles,rolebindings,resourceclaimtemplates,leases"
    # What Kubernetes itself keeps in every namespace, and what the test made.
    ours = {"configmap/kube-root-ca.crt", "serviceaccount/default"}

    def left() -> list[str]:
        names = product.cluster.kubectl("get", kinds, "-n", namespace, "-o", "name").stdout.split()
        return [n for n in names if n not in ours]

    handle.wait_until(lambda: left() == [], timeout=120, what=f"an empty {namespace}")
    assert product.get("inferencemodels") == []
    for kind, name in rendered:
        found = product.cluster.kubectl(
            "get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name"
        ).stdout
        assert found == "", f"{kind} {name} of the release is still there"
    cluster_wide = product.cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-o", "name"
    ).stdout.split()
    assert [n for n in cluster_wide if RELEASE + "-inferplane" in n] == []
    # The kubelet stops every container of a deleted pod and removes it with its sandbox.
    handle.wait_until(
        lambda: _containers_of(product, namespace) == [],
        timeout=120,
        what=f"no container of {namespace} on the node",
    )
