# SPDX-License-Identifier: Apache-2.0
"""The built images do their job, run as a pod runs them (read-only root,
uid 65532, no capabilities, host network: ``tests/images/container.py``).

Builds what is missing first (``tests.images.ensure``: minutes cold, nothing when cached). The
operator image's smoke test needs an API server: ``tests/integration/test_operator_image.py``.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from tests import images, models
from tests.images import container, tools
from tests.loopback import free_port

pytestmark = pytest.mark.slow
BUILD_TIMEOUT = pytest.mark.timeout(1800)
"""A cold machine builds the base and the image inside the first test that needs it (the
mindspore image: about 5 minutes on 2 shared cores, docs/benchmarks.md)."""
ROOT = Path(__file__).resolve().parents[2]


def readable_copy(source: Path, directory: Path) -> Path:
    """``source`` copied into ``directory``, both readable by the image's user (uid 65532)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    target = directory / source.name
    shutil.copyfile(source, target)
    target.chmod(0o644)
    return target


def wait_ready(running: container.Running, port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(f"the container exited ({running.process.returncode}):\n{running.output()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"not ready after {timeout_s} s:\n{running.output()}")


def infer(port: int, model: str, name: str, x: np.ndarray) -> np.ndarray:
    body = {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    output = answer["outputs"][0]
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


def build_info(port: int) -> str:
    """The ``inferplane_build_info`` sample of the server's ``/metrics``: the compiled build
    (setup.py, the Dockerfiles' ``wheel`` stage) must be what the image runs."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    (line,) = [x for x in text.splitlines() if x.startswith("inferplane_build_info{")]
    return line


def serve(
    image: str, args: list[str], check: Callable[[int], None], **kwargs: Any
) -> container.Running:
    port = free_port()
    argv = ["serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with container.run(image, argv, **kwargs) as running:
        wait_ready(running, port)
        check(port)
        return running


@BUILD_TIMEOUT
def test_cpu_image_serves_onnx(mlp_onnx: Path, tmp_path: Path) -> None:
    image = images.for_tests("cpu")
    model = readable_copy(mlp_onnx, tmp_path / "model")
    x = np.random.default_rng(7).standard_normal((3, 64)).astype(np.float32)
    expected = ort.InferenceSession(str(mlp_onnx)).run(None, {"x": x})[0]

    def check(port: int) -> None:
        got = infer(port, "mlp", "x", x)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert 'compiled="true"' in build_info(port)

    serve(image, [f"/model/{model.name}"], check, mounts={"/model": model.parent})


@BUILD_TIMEOUT
def test_cpu_image_is_locked_down(tmp_path: Path) -> None:
    """What the smoke tests rely on: a read-only root, uid 65532, no capabilities."""
    image = images.for_tests("cpu")
    probe = (
        "import os, pathlib\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    pathlib.Path('/opt/probe').write_text('x')\nexcept OSError as e:\n"
        "    print('root', e.errno)\n"
        "pathlib.Path('/tmp/probe').write_text('x')\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
    )
    code, output = container.run_to_end(image, ["-c", probe], entrypoint=["python"])
    assert code == 0, output
    lines = output.split()
    assert lines[:2] == ["65532", "65532"], output
    assert lines[2:4] == ["root", "30"], output  # EROFS: the root is read-only
    assert lines[4] == "0000000000000000", output  # no effective capability


@BUILD_TIMEOUT
def test_mindspore_image_converts_and_serves_lenet(lenet_checkpoint: Path, tmp_path: Path) -> None:
    image = images.for_tests("mindspore")
    model = readable_copy(lenet_checkpoint, tmp_path / "model")
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o777)
    network = {"/network": ROOT / "examples" / "lenet"}
    env = {"PYTHONPATH": "/network"}
    convert = [
        "convert",
        "--source",
        f"/model/{model.name}",
        "--format",
        "mindspore-checkpoint",
        "--network",
        models.LENET_NETWORK,
        "--input",
        models.LENET_INPUT,
        "--to",
        "onnx",
        "--store",
        "/store",
        "--name",
        "lenet",
        "--samples",
        "2",
        "--json",
    ]
    code, output = container.run_to_end(
        image,
        convert,
        mounts={"/model": model.parent, **network},
        writable={"/store": store},
        env=env,
        timeout_s=600,
    )
    assert code == 0, output
    # The container's stdout (the manifest) and stderr (progress lines) share one log, and a
    # progress line can land after the manifest: read the one JSON document that starts a line.
    manifest, _ = json.JSONDecoder().raw_decode(output, output.index("{\n"))
    assert manifest["verification"]["verified"] is True, manifest["verification"]
    (onnx_file,) = store.rglob("*.onnx")
    x = np.random.default_rng(3).standard_normal((2, 1, 32, 32)).astype(np.float32)
    expected = ort.InferenceSession(str(onnx_file)).run(None, {"x": x})[0]

    def check(port: int) -> None:
        got = infer(port, "lenet", "x", x)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        assert 'compiled="true"' in build_info(port)

    serve(
        image,
        [
            "--backend",
            "mindspore",
            "--network",
            models.LENET_NETWORK,
            "--input",
            models.LENET_INPUT,
            "--name",
            "lenet",
            f"/model/{model.name}",
        ],
        check,
        mounts={"/model": model.parent, **network},
        env=env,
    )


@BUILD_TIMEOUT
def test_operator_image_has_no_model_runtime() -> None:
    """No model runtime; what it keeps of the kubernetes client (its login) and of botocore
    (the S3, STS and SSO models: an S3 store and its credentials) still loads."""
    image = images.for_tests("operator")
    probe = (
        "import importlib.util as u\n"
        "names = ('numpy', 'onnx', 'onnxruntime', 'mindspore', 'kopf', 'boto3')\n"
        "print(' '.join(n for n in names if u.find_spec(n)))\n"
        "import boto3\n"
        "for service in ('s3', 'sts', 'sso', 'sso-oidc'):\n"
        "    boto3.client(service, region_name='us-east-1', endpoint_url='http://127.0.0.1:9')\n"
        "from inferplane.control import kube\n"
        "from kubernetes import client, config\n"
        "print('clients ok')\n"
    )
    code, output = container.run_to_end(image, ["-c", probe], entrypoint=["python"])
    assert code == 0, output
    assert output.split() == ["kopf", "boto3", "clients", "ok"], output


@BUILD_TIMEOUT
def test_an_archive_loads_back_into_buildah(tmp_path: Path) -> None:
    """A machine whose buildah storage lost an image (or never had it: the archive came from
    the cache) gets it back from the archive under both its names."""
    image = images.for_tests("operator")
    built = images.ensure(["operator"])["operator"]
    log = tmp_path / "buildah.log"
    before = tools.output(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", image], log
    )
    for name in (built.local, built.reference):
        tools.run(["buildah", "rmi", name], log)
    assert not tools.image_exists(built.local)
    assert images.load(built) == built.local
    after = tools.output(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", built.reference],
        log,
    )
    assert after == before
