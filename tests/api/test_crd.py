# SPDX-License-Identifier: Apache-2.0
"""The CRD generated from the models: committed copy up to date, structural, fully described."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from inferplane.api import crd, v1alpha1

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "inferplane.io_inferencemodels.yaml"


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for name, child in node.get("properties", {}).items():
            yield from _walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_current() -> None:
    """Regenerate with: inferplane crd > crds/inferplane.io_inferencemodels.yaml"""
    assert COMMITTED.read_text() == crd.render_yaml(), "crds/ is stale: run `inferplane crd`"


def test_cli_prints_the_same_yaml() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "inferplane", "crd"], capture_output=True, text=True, check=True
    ).stdout
    assert out == crd.render_yaml()
    assert yaml.safe_load(out)["metadata"]["name"] == "inferencemodels.inferplane.io"


def test_schema_is_structural() -> None:
    """What the API server refuses in a CRD schema never appears."""
    for path, node in _walk(_schema()):
        assert "$ref" not in node and "$defs" not in node, path
        assert "title" not in node and "uniqueItems" not in node, path
        assert node.get("type") != "null" and node.get("default", 0) is not None, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        else:
            assert "type" in node, path


def test_every_spec_and_status_field_is_described() -> None:
    """``kubectl explain`` shows a description for each field (from the field docstrings)."""
    schema = _schema()
    for root in ("spec", "status"):
        for path, node in _walk(schema["properties"][root], root):
            if not path.endswith(("{}", "[]")):
                assert node.get("description"), f"{path} has no description"
                assert "\n" not in node["description"], path


def test_cel_rules_are_attached_where_they_apply() -> None:
    schema = _schema()
    attached = []
    for path, node in _walk(schema["properties"]["spec"], "spec"):
        for rule in node.get("x-kubernetes-validations", []):
            attached.append((path, rule["rule"], rule["message"]))
    for rule in v1alpha1.RULES:
        assert (rule.at, rule.cel, rule.message) in attached
    assert schema["properties"]["spec"]["properties"]["devices"]["x-kubernetes-list-type"] == "set"


def test_enums_come_from_the_vocabulary() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["devices"]["items"]["enum"] == [
        "ascend910",
        "ascend310",
        "nvidia",
        "cpu",
        "edge",
        "auto",
    ]
    assert spec["source"]["properties"]["format"]["enum"] == [
        f.value for f in v1alpha1.SOURCE_FORMATS
    ]
    assert spec["replicas"]["properties"]["metric"]["enum"] == ["cpu", "inflight"]


def test_names_subresources_and_columns() -> None:
    definition = crd.definition()
    names = definition["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "InferenceModel",
        "inferencemodels",
        ["im"],
    )
    version = definition["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas.min"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Devices", "Ready", "Replicas", "Phase", "URL", "Age"]
    status = _schema()["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"][:-1]:
        assert column["jsonPath"].removeprefix(".status.") in status
