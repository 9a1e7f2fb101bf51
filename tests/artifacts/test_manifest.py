# SPDX-License-Identifier: Apache-2.0
"""The content address: what changes the converted bytes changes the key, nothing else does."""

from __future__ import annotations

import pytest

from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.manifest import TargetOptions, artifact_key, checkpoint_graph
from inferplane.devices import ArtifactFormat, DeviceClass

SHA = "ab" * 32
X = TensorSpec.parse("x:-1,1,32,32:FP32")
CKPT = ArtifactFormat.MINDSPORE_CHECKPOINT


def key(source_format: ArtifactFormat, network: str | None, *inputs: TensorSpec) -> str:
    options = TargetOptions(
        format=ArtifactFormat.ONNX,
        device_class=DeviceClass.CPU,
        **checkpoint_graph(source_format, network, inputs),
    )
    return artifact_key(SHA, options)


def test_a_checkpoint_exported_through_other_code_is_another_artifact() -> None:
    base = key(CKPT, "network:lenet5", X)
    assert key(CKPT, "network:lenet5", X) == base
    assert key(CKPT, "network:lenet5_wide", X) != base
    assert key(CKPT, "network:lenet5", TensorSpec.parse("x:-1,3,32,32:FP32")) != base
    assert key(CKPT, "network:lenet5", TensorSpec.parse("image:-1,1,32,32:FP32")) != base


@pytest.mark.parametrize("source_format", [ArtifactFormat.ONNX, ArtifactFormat.MINDIR])
def test_formats_that_carry_their_graph_ignore_network_and_signature(
    source_format: ArtifactFormat,
) -> None:
    assert key(source_format, None) == key(source_format, "network:lenet5", X)


def test_key_names_format_class_and_product() -> None:
    options = TargetOptions(
        format=ArtifactFormat.TENSORRT, device_class=DeviceClass.NVIDIA, product="A100-SXM4-40GB"
    )
    assert artifact_key(SHA, options).startswith("tensorrt-nvidia-a100-sxm4-40gb-")
    assert artifact_key(SHA, options) != artifact_key(
        SHA, options.model_copy(update={"product": "T4"})
    )
