# SPDX-License-Identifier: Apache-2.0
"""What names an artifact: the content address of a source converted with some options.

Standard library only, on purpose: a repeated ``inferplane convert`` answers from the store
without importing pydantic (``convert.hit``), and the operator's planner computes the same keys.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from inferplane import products
from inferplane.devices import ArtifactFormat, DeviceClass

MANIFEST_NAME = "inferplane.json"
"""The manifest's file in an artifact directory (see ``artifacts.manifest``)."""


@dataclasses.dataclass(frozen=True)
class TargetOptions:
    """Everything besides the source that decides the converted bytes (and so the key).

    A plain dataclass, validated by pydantic where it is read from a manifest
    (``ArtifactManifest.target``); built in code from typed values.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    format: ArtifactFormat
    device_class: DeviceClass
    product: str | None = None
    """GPU product (TensorRT) or SoC version (OM) the artifact is built for, kept in its
    canonical spelling (``products.canonical``): every spelling of a product is one artifact."""
    precision: str = "fp32"
    batch: tuple[int, int, int] | None = None
    """min, opt, max batch of a dynamic-shape profile (TensorRT, OM)."""
    network: str | None = None
    """For a checkpoint source: the ``module:callable`` its graph was built from."""
    inputs: tuple[str, ...] = ()
    """For a checkpoint source: the input signature it was exported with (``name:shape:TYPE``)."""
    code: str | None = None
    """For a checkpoint source: the network's code. In a cluster the ``source.image`` reference
    the code is copied from (pin it by digest: a tag can move); locally ``sha256:<hex>`` over the
    network module's source files (``convert.identity.code_digest``)."""
    tool: str | None = None
    """The converting tool: in a cluster the conversion image's reference, locally the versions
    of the tools that run (``convert.identity.tool_identity``). A TensorRT engine built by one
    TensorRT version does not load in another; an exporter's fix changes the graph."""

    def __post_init__(self) -> None:
        if self.product is not None:
            object.__setattr__(self, "product", products.canonical(self.product))

    def document(self) -> dict[str, Any]:
        """The options as JSON values (enums by value, tuples as lists), as manifests hold them."""
        return {f.name: _json_value(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def checkpoint_graph(
    source_format: ArtifactFormat,
    network: str | None,
    inputs: Iterable[object],
    code: str | None = None,
) -> dict[str, Any]:
    """The ``TargetOptions`` fields that make a checkpoint's graph: a checkpoint holds only
    weights, so the same file exported through other code (another entry point, or new code
    under the same name) or another signature is another artifact. ONNX, MindIR and AIR sources
    carry their graph: nothing to add.

    ``inputs``: TensorSpecs, or their canonical ``name:shape:TYPE`` text (``str`` of a spec).
    ``code``: the identity of the network's code (see ``TargetOptions.code``).
    """
    if source_format is not ArtifactFormat.MINDSPORE_CHECKPOINT:
        return {}
    return {"network": network, "inputs": tuple(str(spec) for spec in inputs), "code": code}


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def artifact_key(source_sha256: str, target: TargetOptions) -> str:
    """The content address: the source's digest plus every option that changes the output.

    Readable prefix (format, class, product) for people browsing the store, digest for identity.
    """
    options = json.dumps(target.document(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{source_sha256}\n{options}".encode()).hexdigest()[:24]
    parts = [target.format.value, target.device_class.value]
    if target.product:
        parts.append("".join(c if c.isalnum() else "-" for c in target.product.lower()))
    return "-".join([*parts, digest])
