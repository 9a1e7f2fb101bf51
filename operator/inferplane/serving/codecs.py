# SPDX-License-Identifier: Apache-2.0
"""Pure tensor codecs: V2 datatypes, JSON tensors <-> numpy, and the binary tensor extension.

Every check raises ``ProtocolError`` with a message naming the tensor. Binary inputs are numpy
views straight into the request body (``np.frombuffer``): the payload is never copied here.
"""

from __future__ import annotations

import array as pyarray
import struct
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.api.tensors import Datatype

DTYPES: dict[str, np.dtype[Any]] = {d.value: d.numpy for d in Datatype}
"""V2 datatype name -> numpy dtype (BYTES are object arrays of ``bytes``)."""

DATATYPE_OF: dict[np.dtype[Any], str] = {v: k for k, v in DTYPES.items()}

_FLAT_FLOATS = {4: "f", 8: "d"}
"""Float itemsize (FP32, FP64; JSON FP16 is refused) -> ``array`` typecode: a flat list of
numbers converts in C, and a string among them is refused where numpy would parse it."""

_JSON_KINDS: dict[str, str] = {"b": "b", "u": "biu", "i": "biu", "f": "biuf"}
"""Which JSON-decoded numpy kinds each target kind accepts (no silent float -> int truncation)."""


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype name of a numpy array (strings and bytes are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return DATATYPE_OF[array.dtype]
    except KeyError:
        raise errors.BackendError(f"output dtype {array.dtype} has no V2 datatype") from None


MAX_RANK = 32
"""Dimensions a tensor may have (numpy's own limit is 64)."""

MAX_SPAN = 1 << 40
"""The product of a shape's dimensions, zeros counted as one, may not exceed this: numpy
refuses to reshape even an empty array to ``[0, 2**62, 2**62]``, and no body carries 2**40
elements anyway. Checked before any allocation or reshape, so an absurd shape is a 400."""


def element_count(name: str, shape: Any) -> int:
    """Validate a V2 ``shape`` field and return the number of elements it holds."""
    if type(shape) is list and len(shape) <= MAX_RANK:
        count = 1
        span = 1
        for d in shape:
            if type(d) is not int or d < 0:
                break
            count *= d
            if d:
                span *= d
        else:
            if span <= MAX_SPAN:
                return count
            raise errors.ProtocolError(
                f"tensor '{name}': shape {shape} is too large (its dimensions multiply past "
                f"2**40, zeros counted as one)"
            )
    raise errors.ProtocolError(
        f"tensor '{name}': shape must be a list of at most {MAX_RANK} non-negative integers, "
        f"got {brief(shape)}"
    )


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: client data in an error message stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """Decode a JSON tensor (flat or nested ``data``) into an array of ``shape``."""
    count = element_count(name, shape)
    if datatype == "FP16":
        raise errors.ProtocolError(
            f"tensor '{name}': FP16 is supported only with the binary tensor extension"
        )
    if not isinstance(data, list):
        raise errors.ProtocolError(f"tensor '{name}': 'data' must be a list")
    if datatype == "BYTES":
        return _bytes_from_json(name, shape, count, data)
    dtype = DTYPES[datatype]
    try:
        if dtype.kind == "f" and data and type(data[0]) is not list:
            array = np.frombuffer(pyarray.array(_FLAT_FLOATS[dtype.itemsize], data), dtype)
        elif dtype.kind == "f":
            array = np.array(data, dtype=dtype)
        else:
            raw = np.array(data)
            if raw.size and raw.dtype.kind not in _JSON_KINDS[dtype.kind]:
                raise errors.ProtocolError(
                    f"tensor '{name}': data holds {raw.dtype.kind!r}-kind values, not {datatype}"
                )
            array = raw.astype(dtype) if raw.size else np.empty(0, dtype)
            if dtype.kind in "iu" and raw.size and not np.array_equal(array, raw):
                raise errors.ProtocolError(f"tensor '{name}': values out of range for {datatype}")
    except (ValueError, TypeError, OverflowError) as exc:
        raise errors.ProtocolError(f"tensor '{name}': data is not {datatype}: {exc}") from None
    if array.size != count:
        raise errors.ProtocolError(
            f"tensor '{name}': data has {array.size} elements, shape {shape} needs {count}"
        )
    return array.reshape(shape)


def _bytes_from_json(name: str, shape: list[int], count: int, data: list[Any]) -> np.ndarray:
    flat: list[Any] = []
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            flat.append(item.encode())
        else:
            raise errors.ProtocolError(f"tensor '{name}': BYTES data must hold strings")
    if len(flat) != count:
        raise errors.ProtocolError(
            f"tensor '{name}': data has {len(flat)} elements, shape {shape} needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = flat
    return array.reshape(shape)


def from_binary(
    name: str, datatype: str, shape: list[int], buffer: memoryview, offset: int, size: int
) -> np.ndarray:
    """A view of ``size`` bytes at ``offset`` of the request body as a tensor (no copy)."""
    count = element_count(name, shape)
    if offset + size > len(buffer):
        raise errors.ProtocolError(
            f"tensor '{name}': binary_data_size {size} runs past the end of the body"
        )
    if datatype == "BYTES":
        return _bytes_from_binary(name, shape, count, buffer[offset : offset + size])
    dtype = DTYPES[datatype]
    if size != count * dtype.itemsize:
        raise errors.ProtocolError(
            f"tensor '{name}': binary_data_size is {size} bytes, "
            f"shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)


def _bytes_from_binary(name: str, shape: list[int], count: int, raw: memoryview) -> np.ndarray:
    """BYTES in binary form: each element is a 4-byte little-endian length, then the bytes."""
    items: list[bytes] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise errors.ProtocolError(f"tensor '{name}': truncated BYTES element length")
        (length,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + length > len(raw):
            raise errors.ProtocolError(f"tensor '{name}': BYTES element runs past its data")
        items.append(bytes(raw[pos : pos + length]))
        pos += length
    if len(items) != count:
        raise errors.ProtocolError(
            f"tensor '{name}': data has {len(items)} elements, shape {shape} needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def to_binary(array: np.ndarray) -> bytes:
    """The raw bytes of an output tensor in the binary extension's layout."""
    if array.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in array.ravel():
            value = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(value)))
            parts.append(value)
        return b"".join(parts)
    return np.ascontiguousarray(array).tobytes()


def to_json_data(array: np.ndarray) -> Any:
    """Flat ``data`` for a JSON response; numeric arrays go to orjson as numpy (fast path)."""
    if array.dtype.kind in "OSU":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in array.ravel()]
    if array.dtype == np.float16:
        return array.astype(np.float32).ravel()
    return np.ascontiguousarray(array).ravel()
