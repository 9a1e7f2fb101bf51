# SPDX-License-Identifier: Apache-2.0
"""The repository's shape: DESIGN.md's top-level layout and the import rules between layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_operator_is_the_stdlib_module() -> None:
    """``operator/`` is a source root only: ``import operator`` must stay Python's own module."""
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not out.startswith(str(ROOT)), out
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_top_level_layout() -> None:
    for name in (
        "pyproject.toml",
        "operator/inferplane",
        "runtime-images",
        "crds",
        "charts",
        "tests",
    ):
        assert (ROOT / name).exists(), name


def test_import_contracts_hold() -> None:
    """import-linter's contracts (pyproject.toml): control and serving independent, pure core."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_crd_and_serve_need_no_kopf() -> None:
    """``inferplane crd`` and the server import no kopf (STYLE.md 3.2)."""
    code = (
        "import sys, inferplane.cli, inferplane.api.crd, inferplane.serving.server;"
        "sys.exit(1 if 'kopf' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_crd_needs_neither_kopf_nor_the_server_stack() -> None:
    code = (
        "import sys; from inferplane.api import crd; crd.render_yaml();"
        "loaded = {'kopf', 'uvicorn', 'onnxruntime', 'mindspore'} & set(sys.modules);"
        "sys.exit(f'crd imported {loaded}' if loaded else 0)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
