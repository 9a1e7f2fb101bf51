# SPDX-License-Identifier: Apache-2.0
"""MindSpore: load a checkpoint into its network, export ONNX / MindIR, run the reference.

MindSpore is imported lazily (it takes seconds): nothing here runs unless a checkpoint or MindIR
is involved. Measured quirks this module follows (shared/FACTS.md):

- ``mindspore.onnx.export`` with a ``Tensor(shape=[None, ...])`` placeholder gives a dynamic
  batch on inputs *and* outputs (``ms.export(..., "ONNX")`` rejects dynamic shapes);
- exporting one ``nn.Cell`` twice reuses a cached graph and fails, so every export and every
  reference run builds a fresh network from the factory and loads the parameters into it;
- GRAPH mode on the CPU device is about 10x faster per call than the PYNATIVE default.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferplane import errors, mindspore_runtime
from inferplane.api.tensors import Datatype, TensorSpec

Runner = Callable[[Sequence[np.ndarray]], list[np.ndarray]]
"""Runs a model on positional inputs (numpy) and returns its outputs (numpy)."""

_configured = False

_MS_DTYPES = {
    Datatype.FP16: "float16",
    Datatype.FP32: "float32",
    Datatype.FP64: "float64",
    Datatype.INT8: "int8",
    Datatype.INT16: "int16",
    Datatype.INT32: "int32",
    Datatype.INT64: "int64",
    Datatype.UINT8: "uint8",
    Datatype.BOOL: "bool_",
}


def mindspore() -> Any:
    """The ``mindspore`` module, set to the CPU device in GRAPH mode, or ToolMissing."""
    try:
        import mindspore as ms
    except ImportError:
        raise errors.ToolMissing(
            "mindspore (Python package)", "mindspore", "Or: pip install 'inferplane[mindspore]'."
        ) from None
    global _configured
    if not _configured:
        mindspore_runtime.use_device(ms, "CPU")
        _configured = True
    return ms


def load_factory(entry: str, *, extra_path: Path | None = None) -> Callable[[], Any]:
    """The ``module:callable`` that builds the network; it must be importable (PYTHONPATH)."""
    module_name, _, attr = entry.partition(":")
    if not module_name or not attr:
        raise errors.SpecError(f"network '{entry}': expected module:callable, e.g. network:lenet5")
    mindspore()
    if extra_path is not None:
        if str(extra_path) not in sys.path:
            sys.path.insert(0, str(extra_path))
        # A module of that name imported from elsewhere (an earlier conversion in this process)
        # must not stand in for the code that came with this source.
        cached = sys.modules.get(module_name)
        origin = getattr(cached, "__file__", None)
        if cached is not None and (origin is None or extra_path not in Path(origin).parents):
            del sys.modules[module_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.SpecError(
            f"network '{entry}': cannot import module '{module_name}' ({exc}); "
            "put its directory on PYTHONPATH"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise errors.SpecError(
            f"network '{entry}': module '{module_name}' has no callable '{attr}'"
        )
    return factory


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The parameters of a checkpoint; a corrupt or truncated file is a ConversionError."""
    ms = mindspore()
    try:
        params = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError) as exc:
        raise errors.ConversionError(f"checkpoint {path}: cannot be read: {exc}") from None
    if not params:
        raise errors.ConversionError(f"checkpoint {path}: holds no parameters")
    return dict(params)


def build(
    factory: Callable[[], Any], params: dict[str, Any], *, checkpoint: Path, entry: str
) -> Any:
    """A fresh network from ``factory`` with every one of its parameters loaded from ``params``."""
    ms = mindspore()
    net = factory()
    if not isinstance(net, ms.nn.Cell):
        raise errors.SpecError(f"network '{entry}' returned {type(net).__name__}, not an nn.Cell")
    net.set_train(False)
    try:
        missing, _unused = ms.load_param_into_net(net, params, strict_load=True)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise errors.ConversionError(
            f"checkpoint {checkpoint} does not match network '{entry}': {exc}"
        ) from None
    if missing:
        shown = ", ".join(sorted(missing)[:8])
        raise errors.ConversionError(
            f"checkpoint {checkpoint} does not match network '{entry}': "
            f"{len(missing)} network parameters are not in it ({shown})"
        )
    return net


def placeholders(inputs: Sequence[TensorSpec]) -> list[Any]:
    """Export placeholders: ``Tensor(shape=[None, ...])`` for every dynamic dimension."""
    ms = mindspore()
    out = []
    for spec in inputs:
        if spec.datatype not in _MS_DTYPES:
            raise errors.SpecError(f"input {spec}: datatype {spec.datatype} cannot be exported")
        dtype = getattr(ms, _MS_DTYPES[spec.datatype])
        out.append(ms.Tensor(shape=[None if d == -1 else d for d in spec.shape], dtype=dtype))
    return out


def export_onnx(net: Any, inputs: Sequence[TensorSpec], outputs: Sequence[str], dest: Path) -> Path:
    """Write ``dest`` (ONNX, opset 11) with a dynamic batch on inputs and outputs."""
    mindspore()
    import mindspore.onnx as ms_onnx

    try:
        ms_onnx.export(
            net,
            *placeholders(inputs),
            file_name=str(dest),
            input_names=[s.name for s in inputs],
            output_names=list(outputs),
        )
    except (RuntimeError, ValueError, TypeError) as exc:
        raise errors.ConversionError(f"MindSpore ONNX export failed: {exc}") from None
    return dest


def export_mindir(net: Any, inputs: Sequence[TensorSpec], dest: Path) -> Path:
    """Write ``dest`` (must end in ``.mindir``; MindSpore adds the suffix to the name it gets)."""
    ms = mindspore()
    try:
        ms.export(
            net, *placeholders(inputs), file_name=str(dest.with_suffix("")), file_format="MINDIR"
        )
    except (RuntimeError, ValueError, TypeError) as exc:
        raise errors.ConversionError(f"MindSpore MindIR export failed: {exc}") from None
    if not dest.is_file():
        raise errors.ConversionError(f"MindSpore MindIR export wrote no {dest.name}")
    return dest


def _as_list(result: Any) -> list[np.ndarray]:
    items = result if isinstance(result, (tuple, list)) else [result]
    return [np.asarray(item.asnumpy()) for item in items]


def network_runner(net: Any) -> Runner:
    """Run a loaded network (GRAPH mode compiles once per input shape)."""
    ms = mindspore()

    def run(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return _as_list(net(*[ms.Tensor(a) for a in arrays]))

    return run


def mindir_runner(path: Path) -> Runner:
    """Run a MindIR file through ``nn.GraphCell`` (no network code needed)."""
    ms = mindspore()
    try:
        cell = ms.nn.GraphCell(ms.load(str(path)))
    except (RuntimeError, ValueError, OSError) as exc:
        raise errors.ConversionError(f"MindIR {path}: cannot be loaded: {exc}") from None
    return network_runner(cell)


def version() -> str:
    return str(mindspore().__version__)
