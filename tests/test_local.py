# SPDX-License-Identifier: Apache-2.0
"""``inferplane run``: the example manifest end to end as a real process, answered over V2 by
the official client; device detection parsers; a bad manifest ends in one line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tests import models
from tests.loopback import free_port

from inferplane import local
from inferplane.devices import DeviceClass

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of examples/lenet with a briefly trained checkpoint and validation set in out/."""
    directory = tmp_path / "lenet"
    directory.mkdir()
    for name in ("network.py", "inferencemodel.yaml"):
        shutil.copy(models.LENET_DIR / name, directory / name)
    done = subprocess.run(
        [
            sys.executable,
            str(models.LENET_DIR / "train.py"),
            "--epochs",
            "2",
            "--out",
            str(directory / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return directory


def test_run_the_example_end_to_end(example: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "INFERPLANE_CACHE": str(tmp_path / "cache")}
    argv = [
        sys.executable, "-m", "inferplane", "run", str(example / "inferencemodel.yaml"),
        "--port", str(port), "--store", str(tmp_path / "store"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stop:" in line:
                break
        printed = "".join(lines)
        if proc.poll() is not None:
            pytest.fail(f"inferplane run exited {proc.returncode}: {proc.communicate()[1]}")
        assert f"serving 'lenet' at http://127.0.0.1:{port}" in printed, printed
        assert f"http://127.0.0.1:{port}/v2/models/lenet/infer" in printed
        assert "curl -s" in printed

        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_model_ready("lenet")
        data = np.load(example / "out" / "digits-val.npz")
        x = data["x"][:8]
        for binary in (False, True):
            tensor = httpclient.InferInput("x", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            result = client.infer("lenet", [tensor])
            logits = result.as_numpy("output")
            assert logits is not None and logits.shape == (8, 10)
            assert (logits.argmax(axis=1) == data["y"][:8]).mean() >= 0.75

        # The printed curl body is a real request (a validation digit).
        body = printed.split("-d @", 1)[1].split()[0]
        assert Path(body).is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "inferplane: accuracy on 360 samples" in err
    assert "Traceback" not in err


def test_bad_manifest_is_one_line(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: inferplane.io/v1alpha1\nkind: InferenceModel\nmetadata: {name: m}\n"
        "spec:\n  source: {uri: m.ckpt, format: mindspore-checkpoint}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "inferplane", "run", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("inferplane: error:") and "Traceback" not in done.stderr
    assert "network" in done.stderr


def test_missing_device_is_refused(tmp_path: Path) -> None:
    if any(p.device_class is DeviceClass.ASCEND310 for p in local.detect()):
        pytest.skip("an Ascend 310 is present here")
    shutil.copy(models.LENET_DIR / "inferencemodel.yaml", tmp_path / "m.yaml")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferplane",
            "run",
            str(tmp_path / "m.yaml"),
            "--device",
            "ascend310",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no ascend310 device found on this machine" in done.stderr


def test_detection_finds_the_cpu() -> None:
    pools = local.detect()
    assert pools[0].device_class is DeviceClass.CPU
    assert pools[0].allocatable == (os.cpu_count() or 1) * 1000


NVIDIA_SMI_NAMES = (
    # `nvidia-smi --query-gpu=name --format=csv,noheader` on an 8-GPU A100 host (driver 550)
    "NVIDIA A100-SXM4-40GB\n" * 8,
    # the same on a T4 host with an older driver (the brand word "Tesla") and an H100 host
    "Tesla T4\nTesla T4\n",
    "NVIDIA H100 80GB HBM3\n",
)


def test_nvidia_smi_output_gives_canonical_products() -> None:
    """`inferplane run` names a GPU the way the cluster's pools, the spec and the artifact key
    do: A100-SXM4-40GB, not NVIDIA A100-SXM4-40GB or NVIDIA-A100-SXM4-40GB."""
    assert local.parse_nvidia_smi(NVIDIA_SMI_NAMES[0]) == {"A100-SXM4-40GB": 8}
    assert local.parse_nvidia_smi(NVIDIA_SMI_NAMES[1] + "\n") == {"T4": 2}
    assert local.parse_nvidia_smi(NVIDIA_SMI_NAMES[2]) == {"H100-80GB-HBM3": 1}
    assert local.parse_nvidia_smi("") == {}


def test_nvml_names_give_canonical_products() -> None:
    """nvmlDeviceGetName answers bytes in older pynvml releases and str in newer ones."""
    recorded = [b"NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", b"Tesla T4", ""]
    assert local.gpu_counts(recorded) == {"A100-SXM4-40GB": 2, "T4": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "| 0     910B3               | OK            | 93.4 ...",
            (DeviceClass.ASCEND910, "Ascend910B3"),
        ),
        (
            "| 0     310P3               | OK            | NA ...",
            (DeviceClass.ASCEND310, "Ascend310P3"),
        ),
        ("| 0     Ascend310           | OK ...", (DeviceClass.ASCEND310, "Ascend310")),
        ("no devices", None),
    ],
)
def test_npu_smi_parsing(text: str, expected: tuple[DeviceClass, str] | None) -> None:
    assert local.parse_npu_smi(text) == expected
