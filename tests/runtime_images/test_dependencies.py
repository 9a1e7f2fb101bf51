# SPDX-License-Identifier: Apache-2.0
"""The dependency split (pyproject.toml): each role installs only what it imports.

The operator image installs ``inferplane[operator,s3]``; its import closure must hold no model
runtime, proved by importing the operator's entry point in a fresh interpreter that refuses to
import one. The installed distributions' own requirements are followed too, so a dependency of
kopf or aiohttp that dragged NumPy in would fail here.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from tests.images import build

ROOT = Path(__file__).resolve().parents[2]
MODEL_RUNTIMES = ("numpy", "onnx", "onnxruntime", "mindspore", "tensorrt", "botocore", "boto3")
"""Not one of these may load for ``inferplane operator`` with a PVC store (boto3 loads only
for an s3:// store, from the ``s3`` extra)."""

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked: {name}")
            return None

    sys.meta_path.insert(0, Block())
    sys.argv = ["inferplane", *sys.argv[2:]]
    """
)


def _run_blocked(
    blocked: tuple[str, ...], program: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + program, ",".join(blocked), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_operator_entry_point_imports_no_model_runtime() -> None:
    program = textwrap.dedent(
        """
        from inferplane import cli
        from inferplane.control import handlers, settings
        from inferplane.artifacts import store
        handlers.OperatorSettings  # the settings the entry point reads
        store.open_store("/tmp/inferplane-store-probe")  # a PVC store: no S3 client
        try:
            cli.main(standalone_mode=False)
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        loaded = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
        assert not loaded, loaded
        print("ok")
        """
    )
    result = _run_blocked(MODEL_RUNTIMES, program, "operator", "--help")
    assert result.returncode == 0, result.stderr
    assert "Run the Kubernetes operator" in result.stdout
    assert result.stdout.rstrip().endswith("ok")


def test_the_blocker_is_live() -> None:
    """The same harness fails when the imported code needs a blocked module."""
    result = _run_blocked(("numpy",), "from inferplane.serving import protocol\n")
    assert result.returncode != 0
    assert "blocked: numpy" in result.stderr


def test_crd_needs_only_the_core() -> None:
    """``inferplane crd`` runs with nothing but the core dependencies."""
    blocked = (*MODEL_RUNTIMES, "kopf", "aiohttp", "rich", "httptools", "orjson", "uvloop")
    program = "from inferplane import cli\ncli.main()\n"
    result = _run_blocked(blocked, program, "crd")
    assert result.returncode == 0, result.stderr
    assert "kind: CustomResourceDefinition" in result.stdout


def _closure(requirements: list[str]) -> set[str]:
    """Names of the installed distributions ``requirements`` pull in, transitively (markers
    evaluated for this interpreter, extras followed)."""
    seen: set[str] = set()
    pending = [(Requirement(r), "") for r in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = requirement.name.lower().replace("_", "-")
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for own in importlib.metadata.requires(requirement.name) or []:
            for wanted in ("", *requirement.extras):
                pending.append((Requirement(own), wanted))
    return {k.split("[")[0] for k in seen}


@pytest.mark.parametrize(
    ("extras", "absent"),
    [
        (["operator"], {"numpy", "onnx", "onnxruntime", "mindspore", "botocore", "boto3"}),
        (["operator", "s3"], {"numpy", "onnx", "onnxruntime", "mindspore"}),
        (["serve", "s3"], {"mindspore", "onnx", "kopf", "rich"}),
    ],
)
def test_extras_pull_in_no_model_runtime(extras: list[str], absent: set[str]) -> None:
    closure = _closure(build.requirements(extras))
    assert not closure & absent, sorted(closure & absent)
    assert "pydantic" in closure  # the closure was followed from the core


def test_images_install_the_extras_of_their_role() -> None:
    assert build.IMAGES["operator"].extras() == ["operator", "s3"]
    assert build.IMAGES["cpu"].extras() == ["serve", "s3"]
    assert build.IMAGES["mindspore"].extras() == ["serve", "convert", "s3", "mindspore"]
