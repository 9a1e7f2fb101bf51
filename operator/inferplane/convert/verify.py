# SPDX-License-Identifier: Apache-2.0
"""Parity of a converted model against its reference, and accuracy on a validation set.

Parity: both models run on the same inputs — ``samples`` seeded random rows plus any sample
rows given — once row by row (batch 1) and once in batches of the maximum batch; every output
element must satisfy ``|converted - reference| <= atol + rtol * |reference|`` (numpy's
``allclose`` rule). The tolerance defaults by precision. The largest absolute and relative
errors are reported whether or not the check passes.

Accuracy, like MindSpore's ``model.eval``: top-1 of the first output over a labelled ``.npz``
(``x`` and ``y``), for the reference and the converted model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.api.tensors import Datatype, TensorSpec
from inferplane.artifacts.manifest import Accuracy, Verification
from inferplane.convert.export import Runner

TOLERANCES: dict[str, tuple[float, float]] = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2)}
"""(atol, rtol) by precision."""

NUMERIC = tuple(d for d in Datatype if d is not Datatype.BYTES)
"""The element types verification can generate and compare (not BYTES)."""


def datatype_of(dtype: np.dtype[Any]) -> Datatype:
    for datatype in NUMERIC:
        if datatype.numpy == dtype:
            return datatype
    raise errors.ConversionError(f"output dtype {dtype} has no V2 datatype")


def random_rows(inputs: Sequence[TensorSpec], rows: int, *, seed: int = 0) -> list[np.ndarray]:
    """``rows`` seeded random rows per input: normal floats, small integers, random booleans."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in inputs:
        if spec.datatype not in NUMERIC:
            raise errors.SpecError(f"input {spec}: cannot generate random {spec.datatype} data")
        shape = [rows if i == 0 and spec.dynamic_batch else d for i, d in enumerate(spec.shape)]
        if any(d == -1 for d in shape):
            raise errors.SpecError(f"input {spec}: only the batch dimension may be dynamic")
        np_type = spec.datatype.numpy
        if np.issubdtype(np_type, np.floating):
            arrays.append(rng.standard_normal(shape).astype(np_type))
        elif spec.datatype is Datatype.BOOL:
            arrays.append(rng.integers(0, 2, shape).astype(np.bool_))
        else:
            arrays.append(rng.integers(0, 10, shape).astype(np_type))
    return arrays


def load_samples(path: Path, inputs: Sequence[TensorSpec]) -> list[np.ndarray]:
    """Sample rows from an ``.npz`` keyed by input name (or ``x`` for a single input)."""
    data = _load_npz(path)
    arrays = []
    for spec in inputs:
        key = spec.name if spec.name in data else ("x" if len(inputs) == 1 else spec.name)
        if key not in data:
            raise errors.SpecError(f"{path}: no array '{spec.name}' for input {spec.name}")
        arrays.append(np.asarray(data[key], dtype=spec.datatype.numpy))
    return arrays


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise errors.SpecError(f"{path}: not a readable .npz file: {exc}") from None


@dataclass
class ErrorStats:
    max_abs: float = 0.0
    max_rel: float = 0.0
    ok: bool = True

    def add(self, converted: np.ndarray, reference: np.ndarray, atol: float, rtol: float) -> None:
        if converted.shape != reference.shape:
            raise errors.ConversionError(
                f"output shape {converted.shape} differs from the reference's {reference.shape}"
            )
        c = converted.astype(np.float64)
        r = reference.astype(np.float64)
        diff = np.abs(c - r)
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float((diff / np.maximum(np.abs(r), atol)).max()))
            self.ok = self.ok and bool(np.all(diff <= atol + rtol * np.abs(r)))


def _batches(arrays: Sequence[np.ndarray], size: int) -> list[list[np.ndarray]]:
    rows = len(arrays[0])
    return [[a[i : i + size] for a in arrays] for i in range(0, rows, size)]


