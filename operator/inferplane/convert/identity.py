# SPDX-License-Identifier: Apache-2.0
"""What besides the source and the options decides a local conversion's bytes: the network's
code and the converting tool. Both go into the artifact key (``TargetOptions.code``/``.tool``),
so new network code under the same ``module:callable``, or another MindSpore or TensorRT, makes
a new artifact instead of reusing a stale one.

Standard library only, and nothing is imported or run: the store-hit fast path (``convert.hit``)
computes the same key as the pipeline. In a cluster the operator names both by image reference
instead (``source.image`` and the conversion image: ``planner.cluster_options``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from inferplane import __version__, errors
from inferplane.devices import ArtifactFormat

F = ArtifactFormat

SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".tox", ".venv", "node_modules"})
ASCEND_HOME_ENVS = ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH")
"""CANN's install directory (its path names the toolkit version: ATC has no Python package)."""


def search_path(code_dir: Path | None = None) -> list[Path]:
    """Where the network module is imported from, in order: the code that came with the source,
    then ``sys.path`` (``PYTHONPATH`` among it), as ``export.load_factory`` imports it."""
    paths = [code_dir] if code_dir is not None else []
    return [*paths, *(Path(p or os.curdir) for p in sys.path)]


def _module_files(module: str, search: Iterable[Path]) -> tuple[Path, list[Path]] | None:
    """The root and the source files of the top-level package (or single file) of ``module``."""
    top = module.split(".")[0]
    for root in search:
        package = root / top
        if (package / "__init__.py").is_file() or (package.is_dir() and "." in module):
            files = [
                p
                for p in package.rglob("*.py")
                if p.is_file() and not SKIPPED_DIRS & set(p.relative_to(package).parts)
            ]
            return root, sorted(files)
        single = root / f"{top}.py"
        if single.is_file():
            return root, [single]
    return None


def code_digest(network: str, search: Iterable[Path]) -> str:
    """``sha256:<hex>`` over the source files of the network's module: its top-level package
    (every ``.py`` file, with its path) or its single file, as found first on ``search``.

    A SpecError when the module is nowhere on ``search``: the conversion could not import it.
    """
    module = network.partition(":")[0]
    found = _module_files(module, search) if module else None
    if found is None:
        raise errors.SpecError(
            f"network '{network}': module '{module}' is not on the path "
            "(put its directory on PYTHONPATH, or ship it in the source's archive)"
        )
    root, files = found
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"sha256:{digest.hexdigest()}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _ascend_toolkit() -> str:
    for name in ASCEND_HOME_ENVS:
        home = os.environ.get(name)
        if home:
            return os.path.realpath(home)
    return "absent"


def tool_identity(source_format: ArtifactFormat, target: ArtifactFormat) -> str:
    """The tools a local conversion runs, with their versions, e.g.
    ``inferplane==0.1.0 mindspore==2.10.0`` (a package not installed reads ``absent``; the
    conversion then stops with a missing-tool error, so that key is never published)."""
    parts = [f"inferplane=={__version__}"]
    if source_format in (F.MINDSPORE_CHECKPOINT, F.MINDIR):
        parts.append(f"mindspore=={_version('mindspore')}")
    if target is F.TENSORRT:
        parts.append(f"tensorrt=={_version('tensorrt')}")
    elif target is F.OM:
        parts.append(f"atc@{_ascend_toolkit()}")
    elif target is F.MS:
        parts.append(f"mindspore-lite=={_version('mindspore-lite')}")
    return " ".join(parts)
