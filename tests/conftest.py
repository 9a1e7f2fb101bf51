# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small real models built once per session (see ``tests/models.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests import models


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_onnx(model_dir: Path) -> Path:
    """64 -> 128 -> 10 MLP, dynamic batch."""
    return models.mlp_onnx(model_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def typed_onnx(model_dir: Path) -> Path:
    return models.typed_identity_onnx(model_dir / "typed.onnx")


@pytest.fixture(scope="session")
def multi_onnx(model_dir: Path) -> Path:
    return models.multi_io_onnx(model_dir / "multi.onnx")


@pytest.fixture(scope="session")
def fixed_onnx(model_dir: Path) -> Path:
    return models.fixed_batch_onnx(model_dir / "fixed.onnx")


@pytest.fixture(scope="session")
def lenet_checkpoint(model_dir: Path) -> Path:
    return models.lenet_checkpoint(model_dir)


@pytest.fixture(scope="session")
def lenet_mindir(model_dir: Path, lenet_checkpoint: Path) -> Path:
    return models.lenet_mindir(model_dir, lenet_checkpoint)
