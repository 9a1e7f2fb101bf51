# SPDX-License-Identifier: Apache-2.0
"""This checkout's compiled build: the wheel the runtime images install, unpacked for the tests.

``setup.py`` compiles the server's request path with mypyc when ``INFERPLANE_MYPYC=1``. The
images build that wheel in a builder stage; here ``ensure`` builds the same wheel (pip, build
isolation, the pinned mypy of ``[build-system]``) from a copy of the files the images copy, and
unpacks it to ``$INFERPLANE_CACHE/compiled/<key>``, keyed by the digest of those files. Put that
directory first on ``PYTHONPATH`` and ``inferplane`` imports the compiled modules; the checkout
itself never holds an extension module, so an edited source can never hide behind a stale one.

``python -m tests.compiled`` prints the directory (building it the first time, about 20 s):
``scripts/test.sh`` runs ``tests/serving`` against it, and ``tests/bench/serving.py`` measures
it (its server side, unless ``--python``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from tests.cluster.build import cache_root, locked
from tests.images.build import files_key, source_files

ROOT = Path(__file__).resolve().parents[1]
KEEP = 3
"""Builds kept besides the newest; one younger than ``KEEP_S`` is kept whatever their number
(another checkout's test run may be using it)."""
KEEP_S = 4 * 3600


def key(root: Path = ROOT) -> str:
    return files_key([str(sys.version_info[:2])], source_files(root), root)


def compiled_dir() -> Path:
    return cache_root() / "compiled"


def ensure(root: Path = ROOT) -> Path:
    """The unpacked compiled wheel of ``root``'s sources (built once per content, under a lock)."""
    target = compiled_dir() / key(root)
    with locked(compiled_dir() / ".lock"):
        if not (target / ".complete").is_file():
            _build(root, target)
            _prune(target)
    return target


def _build(root: Path, target: Path) -> None:
    start = time.monotonic()
    print(f"inferplane: compiling the server's request path (mypyc) into {target}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=compiled_dir(), prefix=".build-") as work:
        source, dist = Path(work) / "src", Path(work) / "dist"
        for relative in source_files(root):
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / relative, source / relative)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist)]
        result = subprocess.run(
            [*command, str(source)],
            env={**os.environ, "INFERPLANE_MYPYC": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"building the compiled wheel failed:\n{result.stdout}{result.stderr}"
            )
        (wheel,) = dist.glob("inferplane-*.whl")
        partial = target.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial)
        (partial / ".complete").write_text(wheel.name + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    print(f"inferplane: compiled in {time.monotonic() - start:.0f} s", file=sys.stderr)


def _prune(newest: Path) -> None:
    builds = sorted(
        (p for p in compiled_dir().iterdir() if p.is_dir() and p != newest and p.name[0] != "."),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in builds[KEEP:]:
        if time.time() - stale.stat().st_mtime > KEEP_S:
            shutil.rmtree(stale, ignore_errors=True)


if __name__ == "__main__":
    print(ensure())
