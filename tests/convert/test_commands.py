# SPDX-License-Identifier: Apache-2.0
"""Command lines of the tools that are absent here, checked flag by flag against their docs,
and the error a user gets when a tool is missing (the tool never pretends to run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from inferplane import cli, errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts import uris
from inferplane.convert import commands, pipeline, target, tools
from inferplane.devices import ArtifactFormat

X = TensorSpec.parse("x:-1,1,32,32:FP32")
FIXED = TensorSpec.parse("x:4,3,224,224:FP32")


def test_atc_from_onnx_with_a_dynamic_batch() -> None:
    argv = commands.atc_argv(
        model=Path("/w/model.onnx"),
        source_format=ArtifactFormat.ONNX,
        output=Path("/w/out/model"),
        soc_version="Ascend310P3",
        inputs=[X],
        batch_sizes=commands.atc_batch_sizes((1, 8, 32)),
    )
    assert argv == [
        "atc",
        "--model=/w/model.onnx",
        "--framework=5",
        "--output=/w/out/model",
        "--soc_version=Ascend310P3",
        "--input_format=NCHW",
        "--input_shape=x:-1,1,32,32",
        "--dynamic_batch_size=1,2,4,8,16,32",
        "--precision_mode=force_fp32",
    ]


def test_atc_from_air_static_fp16() -> None:
    argv = commands.atc_argv(
        model=Path("m.air"),
        source_format=ArtifactFormat.AIR,
        output=Path("m"),
        soc_version="Ascend310",
        inputs=[FIXED],
        precision="fp16",
    )
    assert "--framework=1" in argv
    assert "--input_shape=x:4,3,224,224" in argv
    assert not any(a.startswith("--dynamic_batch_size") for a in argv)
    assert argv[-1] == "--precision_mode=force_fp16"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"soc_version": ""}, "SoC version"),
        ({"source_format": ArtifactFormat.MINDIR}, "ONNX or AIR"),
        ({"batch_sizes": ()}, "batch sizes"),
    ],
)
def test_atc_refuses(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "model": Path("m.onnx"),
        "source_format": ArtifactFormat.ONNX,
        "output": Path("m"),
        "soc_version": "Ascend310P3",
        "inputs": [X],
        "batch_sizes": (1, 8),
    }
    with pytest.raises(errors.InferplaneError, match=message):
        commands.atc_argv(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("batch", "sizes"), [((1, 8, 32), [1, 2, 4, 8, 16, 32]), ((4, 6, 20), [4, 6, 8, 16, 20])]
)
def test_atc_batch_profile(batch: tuple[int, int, int], sizes: list[int]) -> None:
    assert commands.atc_batch_sizes(batch) == sizes


def test_trtexec_profile_and_fp16() -> None:
    argv = commands.trtexec_argv(
        onnx=Path("m.onnx"),
        engine=Path("m.plan"),
        inputs=[X, TensorSpec.parse("mask:-1,10:INT64")],
        batch=(1, 8, 32),
        precision="fp16",
    )
    assert argv == [
        "trtexec",
        "--onnx=m.onnx",
        "--saveEngine=m.plan",
        "--minShapes=x:1x1x32x32,mask:1x10",
        "--optShapes=x:8x1x32x32,mask:8x10",
        "--maxShapes=x:32x1x32x32,mask:32x10",
        "--fp16",
        "--skipInference",
    ]


def test_trtexec_static_model_has_no_profile() -> None:
    argv = commands.trtexec_argv(
        onnx=Path("m.onnx"), engine=Path("e"), inputs=[FIXED], batch=(1, 1, 1)
    )
    assert argv == ["trtexec", "--onnx=m.onnx", "--saveEngine=e", "--skipInference"]


def test_converter_lite() -> None:
    assert commands.converter_lite_argv(
        model=Path("m.mindir"), source_format=ArtifactFormat.MINDIR, output=Path("out/m")
    ) == [
        "converter_lite",
        "--fmk=MINDIR",
        "--modelFile=m.mindir",
        "--outputFile=out/m",
        "--fp16=off",
    ]
    argv = commands.converter_lite_argv(
        model=Path("m.onnx"),
        source_format=ArtifactFormat.ONNX,
        output=Path("m"),
        inputs=[X],
        batch=1,
        precision="fp16",
    )
    assert argv[1] == "--fmk=ONNX"
    assert "--inputShape=x:1,1,32,32" in argv and argv[-1] == "--fp16=on"
    with pytest.raises(errors.ConversionError, match="MindIR or ONNX"):
        commands.converter_lite_argv(
            model=Path("m"), source_format=ArtifactFormat.AIR, output=Path("o")
        )


def test_convert_argv_is_accepted_by_the_real_cli() -> None:
    """What a conversion Job runs parses with ``inferplane convert``'s own options."""
    argv = commands.convert_argv(
        source="s3://models/lenet.ckpt",
        source_format=ArtifactFormat.MINDSPORE_CHECKPOINT,
        target=ArtifactFormat.TENSORRT,
        store="s3://artifacts/prod",
        network="network:lenet5",
        inputs=[X],
        device_spec="A100-SXM4-40GB",
        precision="fp16",
        batch=(1, 8, 32),
        validation="s3://models/val.npz",
        max_accuracy_drop=0.02,
        samples=4,
        as_json=True,
    )
    assert argv[:2] == ["inferplane", "convert"]
    command = cli.main.commands["convert"]
    ctx = command.make_context("convert", argv[2:])
    req = pipeline.request_from_options(ctx.params)
    assert req.target is ArtifactFormat.TENSORRT
    assert req.inputs == (X,)
    assert req.batch == (1, 8, 32)
    assert req.device_spec == "A100-SXM4-40GB"
    assert req.max_accuracy_drop == 0.02 and req.samples == 4
    assert ctx.params["as_json"] is True


