# SPDX-License-Identifier: Apache-2.0
"""The artifact manifest: the one contract between the control plane and the data plane.

A converted model is a directory holding its files and ``inferplane.json`` (this model). The
converter writes it, the store publishes it under its key, the operator reads it to plan and
report, and ``inferplane serve DIR`` needs nothing else to serve the model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.key import MANIFEST_NAME, TargetOptions
from inferplane.devices import ArtifactFormat

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class FileEntry(_Model):
    """One file of the artifact, relative to the artifact directory."""

    path: str
    sha256: str
    size: int


class SourceRef(_Model):
    """Where the artifact came from."""

    uri: str
    format: ArtifactFormat
    sha256: str
    network: str | None = None
    """``module:callable`` for a checkpoint source."""


class ToolInfo(_Model):
    name: str
    version: str


class Verification(_Model):
    """Parity of the converted artifact against the reference, on the same inputs."""

    verified: bool
    reason: str = ""
    """Why it is not verified (e.g. the target's runtime is absent here), or what failed."""
    reference: str = ""
    """What the artifact was compared with (e.g. ``mindspore-checkpoint``)."""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    atol: float | None = None
    rtol: float | None = None
    samples: int = 0
    batch_sizes: list[int] = Field(default_factory=list)


class Accuracy(_Model):
    """Accuracy on a labelled validation set, like MindSpore's ``model.eval``."""

    dataset: str
    samples: int
    reference: float
    converted: float
    max_drop: float

    @property
    def drop(self) -> float:
        return self.reference - self.converted


class ArtifactManifest(_Model):
    """``inferplane.json``: what an artifact is, how it was made, and how well it matches."""

    schema_version: int = SCHEMA_VERSION
    key: str
    model: str
    source: SourceRef
    target: TargetOptions
    files: list[FileEntry]
    entrypoint: str
    """The model file the backend loads, relative to the artifact directory."""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tools: list[ToolInfo] = Field(default_factory=list)
    verification: Verification
    accuracy: Accuracy | None = None
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def write(self, directory: Path) -> Path:
        """Write the manifest into ``directory`` (atomically: temp file, then rename)."""
        path = directory / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, directory: Path) -> ArtifactManifest:
        """Read and validate ``directory/inferplane.json``; every problem is a StoreError."""
        path = directory / MANIFEST_NAME
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise errors.StoreError(f"{directory}: no {MANIFEST_NAME}; not an artifact") from None
        except ValueError as exc:
            raise errors.StoreError(f"{path}: invalid artifact manifest: {exc}") from None
