# SPDX-License-Identifier: Apache-2.0
"""The content address: what changes the converted bytes changes the key, nothing else does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.key import TargetOptions, artifact_key, checkpoint_graph
from inferplane.artifacts.manifest import ArtifactManifest, SourceRef, Verification
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
        SHA, dataclasses.replace(options, product="T4")
    )


def test_a_signature_as_text_names_the_same_artifact_as_the_spec() -> None:
    """The store-hit fast path passes the CLI text; the pipeline and planner pass TensorSpecs."""
    assert checkpoint_graph(CKPT, "network:lenet5", ["x:-1,1,32,32:FP32"]) == checkpoint_graph(
        CKPT, "network:lenet5", [X]
    )


def _manifest(options: TargetOptions) -> ArtifactManifest:
    return ArtifactManifest(
        key=artifact_key(SHA, options),
        model="lenet",
        source=SourceRef(uri="lenet.ckpt", format=CKPT, sha256=SHA, network="network:lenet5"),
        target=options,
        files=[],
        entrypoint="model.onnx",
        inputs=[X],
        outputs=[],
        verification=Verification(verified=False, reason="test"),
    )


def test_a_manifest_holds_the_options_the_key_was_made_of(tmp_path: Path) -> None:
    options = TargetOptions(
        format=ArtifactFormat.OM,
        device_class=DeviceClass.ASCEND310,
        product="Ascend310P3",
        batch=(1, 8, 32),
        **checkpoint_graph(CKPT, "network:lenet5", [X]),
    )
    manifest = _manifest(options)
    assert manifest.model_dump(mode="json")["target"] == options.document()
    manifest.write(tmp_path)
    back = ArtifactManifest.read(tmp_path)
    assert back.target == options
    assert artifact_key(SHA, back.target) == manifest.key


@pytest.mark.parametrize(
    "change",
    [{"bogus": 1}, {"format": "exe"}, {"batch": [1, "x", 3]}, {"device_class": None}],
)
def test_a_manifest_with_bad_target_options_is_refused(
    tmp_path: Path, change: dict[str, object]
) -> None:
    _manifest(TargetOptions(format=ArtifactFormat.ONNX, device_class=DeviceClass.CPU)).write(
        tmp_path
    )
    path = tmp_path / "inferplane.json"
    document = json.loads(path.read_text())
    document["target"].update(change)
    path.write_text(json.dumps(document))
    with pytest.raises(errors.StoreError, match="target"):
        ArtifactManifest.read(tmp_path)


def test_every_spelling_of_a_product_is_one_artifact() -> None:
    """A spec, a node label and a DRA attribute that spell the same GPU differently build one
    TensorRT engine; another product is another engine."""

    def engine(product: str) -> str:
        options = TargetOptions(
            format=ArtifactFormat.TENSORRT, device_class=DeviceClass.NVIDIA, product=product
        )
        return artifact_key(SHA, options)

    one = engine("A100-SXM4-40GB")
    assert engine("NVIDIA-A100-SXM4-40GB") == one
    assert engine("NVIDIA A100-SXM4-40GB") == one
    assert engine("A100-SXM4-80GB") != one
    assert (
        TargetOptions(
            format=ArtifactFormat.OM, device_class=DeviceClass.ASCEND310, product="310P3"
        ).product
        == "Ascend310P3"
    )
