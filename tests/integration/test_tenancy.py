# SPDX-License-Identifier: Apache-2.0
"""Tenant isolation of conversions on the real API server: the conversion pod as admitted (the
ServiceAccount admission plugin adds a token volume unless told not to), and a pod that reports
someone else's artifact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cluster import handle
from tests.e2e import operator_process as op

SECRETS = {"INFERPLANE_STORE_SECRET": "store-write", "INFERPLANE_SOURCE_SECRET": "source-read"}


@pytest.fixture
def operator(cluster: handle.Cluster, tmp_path: Path) -> Iterator[op.Operator]:
    op.install_crd(cluster)
    process = op.Operator(
        cluster, store=f"file://{tmp_path / 'store'}", log=tmp_path / "operator.log", **SECRETS
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _held_pod(cluster: handle.Cluster, namespace: str) -> dict[str, Any]:
    (pod,) = handle.wait_until(
        lambda: op.held_pods(cluster, namespace), timeout=60, what="the held conversion pod"
    )
    return pod


def test_the_step_running_user_code_holds_no_credential(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    manifest = op.model("tenant", devices=["cpu"])
    manifest["spec"]["source"]["uri"] = "pvc://models/lenet.ckpt"
    manifest["spec"]["source"]["image"] = "registry.example/code@sha256:" + "1" * 64
    cluster.apply(manifest, namespace=namespace)
    # As the API server admitted it (Pending: the claim does not exist, which does not matter).
    (pod,) = handle.wait_until(
        lambda: cluster.get("pods", namespace=namespace), timeout=60, what="the conversion pod"
    )
    spec = pod["spec"]
    steps = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    assert list(steps) == ["network-code", "fetch", "convert", "publish"]
    assert spec["automountServiceAccountToken"] is False
    kinds = {name for volume in spec["volumes"] for name in volume if name != "name"}
    assert kinds <= {"emptyDir", "persistentVolumeClaim"}, spec["volumes"]  # no token, no Secret
    volumes = {v["name"]: v for v in spec["volumes"]}
    for name in ("network-code", "convert"):
        container = steps[name]
        assert "envFrom" not in container, name
        assert not [e for e in container.get("env", []) if "valueFrom" in e], name
        for mount in container["volumeMounts"]:
            assert "persistentVolumeClaim" not in volumes[mount["name"]], (name, mount)
            if name == "convert" and mount["name"] in ("source", "network"):
                assert mount.get("readOnly") is True, (name, mount)
    assert steps["fetch"]["envFrom"] == [{"secretRef": {"name": "source-read"}}]
    assert steps["publish"]["envFrom"] == [{"secretRef": {"name": "store-write"}}]
    (claim,) = [m for m in steps["fetch"]["volumeMounts"] if m["name"].startswith("pvc-")]
    assert claim["readOnly"] is True
    (job,) = cluster.get("jobs", namespace=namespace)
    key = job["metadata"]["annotations"]["inferplane.io/artifact-key"]
    argv = steps["publish"]["command"]
    assert argv[argv.index("--key") + 1] == key and key.startswith(f"{namespace}.onnx-cpu-")


def test_a_pod_reporting_another_key_changes_nothing(
    cluster: handle.Cluster, operator: op.Operator, namespace: str
) -> None:
    """A conversion pod that ends reporting another namespace's artifact (which does exist in
    the store) deploys nothing: the operator looks up only the key it assigned."""
    cluster.apply(op.model("victim", devices=["cpu"]), namespace=namespace)
    pod = _held_pod(cluster, namespace)
    root = Path(operator.store.removeprefix("file://"))
    stolen = "team-b.onnx-cpu-0123456789abcdef01234567"
    op.publish_artifact(root, stolen)
    message = json.dumps({"key": stolen, "verification": {"verified": True}})
    cluster.hold_release(namespace, pod["metadata"]["name"], "succeeded", message)
    body = op.wait_phase(cluster, namespace, "victim", "Failed", timeout=60)
    (target,) = body["status"]["targets"]
    assert "key" not in target and "store holds no artifact under its key" in target["message"]
    assert stolen not in json.dumps(body["status"])
    assert cluster.get("deployments", namespace=namespace) == []
