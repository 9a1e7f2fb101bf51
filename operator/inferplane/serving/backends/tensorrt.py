# SPDX-License-Identifier: Apache-2.0
"""TensorRT: a serialized engine run by the TensorRT Python runtime (10.x API), with dynamic shapes.

Device memory goes through ``cuda-python`` (``cuda.bindings.runtime``), as NVIDIA's samples do.
Not verified here: this machine has no GPU and no TensorRT; the ``nvidia`` image has both.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.api.tensors import Datatype, TensorSpec
from inferplane.serving import codecs
from inferplane.serving.backends.base import ModelFiles


def _check(result: Any) -> Any:
    status, *rest = result
    if int(status) != 0:
        raise errors.BackendError(f"CUDA call failed: {status}")
    return rest[0] if len(rest) == 1 else rest


class TensorRTBackend:
    platform = "tensorrt_plan"

    def __init__(self, model: ModelFiles) -> None:
        self._model = model
        self._trt: Any = None
        self._cudart: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._lock = threading.Lock()

    def load(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise errors.RuntimeMissing("tensorrt", "tensorrt", "nvidia") from None
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            raise errors.RuntimeMissing("tensorrt", "cuda-python", "nvidia") from None
        self._trt, self._cudart = trt, cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(self._model.path.read_bytes())
        if self._engine is None:
            raise errors.BackendError(
                f"{self._model.path}: TensorRT cannot deserialize the engine "
                "(built for another GPU or TensorRT version?)"
            )
        self._context = self._engine.create_execution_context()
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            spec = TensorSpec(
                name=name,
                datatype=Datatype(codecs.DATATYPE_OF[dtype]),
                shape=[int(d) for d in self._engine.get_tensor_shape(name)],
            )
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(spec)
            else:
                self._outputs.append(spec)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        kind = cudart.cudaMemcpyKind
        with self._lock:
            buffers: list[Any] = []
            try:
                for spec in self._inputs:
                    host = np.ascontiguousarray(inputs[spec.name])
                    self._context.set_input_shape(spec.name, host.shape)
                    device = _check(cudart.cudaMalloc(host.nbytes))
                    buffers.append(device)
                    _check(
                        cudart.cudaMemcpy(
                            device, host.ctypes.data, host.nbytes, kind.cudaMemcpyHostToDevice
                        )
                    )
                    self._context.set_tensor_address(spec.name, device)
                hosts: dict[str, np.ndarray] = {}
                for spec in self._outputs:
                    shape = tuple(self._context.get_tensor_shape(spec.name))
                    host = np.empty(shape, codecs.DTYPES[spec.datatype.value])
                    device = _check(cudart.cudaMalloc(max(host.nbytes, 1)))
                    buffers.append(device)
                    self._context.set_tensor_address(spec.name, device)
                    hosts[spec.name] = host
                if not self._context.execute_async_v3(0):
                    raise errors.BackendError("TensorRT execute_async_v3 failed")
                for spec, device in zip(self._outputs, buffers[len(self._inputs) :], strict=True):
                    host = hosts[spec.name]
                    _check(
                        cudart.cudaMemcpy(
                            host.ctypes.data, device, host.nbytes, kind.cudaMemcpyDeviceToHost
                        )
                    )
                return hosts
            finally:
                for device in buffers:
                    cudart.cudaFree(device)

    def close(self) -> None:
        self._context = None
        self._engine = None
