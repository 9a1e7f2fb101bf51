# SPDX-License-Identifier: Apache-2.0
"""The network's code and the converting tool, as the local artifact key names them."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from inferplane import __version__, errors
from inferplane.convert import identity
from inferplane.devices import ArtifactFormat

F = ArtifactFormat


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_single_file_module_is_digested_and_any_edit_changes_it(tmp_path: Path) -> None:
    net = _write(tmp_path / "net.py", "def build():\n    return 1\n")
    before = identity.code_digest("net:build", [tmp_path])
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    assert identity.code_digest("net:build", [tmp_path]) == before
    net.write_text("def build():\n    return 2  # a fixed forward pass\n")
    assert identity.code_digest("net:build", [tmp_path]) != before


def test_a_package_covers_every_source_file_but_not_its_caches(tmp_path: Path) -> None:
    _write(tmp_path / "pkg" / "__init__.py", "")
    layers = _write(tmp_path / "pkg" / "layers.py", "WIDTH = 8\n")
    _write(tmp_path / "pkg" / "model.py", "from pkg.layers import WIDTH\n")
    before = identity.code_digest("pkg.model:build", [tmp_path])
    _write(tmp_path / "pkg" / "__pycache__" / "model.cpython-311.py", "stale")
    assert identity.code_digest("pkg.model:build", [tmp_path]) == before
    layers.write_text("WIDTH = 16\n")  # a helper module, not the entry point's file
    assert identity.code_digest("pkg.model:build", [tmp_path]) != before


def test_the_first_directory_on_the_path_wins(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "net.py", "A = 1\n")
    _write(tmp_path / "b" / "net.py", "B = 1\n")
    first = identity.code_digest("net:build", [tmp_path / "a", tmp_path / "b"])
    assert first == identity.code_digest("net:build", [tmp_path / "a"])
    assert first != identity.code_digest("net:build", [tmp_path / "b"])


def test_a_module_nowhere_on_the_path_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(errors.SpecError, match="module 'nowhere_net' is not on the path"):
        identity.code_digest("nowhere_net:build", [tmp_path])


def test_search_path_puts_the_sources_code_first(tmp_path: Path) -> None:
    assert identity.search_path(tmp_path)[0] == tmp_path
    assert identity.search_path()[0] != tmp_path


def test_tool_identity_names_the_tools_that_run_with_their_versions() -> None:
    mindspore = importlib.metadata.version("mindspore")
    assert identity.tool_identity(F.MINDSPORE_CHECKPOINT, F.ONNX) == (
        f"inferplane=={__version__} mindspore=={mindspore}"
    )
    assert identity.tool_identity(F.ONNX, F.ONNX) == f"inferplane=={__version__}"
    assert identity.tool_identity(F.ONNX, F.TENSORRT).endswith(" tensorrt==absent")
    assert identity.tool_identity(F.ONNX, F.MS).endswith(" mindspore-lite==absent")


def test_the_cann_toolkit_directory_names_atc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versioned = tmp_path / "ascend-toolkit" / "8.0.RC3"
    versioned.mkdir(parents=True)
    (tmp_path / "ascend-toolkit" / "latest").symlink_to(versioned)
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(tmp_path / "ascend-toolkit" / "latest"))
    assert identity.tool_identity(F.ONNX, F.OM).endswith(f" atc@{versioned}")
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME")
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    assert identity.tool_identity(F.ONNX, F.OM).endswith(" atc@absent")
