# SPDX-License-Identifier: Apache-2.0
"""What a plain path, ``file://`` or ``pvc://`` URI names on this machine.

Standard library only (a store hit resolves its store and source with it, see ``convert.hit``).
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from inferplane import errors

PVC_ROOT_ENV = "INFERPLANE_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/inferplane/pvc"


def pvc_path(uri: str) -> Path:
    """The mounted path of ``pvc://claim/path``: ``$INFERPLANE_PVC_ROOT/claim/path``."""
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc:
        raise errors.StoreError(f"'{uri}': a PVC URI needs a claim name (pvc://claim/path)")
    rel = Path(parsed.path.lstrip("/"))
    if ".." in rel.parts:
        raise errors.StoreError(f"'{uri}': the path must stay inside the claim")
    return Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT)) / parsed.netloc / rel


def local_path(uri: str, *, base: Path | None = None) -> Path | None:
    """The local path a plain path, ``file://`` or ``pvc://`` URI names; None for remote ones.

    Relative paths resolve against ``base`` (e.g. the directory of an InferenceModel YAML).
    """
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "pvc":
        return pvc_path(uri)
    if scheme == "file":
        raw = uri[len("file://") :]
    elif scheme == "":
        raw = uri
    else:
        return None
    path = Path(urllib.parse.unquote(raw)).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path
