# SPDX-License-Identifier: Apache-2.0
"""Choosing the backend, artifact directories, and the error paths of runtimes absent here."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.serving.conftest import ROOT, StartServer, binary_infer, binary_output
from tests.serving.test_server import run_ort

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.key import TargetOptions
from inferplane.artifacts.manifest import (
    ArtifactManifest,
    FileEntry,
    SourceRef,
    Verification,
)
from inferplane.devices import ArtifactFormat, BackendName, DeviceClass
from inferplane.serving import server


def test_resolve_by_suffix(mlp_onnx: Path, tmp_path: Path) -> None:
    model = server.resolve(mlp_onnx)
    assert (model.name, model.backend, model.files.device) == (
        "mlp",
        BackendName.ONNXRUNTIME,
        DeviceClass.CPU,
    )
    (tmp_path / "net.mindir").write_bytes(b"")
    assert server.resolve(tmp_path / "net.mindir", name="n").backend is BackendName.MINDSPORE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"path": "missing.onnx"}, "no such model file"),
        ({"path": "model.txt"}, "unknown model file type"),
        ({"path": "net.ckpt"}, "--network"),
        ({"path": "model.onnx", "backend": "mindspore"}, "cannot serve a onnx model"),
        ({"path": "model.onnx", "inputs": ["x:1,2"]}, "name:shape:datatype"),
        ({"path": "."}, "inferplane.json"),
    ],
)
def test_resolve_errors(tmp_path: Path, args: dict[str, object], message: str) -> None:
    for name in ("model.txt", "net.ckpt", "model.onnx"):
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / str(args.pop("path"))
    with pytest.raises(errors.SpecError, match=message):
        server.resolve(path, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("suffix", "backend", "package", "image"),
    [
        (".plan", "tensorrt", "tensorrt", "nvidia"),
        (".om", "acl", "pyACL", "ascend"),
        (".ms", "mslite", "mindspore_lite", "edge"),
    ],
)
def test_absent_runtime_is_one_clear_error(
    tmp_path: Path, suffix: str, backend: str, package: str, image: str
) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\0")
    backend_obj = server.create_backend(server.resolve(path))
    with pytest.raises(errors.RuntimeMissing) as info:
        backend_obj.load()
    assert info.value.backend == backend and info.value.image == image
    assert package in str(info.value)


def test_onnxruntime_on_nvidia_needs_a_gpu_provider(mlp_onnx: Path) -> None:
    model = server.resolve(mlp_onnx, device="nvidia")
    with pytest.raises(errors.RuntimeMissing, match="onnxruntime-gpu"):
        server.create_backend(model).load()


def test_cli_absent_runtime_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.plan"
    path.write_bytes(b"\0")
    done = subprocess.run(
        [sys.executable, "-m", "inferplane", "serve", str(path), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "tensorrt" in lines[0] and "'nvidia' image" in lines[0]


def test_artifact_directory(start_server: StartServer, mlp_onnx: Path, tmp_path: Path) -> None:
    data = mlp_onnx.read_bytes()
    (tmp_path / "model.onnx").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    manifest = ArtifactManifest(
        key="onnx-cpu-test",
        model="digits",
        source=SourceRef(uri=str(mlp_onnx), format=ArtifactFormat.ONNX, sha256=digest),
        target=TargetOptions(format=ArtifactFormat.ONNX, device_class=DeviceClass.CPU),
        files=[FileEntry(path="model.onnx", sha256=digest, size=len(data))],
        entrypoint="model.onnx",
        inputs=[TensorSpec.parse("x:-1,64:FP32")],
        outputs=[TensorSpec.parse("y:-1,10:FP32")],
        verification=Verification(verified=True),
    )
    manifest.write(tmp_path)
    srv = start_server(tmp_path)
    x = np.ones((3, 64), np.float32)
    status, body = binary_infer(srv, "digits", x)
    assert status == 200
    np.testing.assert_array_equal(binary_output(body, 3, 10), run_ort(mlp_onnx, {"x": x})["y"])
