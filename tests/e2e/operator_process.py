# SPDX-License-Identifier: Apache-2.0
"""The real ``inferplane operator`` as a subprocess against the test cluster, and small helpers
the operator tests share (CRD install, InferenceModel manifests, held conversion pods)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster import handle
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "inferplane.io_inferencemodels.yaml"
HOLD = {"kwok.inferplane.io/hold": "true"}
CHECKPOINT = {
    "uri": "s3://models/lenet.ckpt",
    "format": "mindspore-checkpoint",
    "network": "network:lenet5",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
}


def install_crd(cluster: handle.Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/inferencemodels.inferplane.io",
    )  # fmt: skip


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "inferplane.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {"source": CHECKPOINT, **spec},
    }


class Operator:
    """``python -m inferplane operator --standalone`` with settings from the environment."""

    def __init__(
        self,
        cluster: handle.Cluster,
        *,
        store: str,
        log: Path,
        standalone: bool = True,
        **env: str,
    ) -> None:
        self.cluster = cluster
        self.standalone = standalone
        self.store = store
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.port = free_port()

    def start(self) -> None:
        env = {
            **os.environ,
            **self.cluster.env,
            "INFERPLANE_STORE": self.store,
            "INFERPLANE_CONVERSION_LABELS": json.dumps(HOLD),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        argv = [
            sys.executable, "-m", "inferplane", "operator",
            "--liveness", f"http://127.0.0.1:{self.port}/healthz",
        ]  # fmt: skip
        if self.standalone:
            argv.append("--standalone")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        handle.wait_until(self.alive, timeout=60, what=f"the operator's liveness (log {self.log})")

    def alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"the operator exited; log: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def get_model(cluster: handle.Cluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get("inferencemodel", name, namespace=namespace)
    return result


def phase(cluster: handle.Cluster, namespace: str, name: str) -> str | None:
    status = get_model(cluster, namespace, name).get("status") or {}
    value = status.get("phase")
    return value if isinstance(value, str) else None


def held_pods(cluster: handle.Cluster, namespace: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", namespace=namespace)
    return [
        p
        for p in pods
        if (p["metadata"].get("labels") or {}).get("kwok.inferplane.io/hold") == "true"
        and p.get("status", {}).get("phase") == "Running"
    ]


def release_with_result(cluster: handle.Cluster, namespace: str, pod: dict[str, Any]) -> str:
    """Finish a held conversion pod as ``inferplane convert`` would: its result, the artifact
    key, in the termination message. Returns the key."""
    key = f"test-{pod['metadata']['labels']['job-name']}"
    message = json.dumps({"key": key, "verification": {"verified": True, "maxAbsError": 1e-7}})
    cluster.hold_release(namespace, pod["metadata"]["name"], "succeeded", message)
    return key


def wait_phase(
    cluster: handle.Cluster, namespace: str, name: str, wanted: str, timeout: float = 60
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = get_model(cluster, namespace, name)
        return body if (body.get("status") or {}).get("phase") == wanted else None

    try:
        return handle.wait_until(check, timeout=timeout, what=f"{name} to be {wanted}")
    except TimeoutError:
        status = get_model(cluster, namespace, name).get("status")
        raise TimeoutError(f"{name} never became {wanted}; status: {status}") from None


def node_of(cluster: handle.Cluster, pod: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get("node", pod["spec"]["nodeName"])
    return result
