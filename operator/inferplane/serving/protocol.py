# SPDX-License-Identifier: Apache-2.0
"""The Open Inference Protocol (KServe V2) REST messages: parsing requests, building responses.

Plain dicts and slotted classes rather than pydantic models: this is the per-request path,
and validating a request costs a few microseconds here instead of tens.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import orjson

from inferplane import __version__, errors
from inferplane.api.tensors import TensorSpec
from inferplane.serving import codecs

SERVER_NAME: Final = "inferplane"
EXTENSIONS = ["binary_tensor_data"]
_NUMPY: Final = orjson.OPT_SERIALIZE_NUMPY


class InferRequest:
    """A decoded inference request: inputs as numpy arrays (views into the body when binary).

    Compared by identity: the template of a cached layout is one object, shared by its
    requests. A plain class, not a dataclass: compiled (setup.py), a dataclass is a Python
    class again and every field read a Python attribute lookup."""

    __slots__ = (
        "binary_output", "id", "inputs", "layout", "outputs", "parameters", "response_headers"
    )  # fmt: skip

    def __init__(
        self,
        id: str | None,
        inputs: dict[str, np.ndarray],
        outputs: list[tuple[str, bool]] | None,
        binary_output: bool,
        parameters: dict[str, Any] | None,
        layout: list[tuple[str, np.dtype[Any], tuple[int, ...], int]] | None = None,
    ) -> None:
        self.id = id
        self.inputs = inputs
        self.outputs = outputs
        """Requested outputs with whether each is wanted as binary; None means all."""
        self.binary_output = binary_output
        """The request-level ``binary_data_output`` default."""
        self.parameters = parameters
        """Request parameters, accepted and passed through (none changes the computation)."""
        self.layout = layout
        """(name, dtype, shape, offset) of each input when all are numeric and binary: then
        any body with the same JSON header decodes with ``from_layout``, no parsing."""
        self.response_headers: dict[tuple[Any, ...], tuple[bytes, list[str]]] | None = None
        """Response JSON headers already encoded for requests with this JSON header (so the
        same id and requested outputs), by the outputs' dtypes and shapes; shared by the
        requests of one layout. None: not cached."""

    def template(self) -> InferRequest:
        """This request without its inputs (so it keeps no body alive), sharing its cache of
        response headers: what a cached layout keeps."""
        copy = InferRequest(
            self.id, {}, self.outputs, self.binary_output, self.parameters, self.layout
        )
        copy.response_headers = self.response_headers
        return copy


RESPONSE_HEADERS: Final = 16
"""Distinct output shapes whose response header one cached request layout remembers."""


def from_layout(request: InferRequest, body: bytes) -> dict[str, np.ndarray]:
    """The inputs of a body whose JSON header equals ``request``'s: views into ``body`` at the
    same places (everything else about the request is ``request``'s)."""
    assert request.layout is not None
    inputs = {}
    for name, dtype, shape, offset in request.layout:
        inputs[name] = np.ndarray(shape, dtype, body, offset)
    return inputs


def server_metadata() -> bytes:
    return orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


def model_metadata(
    name: str, version: str, platform: str, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> bytes:
    def tensor(spec: TensorSpec) -> dict[str, Any]:
        return {"name": spec.name, "datatype": spec.datatype.value, "shape": list(spec.shape)}

    return orjson.dumps(
        {
            "name": name,
            "versions": [version],
            "platform": platform,
            "inputs": [tensor(s) for s in inputs],
            "outputs": [tensor(s) for s in outputs],
        }
    )


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parse a V2 infer request; ``header_length`` is ``Inference-Header-Content-Length``."""
    view = memoryview(body)
    if header_length is not None and not 0 < header_length <= len(body):
        raise errors.ProtocolError(
            f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body"
        )
    try:
        message = orjson.loads(view[:header_length] if header_length is not None else view)
    except orjson.JSONDecodeError as exc:
        raise errors.ProtocolError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise errors.ProtocolError("request body must be a JSON object")
    raw_inputs = message.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise errors.ProtocolError("request needs a non-empty 'inputs' list")
    offset = header_length if header_length is not None else len(body)
    inputs: dict[str, np.ndarray] = {}
    layout: list[tuple[str, np.dtype[Any], tuple[int, ...], int]] | None = []
    for item in raw_inputs:
        if not isinstance(item, dict):
            raise errors.ProtocolError("each input must be an object")
        name = item.get("name")
        datatype = item.get("datatype")
        shape: Any = item.get("shape")
        if not isinstance(name, str):
            raise errors.ProtocolError("an input has no 'name'")
        if name in inputs:
            raise errors.ProtocolError(f"input '{name}' given twice")
        if datatype not in codecs.DTYPES:
            raise errors.ProtocolError(f"input '{name}': unknown datatype {codecs.brief(datatype)}")
        params = item.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if header_length is None:
                raise errors.ProtocolError(
                    f"input '{name}': binary_data_size without Inference-Header-Content-Length"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise errors.ProtocolError(
                    f"input '{name}': bad binary_data_size {codecs.brief(size)}"
                )
            array = codecs.from_binary(name, datatype, shape, view, offset, size)
            inputs[name] = array
            if layout is not None and datatype != "BYTES":
                layout.append((name, array.dtype, array.shape, offset))
            else:
                layout = None
            offset += size
        else:
            if "data" not in item:
                raise errors.ProtocolError(f"input '{name}': no 'data' and no binary_data_size")
            inputs[name] = codecs.from_json(name, datatype, shape, item["data"])
            layout = None
    if offset != len(body):
        raise errors.ProtocolError(
            f"body has {len(body) - offset} bytes beyond the tensors' binary_data_size"
        )
    parameters = message.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise errors.ProtocolError("'parameters' must be an object")
    binary_output = bool(parameters.get("binary_data_output", False)) if parameters else False
    outputs: list[tuple[str, bool]] | None = None
    raw_outputs = message.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise errors.ProtocolError("'outputs' must be a list")
        outputs = []
        for out in raw_outputs:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise errors.ProtocolError("each requested output needs a 'name'")
            oparams = out.get("parameters")
            binary = binary_output
            if isinstance(oparams, dict) and "binary_data" in oparams:
                binary = bool(oparams["binary_data"])
            outputs.append((out["name"], binary))
    request_id = message.get("id")
    return InferRequest(
        id=request_id if isinstance(request_id, str) else None,
        inputs=inputs,
        outputs=outputs,
        binary_output=binary_output,
        parameters=parameters,
        layout=layout if header_length is not None else None,
    )


def encode_response(
    model: str,
    version: str,
    request: InferRequest,
    results: dict[str, np.ndarray],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it.

    A request from a cached layout whose outputs are all numeric and binary reuses the JSON
    header of an earlier answer with the same output shapes: only the tensors' bytes change.
    """
    cache = request.response_headers
    if cache is not None:
        if len(results) == 1:  # the common case, without a comprehension's frame
            for only in results.values():
                key: tuple[Any, ...] = ((only.dtype, only.shape),)
        else:
            key = tuple([(a.dtype, a.shape) for a in results.values()])
        hit = cache.get(key)
        if hit is not None:
            header, names = hit
            if len(names) == 1:
                return header + results[names[0]].tobytes(), len(header)
            return b"".join([header, *[results[n].tobytes() for n in names]]), len(header)
    wanted = request.outputs
    if wanted is None:
        wanted = [(name, request.binary_output) for name in results]
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in wanted:
        array = results[name]
        entry: dict[str, Any] = {
            "name": name,
            "datatype": codecs.datatype_of(array),
            "shape": list(array.shape),
        }
        if binary:
            blob = codecs.to_binary(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = codecs.to_json_data(array)
        outputs.append(entry)
    message: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id is not None:
        message["id"] = request.id
    header = orjson.dumps(message, option=_NUMPY)
    if not blobs:
        return header, None
    if (
        cache is not None
        and len(blobs) == len(outputs)
        and len(cache) < RESPONSE_HEADERS
        and all(results[n].dtype.kind not in "OSU" for n, _ in wanted)
    ):
        cache[key] = (header, [n for n, _ in wanted])
    return b"".join([header, *blobs]), len(header)


def encode_batch(
    model: str,
    version: str,
    requests: list[InferRequest],
    rows: list[int],
    results: dict[str, np.ndarray],
) -> list[tuple[bytes, int | None] | errors.InferplaneError]:
    """The responses of a merged batch's requests, each to its own rows of ``results`` (request
    i owns the rows after those of requests 0..i-1), or the error encoding that request's rows
    raised: one request's outputs failing to encode fails only that request.

    A batch of requests of one cached layout costs a slice of one copy of the output each;
    any other is encoded request by request, from views of its rows.
    """
    sliced = _sliced(requests, rows, results)
    if sliced is not None:
        return sliced
    replies: list[tuple[bytes, int | None] | errors.InferplaneError] = []
    start = 0
    for request, n in zip(requests, rows, strict=True):
        stop = start + n
        own = {name: a[start:stop] for name, a in results.items()}
        try:
            replies.append(encode_response(model, version, request, own))
        except errors.InferplaneError as exc:
            replies.append(exc)
        start = stop
    return replies


def _sliced(
    requests: list[InferRequest], rows: list[int], results: dict[str, np.ndarray]
) -> list[tuple[bytes, int | None] | errors.InferplaneError] | None:
    """The common batch, answered with one slice each: requests of one cached layout, each of
    the same rows, whose one wanted output's header is cached. None: not that batch."""
    first, n = requests[0], rows[0]
    cache = first.response_headers
    if cache is None or n == 0 or rows.count(n) != len(rows):
        return None
    if requests.count(first) != len(requests):
        return None
    hit = cache.get(tuple([(a.dtype, (n, *a.shape[1:])) for a in results.values()]))
    if hit is None or len(hit[1]) != 1:
        return None
    header, (name,) = hit
    output = results[name]
    blob, size, length = output.tobytes(), output.nbytes // len(requests), len(header)
    if size == 0:
        return None
    return [(header + blob[i : i + size], length) for i in range(0, len(blob), size)]
