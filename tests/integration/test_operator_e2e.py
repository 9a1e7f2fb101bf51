# SPDX-License-Identifier: Apache-2.0
"""LeNet end to end on the real API server, nothing simulated but the kubelet.

The operator plans a conversion Job; its pod is held; the test runs that pod's steps (fetch,
convert, publish: their exact commands and environments) as local processes in order, sharing a
work directory as the pod's volumes (real ``inferplane convert``, real MindSpore), publishing
into a ``file://`` store the operator reads too, then ends the pod. The operator deploys the
server; the test runs one server pod's exact command locally and asks it through the official V2
client. Deleting the model removes everything it owns.

Two deliberate differences from a pod, both what the pod's own plumbing does: PYTHONPATH=/network
(filled by the init container from ``spec.source.image``) points at examples/lenet, and the server
listens on 127.0.0.1 and a free port instead of the pod's own network namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests import models
from tests.cluster import handle
from tests.e2e import operator_process as op
from tests.integration.chart_identity import chart_operator_identity
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
LENET_DIR = ROOT / "examples" / "lenet"


def _argv(command: list[str]) -> list[str]:
    """The container's command with ``inferplane`` from this environment."""
    assert command[0] == "inferplane", command
    return [sys.executable, "-m", "inferplane", *command[1:]]


def _env(container: dict[str, Any], **extra: str) -> dict[str, str]:
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    if env.get("PYTHONPATH") == "/network":
        env["PYTHONPATH"] = os.pathsep.join([str(LENET_DIR), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, **env, **extra}


def _option(argv: list[str], name: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(name) + 1] = value
    return out


@pytest.fixture(params=["admin", "chart-service-account"])
def operator(
    request: pytest.FixtureRequest, cluster: handle.Cluster, namespace: str, tmp_path: Path
) -> Iterator[op.Operator]:
    """The operator as the cluster's admin, and as the ServiceAccount the Helm chart creates
    (with the chart's RBAC and nothing more): the same end-to-end path must pass as both."""
    op.install_crd(cluster)
    with contextlib.ExitStack() as stack:
        identity: dict[str, str] = {}
        if request.param == "chart-service-account":
            kubeconfig = stack.enter_context(chart_operator_identity(cluster, namespace, tmp_path))
            identity["KUBECONFIG"] = str(kubeconfig)
        process = op.Operator(
            cluster, store=f"file://{tmp_path / 'store'}", log=tmp_path / "operator.log", **identity
        )
        process.start()
        stack.callback(process.stop)
        yield process


def test_lenet_end_to_end(
    cluster: handle.Cluster,
    operator: op.Operator,
    namespace: str,
    tmp_path: Path,
    lenet_checkpoint: Path,
) -> None:
    import tritonclient.http as httpclient

    checkpoint = tmp_path / "lenet.ckpt"
    shutil.copy(lenet_checkpoint, checkpoint)
    manifest = op.model("lenet", devices=["cpu"], batching={"maxBatchSize": 4, "maxDelayMs": 1})
    manifest["spec"]["source"]["uri"] = f"file://{checkpoint}"
    manifest["spec"]["source"]["image"] = "registry.example/lenet-code@sha256:" + "1" * 64
    manifest["spec"]["verification"] = {"samples": 4}
    cluster.apply(manifest, namespace=namespace)

    (pod,) = handle.wait_until(
        lambda: op.held_pods(cluster, namespace), timeout=60, what="the held conversion pod"
    )
    steps = {c["name"]: c for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]}
    assert list(steps) == ["network-code", "fetch", "convert", "publish"]
    work = tmp_path / "work"
    for name in ("fetch", "convert", "publish"):  # in the pod's order, sharing the volumes
        container = steps[name]
        assert container["command"][:2] == ["inferplane", "convert"]
        assert "envFrom" not in container or name != "convert"
        done = subprocess.run(
            _option(_argv(container["command"]), "--work", str(work)),
            env=_env(container, INFERPLANE_TERMINATION_LOG=str(tmp_path / f"{name}.log")),
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, (name, done.stderr[-3000:])
    # The pod reports nothing the operator uses: it finds the artifact in the store itself.
    cluster.hold_release(namespace, pod["metadata"]["name"], "succeeded")

    body = op.wait_phase(cluster, namespace, "lenet", "Ready", timeout=90)
    (target,) = body["status"]["targets"]
    assert (target["deviceClass"], target["format"], target["backend"]) == (
        "cpu", "onnx", "onnxruntime",
    )  # fmt: skip
    assert target["verification"]["verified"] is True
    assert target["verification"]["maxAbsError"] < 1e-4
    assert (tmp_path / "store" / target["key"] / "inferplane.json").is_file()
    conditions = {c["type"]: c["status"] for c in body["status"]["conditions"]}
    assert conditions == {
        "Converted": "True", "Verified": "True", "Ready": "True", "SourceImagePinned": "True",
    }  # fmt: skip

    (server_pod,) = [
        p for p in cluster.get("pods", namespace=namespace)
        if p["metadata"]["labels"].get("app.kubernetes.io/component") == "server"
    ]  # fmt: skip
    server = server_pod["spec"]["containers"][0]
    port = free_port()
    argv = _option(_option(_argv(server["command"]), "--host", "127.0.0.1"), "--port", str(port))
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(argv, env=_env(server), stdout=log, stderr=subprocess.STDOUT)
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError((tmp_path / "server.log").read_text()[-3000:])
            try:
                return bool(client.is_model_ready("lenet"))
            except Exception:
                return False

        handle.wait_until(ready, timeout=120, interval=0.5, what="the server to be ready")
        metadata = client.get_model_metadata("lenet")
        x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
        request = httpclient.InferInput(metadata["inputs"][0]["name"], list(x.shape), "FP32")
        request.set_data_from_numpy(x, binary_data=True)
        result = client.infer("lenet", [request])
        y = result.as_numpy(metadata["outputs"][0]["name"])
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert y is not None and y.shape == (3, 10)
    np.testing.assert_allclose(y, models.lenet_reference(checkpoint, x), atol=1e-4)

    cluster.kubectl("delete", "inferencemodel", "lenet", "-n", namespace)
    kinds = "deployments,services,pdb,hpa,jobs"
    selector = "app.kubernetes.io/managed-by=inferplane"  # not the chart's own objects
    owned = ("get", kinds, "-n", namespace, "-l", selector, "-o", "name")
    handle.wait_until(
        lambda: cluster.kubectl(*owned).stdout.strip() == "",
        timeout=60,
        what="everything owned by the model to be gone",
    )
    # As the chart's ServiceAccount, an RBAC refusal reads `User "system:serviceaccount:..."
    # cannot <verb> resource ...`: the chart's RBAC must have been enough for the whole path.
    refusals = re.findall(
        r'User "system:serviceaccount:[^"]+" cannot [^"\n]*', operator.log.read_text()
    )
    assert not refusals, sorted(set(refusals))
