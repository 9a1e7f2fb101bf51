# SPDX-License-Identifier: Apache-2.0
"""Running the external converters (ATC, trtexec or the TensorRT builder API, converter_lite).

The command lines come from ``commands``; this module only checks that the tool is here (before
any work starts), runs it, and turns a failure into a ConversionError that shows the command
and the tail of its output.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.manifest import ToolInfo
from inferplane.convert import commands
from inferplane.devices import ArtifactFormat

TOOL_TIMEOUT_S = 3600.0


def run(argv: Sequence[str]) -> str:
    """Run a converter; its combined output, or a ConversionError with the command and output."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise errors.ToolMissing(
            argv[0], commands.IMAGE_FOR_TOOL.get(Path(argv[0]).name, "")
        ) from None
    except subprocess.TimeoutExpired:
        raise errors.ConversionError(
            f"{shlex.join(argv)} ran over {TOOL_TIMEOUT_S:.0f} s"
        ) from None
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-20:])
        raise errors.ConversionError(
            f"{Path(argv[0]).name} failed with status {done.returncode}: {shlex.join(argv)}\n{tail}"
        )
    return output


def _tensorrt_module() -> object | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt


def tensorrt_version() -> str:
    """The TensorRT version an engine will be built with (it is part of the artifact key)."""
    module = _tensorrt_module()
    if module is not None:
        return str(getattr(module, "__version__", "unknown"))
    tool = commands.require_tool(
        "trtexec", "TensorRT engines are built by trtexec or the tensorrt Python package."
    )
    banner = run([tool, "--help"])
    match = re.search(r"TensorRT v(\d+)", banner)
    if not match:
        return "unknown"
    digits = match.group(1)  # e.g. 100300 -> 10.3.0
    return (
        f"{int(digits[:-4])}.{int(digits[-4:-2])}.{int(digits[-2:])}" if len(digits) > 4 else digits
    )


def check_available(target: ArtifactFormat) -> None:
    """Fail at once, before any export, when the target's tool is not installed here."""
    if target is ArtifactFormat.OM:
        commands.require_tool("atc", "ATC is part of the Ascend CANN toolkit.")
    elif target is ArtifactFormat.MS:
        commands.require_tool("converter_lite", "converter_lite is part of MindSpore Lite.")
    elif target is ArtifactFormat.TENSORRT and _tensorrt_module() is None:
        commands.require_tool(
            "trtexec", "TensorRT engines are built by trtexec or the tensorrt Python package."
        )


def build_om(
    *,
    model: Path,
    source_format: ArtifactFormat,
    dest: Path,
    soc_version: str,
    inputs: Sequence[TensorSpec],
    batch: tuple[int, int, int],
    precision: str,
) -> ToolInfo:
    tool = commands.require_tool("atc", "ATC is part of the Ascend CANN toolkit.")
    run(
        commands.atc_argv(
            model=model,
            source_format=source_format,
            output=dest.with_suffix(""),
            soc_version=soc_version,
            inputs=inputs,
            batch_sizes=commands.atc_batch_sizes(batch),
            precision=precision,
            tool=tool,
        )
    )
    _expect(dest, "atc")
    return ToolInfo(name="atc", version=_first_version(run([tool, "--version"])))


def build_tensorrt(
    *,
    onnx: Path,
    dest: Path,
    inputs: Sequence[TensorSpec],
    batch: tuple[int, int, int],
    precision: str,
) -> ToolInfo:
    """trtexec when it is on PATH, else the TensorRT builder API (same profile, same flags)."""
    version = tensorrt_version()
    if shutil.which("trtexec"):
        run(
            commands.trtexec_argv(
                onnx=onnx, engine=dest, inputs=inputs, batch=batch, precision=precision
            )
        )
        _expect(dest, "trtexec")
        return ToolInfo(name="trtexec", version=version)
    _build_with_api(onnx=onnx, dest=dest, inputs=inputs, batch=batch, precision=precision)
    return ToolInfo(name="tensorrt", version=version)


def _build_with_api(
    *,
    onnx: Path,
    dest: Path,
    inputs: Sequence[TensorSpec],
    batch: tuple[int, int, int],
    precision: str,
) -> None:
    """The TensorRT Python builder, as its developer guide builds from ONNX (untested here)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        problems = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise errors.ConversionError(f"TensorRT cannot parse {onnx}: {problems}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for spec in inputs:
        if spec.dynamic_batch:
            low, opt, high = ([size, *spec.shape[1:]] for size in batch)
            profile.set_shape(spec.name, low, opt, high)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise errors.ConversionError(f"TensorRT could not build an engine from {onnx}")
    dest.write_bytes(bytes(engine))


def build_ms(
    *,
    model: Path,
    source_format: ArtifactFormat,
    dest: Path,
    precision: str,
) -> ToolInfo:
    tool = commands.require_tool("converter_lite", "converter_lite is part of MindSpore Lite.")
    run(
        commands.converter_lite_argv(
            model=model,
            source_format=source_format,
            output=dest.with_suffix(""),
            precision=precision,
            tool=tool,
        )
    )
    _expect(dest, "converter_lite")
    return ToolInfo(name="converter_lite", version="unknown")


def _expect(path: Path, tool: str) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise errors.ConversionError(f"{tool} reported success but wrote no {path.name}")


def _first_version(text: str) -> str:
    match = re.search(r"\d+(\.\d+)+", text)
    return match.group(0) if match else "unknown"
