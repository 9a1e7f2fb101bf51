# SPDX-License-Identifier: Apache-2.0
"""The data plane's signature check and layout cache, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferplane.api.tensors import Datatype, TensorSpec
from inferplane.serving.dataplane import BatchSettings, DataPlane, _fits


@pytest.mark.parametrize(
    ("shape", "model", "fits"),
    [
        ((3, 64), (-1, 64), True),
        ((3, 32), (-1, 64), False),
        ((64,), (-1, 64), False),
        ((1, 64), (1, 64), True),
        ((2, 64), (1, 64), False),
        ((2, 5, 7), (-1, -1, 7), True),
        ((2, 5, 6), (-1, -1, 7), False),
        ((2, 5, 7), (2, -1, -1), True),
        ((3, 5, 7), (2, -1, -1), False),
        ((), (), True),
        ((0, 64), (-1, 64), True),
    ],
)
def test_fits(shape: tuple[int, ...], model: tuple[int, ...], fits: bool) -> None:
    assert _fits(shape, model) is fits


def test_only_pure_layouts_key_the_layout_cache() -> None:
    """A header with an id or parameters is request data: never a cache key (issue: an 8 MiB
    id per request grew the server by 600 MiB); a pure layout is cached once, by its bytes."""
    plane = DataPlane("m", settings=BatchSettings())
    plane.attach(_Echo(), load_seconds=0.0)
    answers: list[object] = []
    plane.answer = lambda _, replies: answers.extend(replies)
    x = np.ones((1, 2), np.float32).tobytes()

    def header(**extra: object) -> bytes:
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, 2],
                  "parameters": {"binary_data_size": 8}}  # fmt: skip
        return json.dumps({"inputs": [tensor], **extra}).encode()

    for h in (header(id="a" * 100_000), header(parameters={"note": "b" * 1000}), header()):
        for _ in range(2):
            plane.infer(h + x, len(h), None)
    assert len(answers) == 6 and all(isinstance(a, tuple) for a in answers), answers
    assert list(plane._layouts) == [header()]
    assert plane._layout_bytes == len(header())


def test_a_repeated_layout_is_matched_by_all_its_bytes() -> None:
    """The last layout found is matched in place (no slice, no hash): two layouts whose headers
    and bodies have the same lengths, interleaved, must each be answered as their own (one
    asks for a binary answer, the other for JSON)."""
    plane = DataPlane("m", settings=BatchSettings())
    plane.attach(_Echo(), load_seconds=0.0)
    answers: dict[object, object] = {}
    plane.answer = lambda tokens, replies: answers.update(zip(tokens, replies, strict=True))

    def header(binary: str) -> bytes:
        tensor = {"name": "x", "datatype": "FP32", "shape": [2, 2],
                  "parameters": {"binary_data_size": 16}}  # fmt: skip
        return (
            json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": "@"}})
            .encode()
            .replace(b'"@"', binary.encode())
        )

    binary, text = header(" true"), header("false")
    assert len(binary) == len(text)
    sent = {}
    for i, h in enumerate((binary, text, text, binary, binary, text, binary)):
        x = np.full((2, 2), i, np.float32)
        sent[i] = (h, x)
        plane.infer(h + x.tobytes(), len(h), i)
    assert sorted(plane._layouts) == sorted([binary, text])
    for i, (h, x) in sent.items():
        reply = answers[i]
        assert isinstance(reply, tuple), reply
        body, json_length = reply
        if h == binary:
            assert json_length is not None and body[json_length:] == x.tobytes(), i
        else:
            assert json_length is None, i
            (output,) = json.loads(body)["outputs"]
            assert output["data"] == x.ravel().tolist(), i


class _Echo:
    """A backend returning its input: ``x: [-1, 2]`` FP32 -> ``y``."""

    platform = "test"
    inputs = [TensorSpec(name="x", datatype=Datatype.FP32, shape=[-1, 2])]
    outputs = [TensorSpec(name="y", datatype=Datatype.FP32, shape=[-1, 2])]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}
