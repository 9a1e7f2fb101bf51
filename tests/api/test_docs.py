# SPDX-License-Identifier: Apache-2.0
"""docs/api.md names every field of the CRD (per-class device options once, as ``<class>``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inferplane.api import crd

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CLASSES = ("ascend910", "ascend310", "nvidia", "cpu", "edge")


def _paths(node: dict[str, Any], path: str) -> Iterator[str]:
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}"
        if child.get("type") == "object":
            yield from _paths(child, f"{path}.{name}")
        if child.get("type") == "array" and child.get("items", {}).get("type") == "object":
            yield from _paths(child["items"], f"{path}.{name}[]")


def test_every_field_is_documented() -> None:
    schema = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = DOC.read_text()
    missing = []
    for root in ("spec", "status"):
        for path in _paths(schema["properties"][root], root):
            for cls in CLASSES:
                path = path.replace(f"spec.deviceOptions.{cls}.", "spec.deviceOptions.<class>.")
            if f"`{path}`" not in text:
                missing.append(path)
    assert not missing, f"docs/api.md lacks: {missing}"
