# SPDX-License-Identifier: Apache-2.0
"""Ascend ACL: an OM model (built by ATC for one SoC) run through pyACL, the ``acl`` module of CANN.

The calls follow the pyACL samples: init, set device, load the OM, describe it, then per request
copy inputs to device buffers, ``acl.mdl.execute``, copy outputs back. Not verified here: this
machine has no Ascend NPU and no CANN; the ``ascend`` image has both.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.serving import codecs
from inferplane.serving.backends.base import ModelFiles

_MEMCPY_HOST_TO_DEVICE = 1
_MEMCPY_DEVICE_TO_HOST = 2
_MEM_MALLOC_HUGE_FIRST = 0


def _ok(ret: int, what: str) -> None:
    if ret != 0:
        raise errors.BackendError(f"ACL {what} failed with error {ret}")


class AclBackend:
    platform = "ascend_om"

    def __init__(self, model: ModelFiles, *, device_id: int = 0) -> None:
        self._model = model
        self._device_id = device_id
        self._acl: Any = None
        self._model_id = 0
        self._desc: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        try:
            import acl
        except ImportError:
            raise errors.RuntimeMissing("acl", "pyACL (CANN toolkit)", "ascend") from None
        self._model.require_signature("an OM")
        self._acl = acl
        _ok(acl.init(), "init")
        _ok(acl.rt.set_device(self._device_id), "rt.set_device")
        self._model_id, ret = acl.mdl.load_from_file(str(self._model.path))
        _ok(ret, f"mdl.load_from_file({self._model.path})")
        self._desc = acl.mdl.create_desc()
        _ok(acl.mdl.get_desc(self._desc, self._model_id), "mdl.get_desc")

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._model.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self._model.outputs)

    def _dataset(self, sizes: list[int]) -> tuple[Any, list[Any]]:
        acl = self._acl
        dataset = acl.mdl.create_dataset()
        buffers = []
        for size in sizes:
            device, ret = acl.rt.malloc(max(size, 1), _MEM_MALLOC_HUGE_FIRST)
            _ok(ret, "rt.malloc")
            buffers.append(device)
            _, ret = acl.mdl.add_dataset_buffer(dataset, acl.create_data_buffer(device, size))
            _ok(ret, "mdl.add_dataset_buffer")
        return dataset, buffers

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        acl = self._acl
        hosts = [np.ascontiguousarray(inputs[s.name]) for s in self._model.inputs]
        with self._lock:
            in_set, in_bufs = self._dataset([h.nbytes for h in hosts])
            out_sizes = [
                acl.mdl.get_output_size_by_index(self._desc, i)
                for i in range(len(self._model.outputs))
            ]
            out_set, out_bufs = self._dataset(out_sizes)
            try:
                for host, device in zip(hosts, in_bufs, strict=True):
                    _ok(
                        acl.rt.memcpy(
                            device,
                            host.nbytes,
                            acl.util.numpy_to_ptr(host),
                            host.nbytes,
                            _MEMCPY_HOST_TO_DEVICE,
                        ),
                        "rt.memcpy",
                    )
                _ok(acl.mdl.execute(self._model_id, in_set, out_set), "mdl.execute")
                results: dict[str, np.ndarray] = {}
                rows = hosts[0].shape[0] if hosts and hosts[0].ndim else 1
                for spec, size, device in zip(
                    self._model.outputs, out_sizes, out_bufs, strict=True
                ):
                    host = np.empty(
                        size // codecs.DTYPES[spec.datatype.value].itemsize,
                        codecs.DTYPES[spec.datatype.value],
                    )
                    _ok(
                        acl.rt.memcpy(
                            acl.util.numpy_to_ptr(host), size, device, size, _MEMCPY_DEVICE_TO_HOST
                        ),
                        "rt.memcpy",
                    )
                    shape = [rows if d == -1 else d for d in spec.shape]
                    results[spec.name] = host.reshape(shape)
                return results
            finally:
                for dataset, bufs in ((in_set, in_bufs), (out_set, out_bufs)):
                    for i in range(acl.mdl.get_dataset_num_buffers(dataset)):
                        acl.destroy_data_buffer(acl.mdl.get_dataset_buffer(dataset, i))
                    acl.mdl.destroy_dataset(dataset)
                    for device in bufs:
                        acl.rt.free(device)

    def close(self) -> None:
        if self._acl is not None:
            self._acl.mdl.unload(self._model_id)
            self._acl.mdl.destroy_desc(self._desc)
            self._acl.rt.reset_device(self._device_id)
            self._acl.finalize()
            self._acl = None
