# SPDX-License-Identifier: Apache-2.0
"""The backend interface: load, signature, infer on numpy arrays, close.

A backend imports its vendor runtime inside ``load`` and turns an ImportError into
``RuntimeMissing`` (one line naming the package and the image that has it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.devices import DeviceClass


@dataclass(frozen=True)
class ModelFiles:
    """What a backend loads: the model file and, where the file does not say, its signature."""

    path: Path
    device: DeviceClass = DeviceClass.CPU
    network: str | None = None
    """``module:callable`` building the ``nn.Cell`` a checkpoint's weights load into."""
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    def require_signature(self, kind: str) -> None:
        """For formats whose file does not state its signature (OM, .ms): the manifest must."""
        if not self.inputs or not self.outputs:
            raise errors.SpecError(
                f"{self.path}: {kind} model is served from its artifact directory, "
                "whose manifest states its inputs and outputs"
            )


class Backend(Protocol):
    """One loaded model on one runtime. ``infer`` may run in a worker thread."""

    platform: str
    """The V2 ``platform`` of the model metadata (e.g. ``onnxruntime_onnx``)."""

    def load(self) -> None:
        """Load the model; raises BackendError (RuntimeMissing when the runtime is absent)."""

    @property
    def inputs(self) -> list[TensorSpec]:
        """Input signature (-1 marks dynamic dimensions)."""

    @property
    def outputs(self) -> list[TensorSpec]:
        """Output signature (-1 marks dynamic dimensions)."""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; ``inputs`` are validated against ``inputs`` (names, dtypes, ranks)."""

    def close(self) -> None:
        """Release the runtime's resources."""
