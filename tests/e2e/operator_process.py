# SPDX-License-Identifier: Apache-2.0
"""The real ``inferplane operator`` as a subprocess against the test cluster, and small helpers
the operator tests share (CRD install, InferenceModel manifests, held conversion pods)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.cluster import handle
from tests.loopback import free_port

from inferplane.api.tensors import TensorSpec
from inferplane.artifacts import uris
from inferplane.artifacts.key import TargetOptions, sha256_file
from inferplane.artifacts.manifest import ArtifactManifest, FileEntry, SourceRef, Verification
from inferplane.devices import ArtifactFormat, DeviceClass

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
    cluster.wait_established("inferencemodels.inferplane.io")


def model(name: str, **spec: Any) -> dict[str, Any]:
    """An InferenceModel manifest of the LeNet checkpoint (a copy: tests edit their source)."""
    return {
        "apiVersion": "inferplane.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {"source": copy.deepcopy(CHECKPOINT), **spec},
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

    def environment(self) -> dict[str, str]:
        """The operator process's environment: its settings (``OperatorSettings``) come from it."""
        return {
            **os.environ,
            **self.cluster.env,
            "INFERPLANE_STORE": self.store,
            "INFERPLANE_CONVERSION_LABELS": json.dumps(HOLD),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }

    def start(self) -> None:
        env = self.environment()
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


KEY_OF = """
import json, sys
from inferplane.api import v1alpha1
from inferplane.control import planner
from inferplane.control.inventory import DevicePool, Inventory
from inferplane.control.settings import OperatorSettings
from inferplane.devices import DeviceClass
spec, namespace = v1alpha1.validate_spec(json.loads(sys.argv[1])), sys.argv[2]
settings = OperatorSettings()
cpu = Inventory.from_pools([DevicePool(DeviceClass.CPU, allocatable=4000, nodes=("n",))])
(target,) = planner.choose_targets(spec, cpu)
options = planner.cluster_options(spec, target, settings)
key = planner.assigned_key(spec, options, namespace=namespace, settings=settings)
print(json.dumps({"key": key, "tool": options.tool}))
"""


def publish_converted(
    spec: dict[str, Any], source: Path, namespace: str, work: Path, env: dict[str, str]
) -> str:
    """What a cpu target's conversion Job would do, done here: the real converter's stages
    (fetch, convert, publish) on ``source``, published under the key the operator assigns the
    model ``spec`` in ``namespace`` with the settings of ``env`` (the operator's environment:
    the store, the conversion image named in the key). Returns that key."""
    assigned = json.loads(
        subprocess.run(
            [sys.executable, "-c", KEY_OF, json.dumps(spec), namespace],
            env=env, check=True, capture_output=True, text=True, timeout=120,
        ).stdout
    )  # fmt: skip
    for stage in ("fetch", "convert", "publish"):
        result = subprocess.run(
            [sys.executable, "-m", "inferplane", "convert", "--source", str(source),
             "--format", "onnx", "--to", "onnx", "--tool-id", assigned["tool"],
             "--stage", stage, "--work", str(work),
             "--store", env["INFERPLANE_STORE"], "--key", assigned["key"]],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, f"convert --stage {stage}: {result.stderr[-3000:]}"
    key: str = assigned["key"]
    return key


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


def publish_artifact(root: Path, key: str, target: TargetOptions | None = None) -> bool:
    """An artifact under ``key`` in the file store at ``root``, as a conversion's publish step
    writes it (a tiny stand-in model file, a verified parity result). False: already there."""
    directory = root / key
    if directory.exists():
        return False
    directory.mkdir(parents=True)
    model = directory / "model.onnx"
    model.write_bytes(key.encode())
    ArtifactManifest(
        key=key,
        model="test",
        source=SourceRef(uri=CHECKPOINT["uri"], format=CHECKPOINT["format"], sha256="0" * 64),
        target=target or TargetOptions(format=ArtifactFormat.ONNX, device_class=DeviceClass.CPU),
        files=[FileEntry(path=model.name, sha256=sha256_file(model), size=model.stat().st_size)],
        entrypoint=model.name,
        inputs=[TensorSpec.parse("x:-1,1,32,32:FP32")],
        outputs=[TensorSpec.parse("output:-1,10:FP32")],
        verification=Verification(verified=True, max_abs_error=1e-7),
    ).write(directory)
    return True


def release_with_result(cluster: handle.Cluster, namespace: str, pod: dict[str, Any]) -> str:
    """Finish a held conversion pod as its publish step would: an artifact in the store (its
    ``--store``) under the key the operator assigned (its ``--key``), then the pod succeeds. The
    pod reports nothing: the operator reads the store. Returns the key."""
    (publish,) = [c for c in pod["spec"]["containers"] if c["name"] == "publish"]
    argv = publish["command"]
    key = argv[argv.index("--key") + 1]
    root = uris.local_path(argv[argv.index("--store") + 1])
    assert root is not None, "the operator tests use a file store"
    publish_artifact(root, key)
    cluster.hold_release(namespace, pod["metadata"]["name"], "succeeded")
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
