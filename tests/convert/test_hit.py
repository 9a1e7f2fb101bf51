# SPDX-License-Identifier: Apache-2.0
"""The store-hit fast path: a repeated conversion answered with the standard library only, the
same answer as the full pipeline's, and every case it is not sure of left to the pipeline."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests import models

from inferplane.artifacts.key import sha256_file
from inferplane.control import observed
from inferplane.convert import hit, pipeline, progress
from inferplane.devices import ArtifactFormat

LENET = ["--format", "mindspore-checkpoint", "--network", "network:lenet5", "--to", "onnx"]
X = "x:-1,1,32,32:FP32"

RUN_CLI = (
    "import sys; from inferplane.cli import main\n"
    "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    "heavy = sorted({'pydantic', 'mindspore', 'onnxruntime', 'numpy'} & set(sys.modules))\n"
    "assert not heavy, f'imported {heavy}'\n"
)
"""Runs ``inferplane`` with the given arguments, then fails if a heavy package was imported."""


def cli_options(source: Path, store: Path | str, /, **changes: Any) -> dict[str, Any]:
    """``inferplane convert``'s options as click hands them over, for an ONNX source."""
    options: dict[str, Any] = {
        "source": str(source), "source_format": "onnx", "network": None, "inputs": (),
        "target": "onnx", "device": None, "device_spec": None, "precision": "fp32",
        "batch": None, "store": str(store), "name": None, "source_sha256": None, "samples": 8,
        "sample_inputs": None, "atol": None, "rtol": None, "validation": None,
        "max_accuracy_drop": 0.01, "as_json": False,
    }  # fmt: skip
    return {**options, **changes}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """An ONNX model converted once into a file store: (source, store, key)."""
    root = tmp_path_factory.mktemp("hit")
    source = models.mlp_onnx(root / "mlp.onnx")
    req = pipeline.Request(
        source=str(source),
        source_format=ArtifactFormat.ONNX,
        target=ArtifactFormat.ONNX,
        store=str(root / "store"),
    )
    result = pipeline.convert(req, reporter=progress.Silent())
    return source, root / "store", result.manifest.key


def answer(options: dict[str, Any]) -> tuple[bool, str]:
    stream = io.StringIO()
    answered = hit.answer(options, progress.Reporter(stream, rich=False))
    return answered, stream.getvalue()


def test_a_repeated_checkpoint_conversion_imports_no_heavy_package(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    """The second run in a fresh process: no pydantic, no MindSpore, and the same result in the
    termination log as the first run wrote."""
    store = tmp_path / "store"
    argv = ["convert", "--source", str(lenet_checkpoint), *LENET, "--input", X]
    argv += ["--store", str(store)]
    env = {**os.environ, "PYTHONPATH": f"{lenet_code}{os.pathsep}{os.environ['PYTHONPATH']}"}
    first_log, second_log = tmp_path / "first", tmp_path / "second"
    first = subprocess.run(
        [sys.executable, "-m", "inferplane", *argv],
        capture_output=True, text=True, timeout=300,
        env={**env, "INFERPLANE_TERMINATION_LOG": str(first_log)},
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "store hit" not in first.stderr
    second = subprocess.run(
        [sys.executable, "-c", RUN_CLI, *argv],
        capture_output=True, text=True, timeout=120,
        env={**env, "INFERPLANE_TERMINATION_LOG": str(second_log)},
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "store hit" in second.stderr
    assert json.loads(second_log.read_text()) == json.loads(first_log.read_text())
    artifact = observed.parse_result(second_log.read_text())
    assert artifact is not None and artifact.verification is not None
    assert artifact.verification.verified
    assert f"artifact {artifact.key} at {store / artifact.key}" in second.stderr


def test_answers_a_hit(published: tuple[Path, Path, str]) -> None:
    source, store, key = published
    answered, text = answer(cli_options(source, store))
    assert answered
    assert f"store hit: {store / key} (nothing to convert)" in text
    digest = sha256_file(source)
    assert answer(cli_options(source, f"file://{store}", source_sha256=digest.upper()))[0]


@pytest.mark.parametrize(
    "changes",
    [
        {"as_json": True},
        {"store": "s3://bucket/prefix"},
        {"source_sha256": "0" * 64},
        {"precision": "fp16"},
        {"source_format": "mindir", "inputs": ("x:-1,64:FP32",)},
        {"batch": "1,x,3"},
        {"device": "edge"},
    ],
    ids=["json", "s3", "digest", "request-mistake", "mislabelled", "bad-batch", "other-key"],
)
def test_leaves_to_the_pipeline(published: tuple[Path, Path, str], changes: dict[str, Any]) -> None:
    """Anything it is not sure of: it prints nothing and the full pipeline runs."""
    source, store, _ = published
    assert answer(cli_options(source, store, **changes)) == (False, "")


def test_a_damaged_artifact_is_left_to_the_pipeline(
    tmp_path: Path, published: tuple[Path, Path, str]
) -> None:
    source, store, key = published
    copy = tmp_path / "store"
    subprocess.run(["cp", "-r", str(store), str(copy)], check=True)
    (copy / key / "model.onnx").write_bytes(b"truncated")
    assert answer(cli_options(source, copy)) == (False, "")
    (copy / key / "inferplane.json").write_text("{not json")
    assert answer(cli_options(source, copy)) == (False, "")
    done = subprocess.run(
        [sys.executable, "-m", "inferplane", "convert", "--source", str(source),
         "--format", "onnx", "--to", "onnx", "--store", str(copy)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "invalid artifact manifest" in done.stderr
