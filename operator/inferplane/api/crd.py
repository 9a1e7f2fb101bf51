# SPDX-License-Identifier: Apache-2.0
"""The InferenceModel CustomResourceDefinition, made from the pydantic models (pure, no I/O).

A CRD's OpenAPI schema must be *structural*: no ``$ref``, no ``additionalProperties: false``, no
``null`` types, no ``title``. ``structural()`` rewrites pydantic's JSON schema into that form:
``$defs`` inlined, ``Optional[X]`` → ``X`` (an absent field is the null), ``Literal`` → ``enum``,
unions of string enums merged into one ``enum``, docstrings folded into one-line descriptions.
The cross-field rules of ``v1alpha1.RULES`` become ``x-kubernetes-validations``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from inferplane.api import v1alpha1

Schema = dict[str, Any]

_DROP = {"title", "additionalProperties", "$defs"}


def structural(schema: Schema) -> Schema:
    """Rewrite a pydantic JSON schema (with ``$defs``) into a structural CRD schema."""
    defs: dict[str, Schema] = schema.get("$defs", {})
    return _rewrite(schema, defs)


def _rewrite(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_rewrite(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        target.update(node)  # the field's own description wins over the class docstring
        node = target
    any_of = node.get("anyOf")
    if any_of and not node.get("x-kubernetes-int-or-string"):
        options = [o for o in any_of if o.get("type") != "null"]
        node.pop("anyOf")
        if node.get("default", ...) is None:
            node.pop("default")
        if len(options) == 1:
            merged = _rewrite(options[0], defs)
            merged.update({k: v for k, v in node.items() if k != "anyOf"})
            node = merged
        elif all(_string_choices(_rewrite(o, defs)) for o in options):
            node["type"] = "string"
            node["enum"] = [v for o in options for v in _string_choices(_rewrite(o, defs))]
        else:
            raise ValueError(f"a CRD schema cannot express the union {any_of}")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _rewrite(prop, defs) for name, prop in value.items()}
        elif key == "description":
            out[key] = _one_line(value)
        else:
            out[key] = _rewrite(value, defs)
    return out


def _string_choices(node: Schema) -> list[str]:
    if node.get("type") == "string" and "enum" in node:
        return list(node["enum"])
    return []


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("``", "")).strip()


def _at(schema: Schema, path: str) -> Schema:
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node


def spec_schema() -> Schema:
    """``spec`` as a structural schema, with the CEL rules and list types attached."""
    schema = structural(v1alpha1.InferenceModelSpec.model_json_schema(by_alias=True))
    schema["properties"]["devices"]["x-kubernetes-list-type"] = "set"
    inputs = schema["properties"]["source"]["properties"]["inputs"]
    inputs["x-kubernetes-list-type"] = "map"
    inputs["x-kubernetes-list-map-keys"] = ["name"]
    shape = inputs["items"]["properties"]["shape"]
    shape["items"]["minimum"] = -1
    shape["x-kubernetes-validations"] = [
        {"rule": "self.all(d, d != 0)", "message": "dimensions must be positive or -1 (dynamic)"}
    ]
    root = {"properties": {"spec": schema}}
    for rule in v1alpha1.RULES:
        entry = {"rule": rule.cel, "message": rule.message}
        if rule.field:
            entry["fieldPath"] = rule.field
        _at(root, rule.at).setdefault("x-kubernetes-validations", []).append(entry)
    return schema


def status_schema() -> Schema:
    """``status`` as a structural schema."""
    schema = structural(v1alpha1.InferenceModelStatus.model_json_schema(by_alias=True))
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


PRINTER_COLUMNS: list[Schema] = [
    {"name": "Devices", "type": "string", "jsonPath": ".status.devices"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def definition() -> Schema:
    """The CustomResourceDefinition as a plain dict."""
    description = _one_line(v1alpha1.InferenceModel.__doc__ or "")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}",
            "labels": {"app.kubernetes.io/name": "inferplane"},
        },
        "spec": {
            "group": v1alpha1.GROUP,
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": list(v1alpha1.SHORT_NAMES),
                "categories": ["inferplane"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": description,
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas.min",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_yaml() -> str:
    """The CRD as YAML, exactly as committed in ``crds/`` (``inferplane crd`` prints this)."""
    header = (
        "# Generated by `inferplane crd` from operator/inferplane/api/v1alpha1.py; do not edit.\n"
    )
    body = yaml.safe_dump(definition(), sort_keys=False, width=100, allow_unicode=True)
    return header + body
