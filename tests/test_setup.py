# SPDX-License-Identifier: Apache-2.0
"""setup.py's switch for the compiled build (``INFERPLANE_MYPYC``) refuses what would go wrong.

The compiled build itself is exercised by ``tests/compiled.py`` (``scripts/test.sh`` runs
``tests/serving`` against it) and by the runtime images' builder stage; the pure one by every
install of the development environment (``scripts/env.sh``) and the images' dependency layers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setup(flag: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "setup.py", *command],
        cwd=ROOT,
        env={**os.environ, "INFERPLANE_MYPYC": flag},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_editable_install_is_never_compiled() -> None:
    """Extension modules built in place would shadow the sources being edited."""
    result = _setup("1", "editable_wheel", "--dist-dir", "/nonexistent")
    assert result.returncode != 0
    assert "does not apply to an editable install" in result.stderr


@pytest.mark.parametrize("flag", ["yes", "2", "true"])
def test_the_switch_takes_0_or_1_only(flag: str) -> None:
    result = _setup(flag, "--name")
    assert result.returncode != 0
    assert f"INFERPLANE_MYPYC must be 0 or 1, not {flag!r}" in result.stderr
