# SPDX-License-Identifier: Apache-2.0
"""Conversion fixtures: the example's network code, and a briefly trained LeNet5 on the digits."""

from __future__ import annotations

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
    """``examples/lenet/train.py`` run for two epochs: ``lenet.ckpt`` + ``digits-val.npz``."""
    out = tmp_path_factory.mktemp("trained")
    if str(models.LENET_DIR) not in sys.path:
        sys.path.insert(0, str(models.LENET_DIR))
    import train  # examples/lenet/train.py

    assert train.main(["--epochs", "2", "--out", str(out)]) == 0
    return out
