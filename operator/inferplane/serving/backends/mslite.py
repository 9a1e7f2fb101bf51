# SPDX-License-Identifier: Apache-2.0
"""MindSpore Lite: a ``.ms`` model (from converter_lite) on an edge device's CPU.

Not verified here: MindSpore Lite has no Python 3.11 wheel on PyPI; the ``edge`` image has it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.serving.backends.base import ModelFiles


class MindSporeLiteBackend:
    platform = "mindspore_lite"

    def __init__(self, model: ModelFiles) -> None:
        self._model = model
        self._lite: Any = None
        self._net: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        try:
            import mindspore_lite as mslite
        except ImportError:
            raise errors.RuntimeMissing("mslite", "mindspore_lite", "edge") from None
        self._model.require_signature("a .ms")
        context = mslite.Context()
        context.target = ["cpu"]
        self._net = mslite.Model()
        self._net.build_from_file(str(self._model.path), mslite.ModelType.MINDIR_LITE, context)
        self._lite = mslite

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._model.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._model.outputs)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [np.ascontiguousarray(inputs[s.name]) for s in self._model.inputs]
        with self._lock:
            tensors = self._net.get_inputs()
            shapes = [list(a.shape) for a in arrays]
            if [t.shape for t in tensors] != shapes:
                self._net.resize(tensors, shapes)
            for tensor, array in zip(tensors, arrays, strict=True):
                tensor.set_data_from_numpy(array)
            results = self._net.predict(tensors)
        return {
            s.name: t.get_data_to_numpy() for s, t in zip(self._model.outputs, results, strict=True)
        }

    def close(self) -> None:
        self._net = None
