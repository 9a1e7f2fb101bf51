# SPDX-License-Identifier: Apache-2.0
"""Tensor signatures: shared by the API (``spec.source.inputs``), the manifest and the server."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inferplane import errors

if TYPE_CHECKING:
    import numpy as np


class Datatype(str, enum.Enum):
    """A tensor element type, named as the Open Inference Protocol (V2) names it."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    def __str__(self) -> str:
        return self.value

    @property
    def numpy(self) -> np.dtype[Any]:
        """Its numpy dtype (BYTES: object arrays of ``bytes``). NumPy is imported on first use,
        so the API models stay light for the CRD generator and the CLI."""
        import numpy

        return numpy.dtype(_NUMPY_NAMES[self])


_NUMPY_NAMES = {
    Datatype.BOOL: "bool",
    Datatype.UINT8: "uint8",
    Datatype.UINT16: "uint16",
    Datatype.UINT32: "uint32",
    Datatype.UINT64: "uint64",
    Datatype.INT8: "int8",
    Datatype.INT16: "int16",
    Datatype.INT32: "int32",
    Datatype.INT64: "int64",
    Datatype.FP16: "float16",
    Datatype.FP32: "float32",
    Datatype.FP64: "float64",
    Datatype.BYTES: "object",
}


class TensorSpec(BaseModel):
    """One named input or output tensor: its V2 datatype and shape (-1: a dynamic dimension)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(
        min_length=1, max_length=253, description="Tensor name, as the model names it."
    )
    datatype: Datatype = Field(description="Element type, in V2 protocol names (FP32, INT64, ...).")
    shape: list[int] = Field(
        description="Dimensions; -1 marks a dynamic one (the first is usually the batch).",
        max_length=16,
    )

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in shape):
            raise ValueError(f"dimensions must be positive or -1 (dynamic), got {shape}")
        return shape

    @property
    def dynamic_batch(self) -> bool:
        """True when the first dimension is dynamic, so requests can be batched along it."""
        return bool(self.shape) and self.shape[0] == -1

    @classmethod
    def parse(cls, text: str) -> TensorSpec:
        """Parse the CLI form ``name:dim,dim,...:DATATYPE`` (e.g. ``x:-1,1,32,32:FP32``)."""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[0]:
            raise errors.SpecError(
                f"input '{text}': expected name:shape:datatype, e.g. x:-1,1,32,32:FP32"
            )
        name, dims, dtype = parts
        try:
            shape = [int(d) for d in dims.split(",")] if dims else []
        except ValueError:
            raise errors.SpecError(
                f"input '{text}': shape '{dims}' must be comma-separated integers"
            ) from None
        try:
            datatype = Datatype(dtype.upper())
        except ValueError:
            names = ", ".join(d.value for d in Datatype)
            raise errors.SpecError(
                f"input '{text}': unknown datatype '{dtype}' (one of {names})"
            ) from None
        try:
            return cls(name=name, datatype=datatype, shape=shape)
        except ValueError as exc:
            raise errors.SpecError(f"input '{text}': {exc}") from None

    def __str__(self) -> str:
        return f"{self.name}:{','.join(map(str, self.shape))}:{self.datatype.value}"
