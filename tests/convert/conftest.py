# SPDX-License-Identifier: Apache-2.0
"""Conversion fixtures: the example's network code, and a briefly trained LeNet5 on the digits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests import models


@pytest.fixture(scope="session")
def lenet_code() -> Path:
    """The directory holding ``network.py`` (``network:lenet5``)."""
    return models.LENET_DIR


@pytest.fixture(scope="session")
def trained_lenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``examples/lenet/train.py`` run for two epochs: ``lenet.ckpt`` + ``digits-val.npz``.

    In a process of its own, as users run it: the script picks MindSpore's device, which a
    process can do only before its first kernel (and other tests here run MindSpore first).
    """
    out = tmp_path_factory.mktemp("trained")
    train = models.LENET_DIR / "train.py"
    subprocess.run([sys.executable, str(train), "--epochs", "2", "--out", str(out)], check=True)
    return out
