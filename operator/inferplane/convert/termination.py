# SPDX-License-Identifier: Apache-2.0
"""The converter's result in a Job pod's termination log, where the operator reads it back.

Takes the manifest as its JSON document, so the store-hit fast path (which reads the manifest as
plain JSON) and the full pipeline report alike.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "INFERPLANE_TERMINATION_LOG"
LIMIT = 4096
"""Kubernetes keeps at most this many bytes of a container's termination message."""


def report(manifest: Mapping[str, Any]) -> None:
    """Write the result where ``$INFERPLANE_TERMINATION_LOG`` says: the whole manifest when it
    fits, else the key and the verification numbers. Outside a pod nothing is written."""
    path = os.environ.get(ENV)
    if not path:
        return
    text = json.dumps(manifest, separators=(",", ":"))
    if len(text.encode()) > LIMIT:
        check = manifest["verification"]
        accuracy = manifest.get("accuracy") or {}
        verification = {
            "verified": check["verified"],
            "reason": check.get("reason") or None,
            "maxAbsError": check.get("max_abs_error"),
            "maxRelError": check.get("max_rel_error"),
            "accuracy": accuracy.get("converted"),
            "referenceAccuracy": accuracy.get("reference"),
        }
        text = json.dumps(
            {"key": manifest["key"], "verification": verification}, separators=(",", ":")
        )
    try:
        Path(path).write_text(text)
    except OSError as exc:
        print(f"inferplane: cannot write the termination log {path}: {exc}", file=sys.stderr)