@pytest.mark.parametrize(
    ("target", "tool", "image"),
    [(ArtifactFormat.OM, "atc", "ascend"), (ArtifactFormat.MS, "converter_lite", "edge")],
)
def test_missing_tool_fails_at_once(
    tmp_path: Path, target: ArtifactFormat, tool: str, image: str
) -> None:
    if shutil.which(tool):
        pytest.skip(f"{tool} is installed here")
    model = tmp_path / "in" / "m.onnx"
    model.parent.mkdir()
    model.write_bytes(b"never read: the tool check comes first")
    req = pipeline.Request(
        source=str(model),
        source_format=ArtifactFormat.ONNX,
        target=target,
        store=str(tmp_path / "store"),
        device_spec="Ascend310P3",
    )
    with pytest.raises(errors.ToolMissing) as info:
        pipeline.convert(req)
    assert tool in str(info.value) and f"'{image}' image" in str(info.value)
    assert not (tmp_path / "store").exists()


def test_tensorrt_missing_names_both_ways(tmp_path: Path) -> None:
    if shutil.which("trtexec"):
        pytest.skip("trtexec is installed here")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(
        errors.ToolMissing, match=r"trtexec is not installed.*'nvidia' image.*tensorrt"
    ):
        tools.check_available(ArtifactFormat.TENSORRT)


def test_tool_failure_shows_command_and_output(tmp_path: Path) -> None:
    """``tools.run`` on a real program that fails: the message has the command and its output."""
    with pytest.raises(errors.ConversionError) as info:
        tools.run([shutil.which("sh") or "/bin/sh", "-c", "echo no soc_version >&2; exit 3"])
    assert "status 3" in str(info.value) and "no soc_version" in str(info.value)
    with pytest.raises(errors.ToolMissing, match="atc"):
        tools.run([os.fspath(tmp_path / "atc"), "--version"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source_format": ArtifactFormat.MINDIR, "target": ArtifactFormat.ONNX}, "cannot convert"),
        ({"network": None}, "--network"),
        ({"inputs": ()}, "input signature"),
        ({"precision": "fp16"}, "fp16 applies"),
        ({"target": ArtifactFormat.OM}, "SoC version"),
        ({"target": ArtifactFormat.TENSORRT}, "GPU product"),
        ({"batch": (4, 2, 8)}, "min <= opt <= max"),
    ],
)
def test_request_mistakes(changes: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "source": "lenet.ckpt",
        "source_format": ArtifactFormat.MINDSPORE_CHECKPOINT,
        "target": ArtifactFormat.ONNX,
        "store": "/tmp/never-written",
        "network": "network:lenet5",
        "inputs": (X,),
    }
    with pytest.raises(errors.SpecError, match=message):
        pipeline.Request(**{**base, **changes}).check()  # type: ignore[arg-type]


def test_batch_option() -> None:
    assert target.parse_batch("1,8,32") == (1, 8, 32)
    for bad in ("1,8", "a,b,c"):
        with pytest.raises(errors.SpecError, match="--batch"):
            target.parse_batch(bad)
    assert uris.local_path("s3://b/k") is None
