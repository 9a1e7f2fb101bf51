# SPDX-License-Identifier: Apache-2.0
"""MindSpore: a checkpoint loaded into the network's ``nn.Cell``, or MindIR run by ``nn.GraphCell``.

The device target follows the device class (CPU here; GPU and Ascend are the same calls with
another target). Neither file states its outputs, so ``load`` runs one sample of the input
signature to learn them.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inferplane import errors, mindspore_runtime
from inferplane.api.tensors import Datatype, TensorSpec
from inferplane.devices import DeviceClass
from inferplane.serving import codecs
from inferplane.serving.backends.base import ModelFiles

TARGETS: dict[DeviceClass, str] = {
    DeviceClass.CPU: "CPU",
    DeviceClass.NVIDIA: "GPU",
    DeviceClass.ASCEND910: "Ascend",
    DeviceClass.ASCEND310: "Ascend",
}


def import_network(entry: str) -> Any:
    """Import ``module:callable`` (the current directory is importable, as for ``python -m``)."""
    module_name, _, attr = entry.partition(":")
    if not module_name or not attr:
        raise errors.SpecError(f"--network '{entry}': expected module:callable")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.SpecError(f"--network '{entry}': cannot import {module_name}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise errors.SpecError(f"--network '{entry}': {module_name} has no callable '{attr}'")
    return factory


class MindSporeBackend:
    platform = "mindspore"

    def __init__(self, model: ModelFiles) -> None:
        self._model = model
        self._net: Any = None
        self._ms: Any = None
        self._outputs: list[TensorSpec] = list(model.outputs)
        self._lock = threading.Lock()

    def load(self) -> None:
        try:
            import mindspore as ms
            import mindspore.nn as nn
        except ImportError:
            raise errors.RuntimeMissing("mindspore", "mindspore", "mindspore") from None
        if self._model.device not in TARGETS:
            raise errors.BackendError(f"backend 'mindspore' does not serve '{self._model.device}'")
        if not self._model.inputs:
            raise errors.SpecError(
                f"{self._model.path}: MindSpore files do not state their inputs; "
                "give --input name:shape:DATATYPE (e.g. x:-1,1,32,32:FP32)"
            )
        self._ms = ms
        mindspore_runtime.use_device(ms, TARGETS[self._model.device])
        path = self._model.path
        try:
            if path.suffix == ".mindir":
                self._net = nn.GraphCell(ms.load(str(path)))
            else:
                self._net = self._from_checkpoint(ms, path)
        except errors.InferplaneError:
            raise
        except Exception as exc:  # MindSpore raises RuntimeError/ValueError with C++ messages
            raise errors.BackendError(f"mindspore cannot load {path}: {exc}") from None
        self._learn_outputs()

    def _from_checkpoint(self, ms: Any, path: Path) -> Any:
        if not self._model.network:
            raise errors.SpecError(f"{path}: a checkpoint needs --network module:callable")
        net = import_network(self._model.network)()
        params = ms.load_checkpoint(str(path))
        not_loaded, _ = ms.load_param_into_net(net, params)
        if not_loaded:
            raise errors.BackendError(f"{path}: parameters missing for {', '.join(not_loaded)}")
        net.set_train(False)
        return net

    def _learn_outputs(self) -> None:
        sample = {
            s.name: np.zeros(
                [1 if d == -1 else d for d in s.shape], codecs.DTYPES[s.datatype.value]
            )
            for s in self._model.inputs
        }
        results = self.infer(sample)
        if self._outputs:
            return
        dynamic = any(s.dynamic_batch for s in self._model.inputs)
        self._outputs = [
            TensorSpec(
                name=name,
                datatype=Datatype(codecs.datatype_of(array)),
                shape=[-1 if dynamic and i == 0 else d for i, d in enumerate(array.shape)],
            )
            for name, array in results.items()
        ]

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._model.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [
            self._ms.Tensor(np.ascontiguousarray(inputs[s.name])) for s in self._model.inputs
        ]
        with self._lock:
            result = self._net(*tensors)
        arrays = [t.asnumpy() for t in (result if isinstance(result, tuple | list) else [result])]
        names = [s.name for s in self._outputs] or [f"output_{i}" for i in range(len(arrays))]
        return dict(zip(names, arrays, strict=True))

    def close(self) -> None:
        self._net = None
