# SPDX-License-Identifier: Apache-2.0
"""Small real models for tests and benchmarks, built on the fly (no binaries in the repo).

ONNX models are written with the ``onnx`` helper API; LeNet5 comes from ``examples/lenet`` and is
saved by MindSpore itself as a checkpoint and as MindIR. Other suites (conversion, local mode)
reuse these functions; ``tests/conftest.py`` wraps them in session fixtures.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
LENET_DIR = ROOT / "examples" / "lenet"
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def mlp_onnx(path: Path, sizes: Sequence[int] = (64, 128, 10), *, seed: int = 0) -> Path:
    """A ReLU MLP ``x:[-1, sizes[0]] FP32 -> y:[-1, sizes[-1]]`` with random weights."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    prev = "x"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.1).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(sizes) - 2
        out = "y" if last else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
            out = f"r{i}"
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", sizes[-1]])],
        weights,
    )
    return _save(graph, path)


TYPED = {
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "FP16": TensorProto.FLOAT16,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "BOOL": TensorProto.BOOL,
}
"""V2 datatypes covered by ``typed_identity_onnx`` (input ``in_<T>`` echoes to ``out_<T>``)."""


def typed_identity_onnx(path: Path) -> Path:
    """One model with an input per datatype, ``in_<T>:[-1, 3]``, echoed to ``out_<T>``."""
    nodes = [helper.make_node("Identity", [f"in_{t}"], [f"out_{t}"]) for t in TYPED]
    graph = helper.make_graph(
        nodes,
        "typed",
        [helper.make_tensor_value_info(f"in_{t}", p, ["batch", 3]) for t, p in TYPED.items()],
        [helper.make_tensor_value_info(f"out_{t}", p, ["batch", 3]) for t, p in TYPED.items()],
    )
    return _save(graph, path)


def multi_io_onnx(path: Path) -> Path:
    """Two inputs, two outputs: ``a, b:[-1,4] FP32 -> sum = a + b, prod = round(a * b)``.

    ``prod`` is cast to INT64 so the model mixes output datatypes.
    """
    nodes = [
        helper.make_node("Add", ["a", "b"], ["sum"]),
        helper.make_node("Mul", ["a", "b"], ["p"]),
        helper.make_node("Round", ["p"], ["pr"]),
        helper.make_node("Cast", ["pr"], ["prod"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        "multi",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("prod", TensorProto.INT64, ["batch", 4]),
        ],
    )
    return _save(graph, path)


def independent_rows_onnx(path: Path) -> Path:
    """Two inputs with independent first dimensions: ``a:[n,2] -> ya = a``, ``b:[m,2] -> yb = -b``
    (legal: nothing ties ``n`` to ``m``, so requests must never be merged)."""
    dims = {"a": "n", "b": "m"}
    graph = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["ya"]), helper.make_node("Neg", ["b"], ["yb"])],
        "independent",
        [helper.make_tensor_value_info(t, TensorProto.FLOAT, [d, 2]) for t, d in dims.items()],
        [
            helper.make_tensor_value_info(f"y{t}", TensorProto.FLOAT, [d, 2])
            for t, d in dims.items()
        ],
    )
    return _save(graph, path)


def gather_onnx(path: Path, rows: int = 10) -> Path:
    """``i:[-1] INT64 -> y = table[i]`` with ``table[r] = [r, -r]``: an index outside
    ``[-rows, rows)`` makes the model call fail (the input's fault)."""
    table = np.stack([np.arange(rows), -np.arange(rows)], axis=1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "i"], ["y"])],
        "gather",
        [helper.make_tensor_value_info("i", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def fixed_batch_onnx(path: Path) -> Path:
    """A model with a fixed shape ``x:[2, 3] FP32 -> y = 2x`` (no dynamic batch: no batching)."""
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [two],
    )
    return _save(graph, path)


def lenet_network() -> object:
    """A fresh MindSpore LeNet5 with random weights (imports MindSpore: ~2 s the first time)."""
    if str(LENET_DIR) not in sys.path:
        sys.path.insert(0, str(LENET_DIR))
    import network  # examples/lenet/network.py

    return network.lenet5()


def lenet_checkpoint(directory: Path, *, seed: int = 0) -> Path:
    """Save a random LeNet5 as ``lenet.ckpt`` (its network: ``network:lenet5``)."""
    import mindspore as ms

    ms.set_seed(seed)
    path = directory / "lenet.ckpt"
    ms.save_checkpoint(lenet_network(), str(path))
    return path


def lenet_mindir(directory: Path, checkpoint: Path) -> Path:
    """Export the checkpoint's LeNet5 as ``lenet.mindir`` with a dynamic batch dimension."""
    import mindspore as ms

    net = lenet_network()
    ms.load_param_into_net(net, ms.load_checkpoint(str(checkpoint)))  # type: ignore[arg-type]
    stem = directory / "lenet"
    ms.export(net, ms.Tensor(shape=[None, 1, 32, 32], dtype=ms.float32), file_name=str(stem),
              file_format="MINDIR")  # fmt: skip
    return stem.with_suffix(".mindir")


def lenet_reference(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    """LeNet5 with the checkpoint's weights, in MindSpore, in a subprocess (MindSpore's own
    runtime stays out of the test process)."""
    program = (
        "import sys, numpy as np, mindspore as ms; ms.set_device('CPU'); import network;"
        "net = network.lenet5(); ms.load_param_into_net(net, ms.load_checkpoint(sys.argv[1]));"
        "x = np.load(sys.argv[2]); np.save(sys.argv[3], net(ms.Tensor(x)).asnumpy())"
    )
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "x.npy", x)
        env = {**os.environ, "PYTHONPATH": str(LENET_DIR)}
        subprocess.run(
            [sys.executable, "-c", program, str(checkpoint), f"{folder}/x.npy", f"{folder}/y.npy"],
            check=True, env=env, timeout=300, capture_output=True,
        )  # fmt: skip
        result: np.ndarray = np.load(Path(folder) / "y.npy")
    return result


LENET_INPUT = "x:-1,1,32,32:FP32"
LENET_NETWORK = "network:lenet5"
