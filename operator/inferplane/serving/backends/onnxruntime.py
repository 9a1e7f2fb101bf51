# SPDX-License-Identifier: Apache-2.0
"""ONNX Runtime: the CPU execution provider, or the TensorRT / CUDA providers on ``nvidia``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.api.tensors import Datatype, TensorSpec
from inferplane.devices import DeviceClass
from inferplane.serving.backends.base import ModelFiles

ONNX_TYPES: dict[str, Datatype] = {
    "tensor(bool)": Datatype.BOOL,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(float16)": Datatype.FP16,
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(string)": Datatype.BYTES,
}

TINY_S = 0.0002
"""Models faster than this at batch 1 get a single-threaded session."""

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def providers_for(device: DeviceClass, available: list[str]) -> list[str]:
    """The execution providers to ask for, best first; an NVIDIA device needs a GPU provider."""
    if device is DeviceClass.CPU:
        return ["CPUExecutionProvider"]
    if device is DeviceClass.NVIDIA:
        gpu = [p for p in GPU_PROVIDERS if p in available]
        if not gpu:
            raise errors.RuntimeMissing("onnxruntime", "onnxruntime-gpu", "nvidia")
        return [*gpu, "CPUExecutionProvider"]
    raise errors.BackendError(f"backend 'onnxruntime' does not serve device class '{device}'")


def _spec(arg: Any) -> TensorSpec:
    try:
        datatype = ONNX_TYPES[arg.type]
    except KeyError:
        raise errors.BackendError(
            f"tensor '{arg.name}': unsupported ONNX type {arg.type}"
        ) from None
    shape = [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
    return TensorSpec(name=arg.name, datatype=datatype, shape=shape)


class OnnxRuntimeBackend:
    platform = "onnxruntime_onnx"

    def __init__(self, model: ModelFiles, *, threads: int = 0) -> None:
        self._model = model
        self._threads = threads
        self._session: Any = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._output_names: list[str] = []
        self._run: Any = None
        self._invalid_argument: type[Exception] | tuple[()] = ()
        """The runtime's INVALID_ARGUMENT error class (none before ``load``)."""

    def load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise errors.RuntimeMissing("onnxruntime", "onnxruntime", "cpu") from None
        providers = providers_for(self._model.device, ort.get_available_providers())
        self._session = self._open(ort, providers, self._threads)
        self._inputs = [_spec(a) for a in self._session.get_inputs()]
        self._outputs = [_spec(a) for a in self._session.get_outputs()]
        self._output_names = [s.name for s in self._outputs]
        if self._threads == 0 and providers == ["CPUExecutionProvider"] and self._tiny():
            # Tiny models run faster on the caller's thread alone: handing a few microseconds
            # of work to the intra-op pool costs more than it saves.
            self._session = self._open(ort, providers, 1)
        # The binding's own run skips the Python wrapper's per-call checks (about 5 us);
        # the server has validated names, dtypes and shapes already.
        self._run = getattr(self._session, "_sess", self._session).run
        from onnxruntime.capi import onnxruntime_pybind11_state as state

        self._invalid_argument = state.InvalidArgument

    def _open(self, ort: Any, providers: list[str], threads: int) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning intra-op threads burn the core the event loop needs between requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(
                str(self._model.path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise errors.BackendError(
                f"onnxruntime cannot load {self._model.path}: {exc}"
            ) from None

    def _tiny(self) -> bool:
        """Whether one batch-1 run takes under ``TINY_S`` (dynamic dimensions set to 1)."""
        from inferplane.serving import codecs

        if any(s.datatype is Datatype.BYTES for s in self._inputs):
            return False
        sample = {
            s.name: np.zeros([max(d, 1) for d in s.shape], codecs.DTYPES[s.datatype.value])
            for s in self._inputs
        }
        self._session.run(self._output_names, sample)
        best = float("inf")
        for _ in range(20):  # the fastest of several: one run on a busy machine can be slow
            started = time.perf_counter()
            self._session.run(self._output_names, sample)
            best = min(best, time.perf_counter() - started)
            if best < TINY_S:
                return True
        return False

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; the runtime's INVALID_ARGUMENT (an index out of range in a Gather, say)
        is the input's fault: a ``ProtocolError`` (400), not a backend failure."""
        try:
            results = self._run(self._output_names, inputs, None)
        except self._invalid_argument as exc:
            raise errors.ProtocolError(f"the model refused the input: {exc}") from None
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None
