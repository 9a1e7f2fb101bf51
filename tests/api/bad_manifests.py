# SPDX-License-Identifier: Apache-2.0
"""The table of bad InferenceModel manifests (``bad_manifests.yaml``), shared by the unit tests of
the pydantic models and the integration test that applies them to the real API server."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TABLE = Path(__file__).with_name("bad_manifests.yaml")


@dataclass(frozen=True)
class BadManifest:
    name: str
    manifest: dict[str, Any]
    field: str
    """The field the error must name (``spec.replicas.min``)."""
    message: str
    """A fragment the error message must contain ("" when the field is enough)."""


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): ``None`` deletes, mappings merge, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(*, namespace: str | None = None) -> list[BadManifest]:
    data = yaml.safe_load(TABLE.read_text())
    cases = []
    for case in data["cases"]:
        metadata: dict[str, Any] = {"name": case["name"]}
        if namespace:
            metadata["namespace"] = namespace
        manifest = {
            "apiVersion": "inferplane.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": metadata,
            "spec": merge(data["base"], case["spec"]),
        }
        cases.append(BadManifest(case["name"], manifest, case["field"], case["message"]))
    return cases


def base_spec() -> dict[str, Any]:
    """The valid spec every case starts from."""
    spec: dict[str, Any] = yaml.safe_load(TABLE.read_text())["base"]
    return spec