def parity(
    reference: Runner,
    converted: Runner,
    rows: Sequence[np.ndarray],
    *,
    max_batch: int,
    precision: str,
    reference_name: str,
    atol: float | None = None,
    rtol: float | None = None,
    dynamic_batch: bool = True,
) -> Verification:
    """Compare the two runners on ``rows`` at batch 1 and at ``max_batch``; never raises on a
    mismatch (the caller decides), only on a model that cannot run."""
    default_atol, default_rtol = TOLERANCES.get(precision, TOLERANCES["fp32"])
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    sizes = [1, max_batch] if dynamic_batch and max_batch > 1 else [len(rows[0])]
    found = ErrorStats()
    for size in sizes:
        for chunk in _batches(rows, size):
            ref_out = reference(chunk)
            conv_out = converted(chunk)
            if len(ref_out) != len(conv_out):
                raise errors.ConversionError(
                    f"converted model has {len(conv_out)} outputs, the reference {len(ref_out)}"
                )
            for c, r in zip(conv_out, ref_out, strict=True):
                found.add(c, r, atol, rtol)
    verdict = (
        ""
        if found.ok
        else (
            f"parity failed against {reference_name}: max abs error {found.max_abs:.3g}, "
            f"max rel error {found.max_rel:.3g} (atol {atol:g}, rtol {rtol:g})"
        )
    )
    return Verification(
        verified=found.ok,
        reason=verdict,
        reference=reference_name,
        max_abs_error=found.max_abs,
        max_rel_error=found.max_rel,
        atol=atol,
        rtol=rtol,
        samples=len(rows[0]),
        batch_sizes=sizes,
    )


def load_validation(path: Path, inputs: Sequence[TensorSpec]) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of a labelled validation set, checked against the single input."""
    if len(inputs) != 1 or inputs[0].datatype not in NUMERIC:
        raise errors.SpecError("accuracy needs a model with exactly one numeric input")
    data = _load_npz(path)
    if "x" not in data or "y" not in data:
        raise errors.SpecError(f"{path}: a validation set needs arrays 'x' and 'y'")
    x = np.asarray(data["x"], dtype=inputs[0].datatype.numpy)
    y = np.asarray(data["y"]).reshape(-1)
    if len(x) != len(y) or len(x) == 0:
        raise errors.SpecError(f"{path}: x has {len(x)} rows, y has {len(y)}")
    expected = inputs[0].shape[1:]
    if list(x.shape[1:]) != expected:
        raise errors.SpecError(
            f"{path}: x rows have shape {list(x.shape[1:])}, the model takes {expected}"
        )
    return x, y


def accuracy(
    reference: Runner,
    converted: Runner,
    path: Path,
    inputs: Sequence[TensorSpec],
    *,
    max_drop: float,
    batch: int,
) -> Accuracy:
    """Top-1 accuracy of both models on the set at ``path`` (not checked against ``max_drop``).

    A model with a fixed batch runs in chunks of exactly that size (the last one padded).
    """
    x, y = load_validation(path, inputs)
    fixed = None if inputs[0].dynamic_batch else inputs[0].shape[0]
    size = fixed or batch
    return Accuracy(
        dataset=path.name,
        samples=len(y),
        reference=_top1(reference, x, y, size, pad=fixed is not None),
        converted=_top1(converted, x, y, size, pad=fixed is not None),
        max_drop=max_drop,
    )


def _top1(runner: Runner, x: np.ndarray, y: np.ndarray, batch: int, *, pad: bool) -> float:
    predictions = []
    for (chunk,) in _batches([x], batch):
        rows = len(chunk)
        if pad and rows < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - rows, axis=0)])
        logits = runner([chunk])[0]
        predictions.append(logits.reshape(len(chunk), -1)[:rows].argmax(axis=1))
    return float((np.concatenate(predictions) == y).mean())


def onnx_runner(path: Path) -> Runner:
    """Run an ONNX file in ONNX Runtime (CPU); a file that is not ONNX is a ConversionError."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise errors.ConversionError(f"{path}: not a loadable ONNX model: {exc}") from None
    names = [i.name for i in session.get_inputs()]

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(None, dict(zip(names, arrays, strict=True)))]

    return run


_ONNX_TYPES = {
    1: Datatype.FP32,
    2: Datatype.UINT8,
    3: Datatype.INT8,
    4: Datatype.UINT16,
    5: Datatype.INT16,
    6: Datatype.INT32,
    7: Datatype.INT64,
    8: Datatype.BYTES,
    9: Datatype.BOOL,
    10: Datatype.FP16,
    11: Datatype.FP64,
    12: Datatype.UINT32,
    13: Datatype.UINT64,
}


def onnx_signature(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file (symbolic or unknown dimensions become -1)."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise errors.ConversionError(f"{path}: not a valid ONNX model: {exc}") from None
    initializers = {i.name for i in model.graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        datatype = _ONNX_TYPES.get(tensor.elem_type)
        if datatype is None:
            raise errors.ConversionError(f"{path}: tensor {value.name} has an unsupported type")
        return TensorSpec(name=value.name, datatype=datatype, shape=dims)

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [spec(v) for v in model.graph.output]
