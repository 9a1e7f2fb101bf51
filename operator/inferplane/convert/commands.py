# SPDX-License-Identifier: Apache-2.0
"""Pure command-line builders for every conversion tool, and the check that a tool is here.

Each builder returns the argv exactly as the tool's documentation spells it, so tests can
compare them flag by flag without the tool, and a failed run can print the command to re-run:

- ``inferplane convert`` itself (what a conversion Job runs in the MindSpore image);
- ATC (CANN): ONNX (``--framework=5``) or AIR (``--framework=1``) → OM for one ``--soc_version``;
- trtexec (TensorRT): ONNX → engine with a min/opt/max batch profile;
- converter_lite (MindSpore Lite): MindIR or ONNX → ``.ms``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.devices import ArtifactFormat

IMAGE_FOR_TOOL: dict[str, str] = {
    "atc": "ascend",
    "trtexec": "nvidia",
    "converter_lite": "edge",
    "mindspore": "mindspore",
}
"""The inferplane runtime image (``runtime-images/<image>``) that ships each tool."""

ATC_FRAMEWORK: dict[ArtifactFormat, int] = {ArtifactFormat.AIR: 1, ArtifactFormat.ONNX: 5}
LITE_FMK: dict[ArtifactFormat, str] = {ArtifactFormat.MINDIR: "MINDIR", ArtifactFormat.ONNX: "ONNX"}


def require_tool(tool: str, hint: str = "") -> str:
    """The full path of ``tool`` on PATH, or ToolMissing naming the image that has it."""
    found = shutil.which(tool)
    if found is None:
        raise errors.ToolMissing(tool, IMAGE_FOR_TOOL.get(tool, tool), hint)
    return found


def _static_dims(spec: TensorSpec, batch: int) -> list[int]:
    """The shape with the dynamic batch set to ``batch``; other dynamic dimensions are refused."""
    dims = [batch if i == 0 and d == -1 else d for i, d in enumerate(spec.shape)]
    if any(d == -1 for d in dims):
        raise errors.SpecError(
            f"input {spec}: only the first (batch) dimension may be dynamic for this tool"
        )
    return dims


def convert_argv(
    *,
    source: str,
    source_format: ArtifactFormat,
    target: ArtifactFormat,
    store: str,
    network: str | None = None,
    inputs: Sequence[TensorSpec] = (),
    device_spec: str | None = None,
    precision: str = "fp32",
    batch: tuple[int, int, int] | None = None,
    name: str | None = None,
    source_sha256: str | None = None,
    validation: str | None = None,
    max_accuracy_drop: float | None = None,
    samples: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    as_json: bool = False,
) -> list[str]:
    """``inferplane convert ...`` as a conversion Job's container command runs it."""
    argv = ["inferplane", "convert", "--source", source, "--format", source_format.value]
    if network:
        argv += ["--network", network]
    for spec in inputs:
        argv += ["--input", str(spec)]
    argv += ["--to", target.value]
    if device_spec:
        argv += ["--device-spec", device_spec]
    argv += ["--precision", precision]
    if batch:
        argv += ["--batch", ",".join(map(str, batch))]
    argv += ["--store", store]
    optional = {
        "--name": name,
        "--sha256": source_sha256,
        "--samples": samples,
        "--atol": atol,
        "--rtol": rtol,
        "--validation": validation,
        "--max-accuracy-drop": max_accuracy_drop,
    }
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, str(value)]
    if as_json:
        argv.append("--json")
    return argv


def atc_argv(
    *,
    model: Path,
    source_format: ArtifactFormat,
    output: Path,
    soc_version: str,
    inputs: Sequence[TensorSpec],
    batch_sizes: Sequence[int] = (),
    precision: str = "fp32",
    tool: str = "atc",
) -> list[str]:
    """ATC: ``--output`` is the path without ``.om`` (ATC appends it).

    A dynamic batch is ``--input_shape="x:-1,..."`` plus ``--dynamic_batch_size="1,2,4,8"``
    (ATC allows a profile of batch sizes, not a range); a static model gets its fixed shape.
    """
    if source_format not in ATC_FRAMEWORK:
        raise errors.ConversionError(f"ATC converts ONNX or AIR to OM, not {source_format}")
    if not soc_version:
        raise errors.SpecError("om needs --device-spec, the SoC version (e.g. Ascend310P3)")
    dynamic = any(s.dynamic_batch for s in inputs)
    if dynamic and not batch_sizes:
        raise errors.SpecError("a dynamic batch for ATC needs batch sizes (--batch min,opt,max)")
    shapes = ";".join(
        f"{s.name}:{','.join(map(str, [-1, *s.shape[1:]] if s.dynamic_batch else s.shape))}"
        for s in inputs
    )
    argv = [
        tool,
        f"--model={model}",
        f"--framework={ATC_FRAMEWORK[source_format]}",
        f"--output={output}",
        f"--soc_version={soc_version}",
        "--input_format=NCHW",
        f"--input_shape={shapes}",
    ]
    if dynamic:
        argv.append(f"--dynamic_batch_size={','.join(map(str, sorted(set(batch_sizes))))}")
    argv.append(f"--precision_mode={'force_fp16' if precision == 'fp16' else 'force_fp32'}")
    return argv


def atc_batch_sizes(batch: tuple[int, int, int]) -> list[int]:
    """ATC's batch profile from min,opt,max: the powers of two between, plus the three given."""
    low, opt, high = batch
    sizes = {low, opt, high}
    size = 1
    while size < high:
        if size > low:
            sizes.add(size)
        size *= 2
    return sorted(sizes)


def trtexec_argv(
    *,
    onnx: Path,
    engine: Path,
    inputs: Sequence[TensorSpec],
    batch: tuple[int, int, int],
    precision: str = "fp32",
    tool: str = "trtexec",
) -> list[str]:
    """trtexec: one optimisation profile (min/opt/max shapes) for dynamic-batch inputs."""
    argv = [tool, f"--onnx={onnx}", f"--saveEngine={engine}"]
    dynamic = [s for s in inputs if s.dynamic_batch]
    if dynamic:
        for flag, size in zip(("--minShapes", "--optShapes", "--maxShapes"), batch, strict=True):
            shapes = ",".join(
                f"{s.name}:{'x'.join(map(str, _static_dims(s, size)))}" for s in dynamic
            )
            argv.append(f"{flag}={shapes}")
    if precision == "fp16":
        argv.append("--fp16")
    argv.append("--skipInference")
    return argv


def converter_lite_argv(
    *,
    model: Path,
    source_format: ArtifactFormat,
    output: Path,
    inputs: Sequence[TensorSpec] = (),
    batch: int | None = None,
    precision: str = "fp32",
    tool: str = "converter_lite",
) -> list[str]:
    """converter_lite: ``--outputFile`` is the path without ``.ms`` (the tool appends it).

    ``--inputShape`` fixes the batch when one is given (Lite resizes at run time otherwise).
    """
    if source_format not in LITE_FMK:
        raise errors.ConversionError(f"converter_lite converts MindIR or ONNX, not {source_format}")
    argv = [
        tool,
        f"--fmk={LITE_FMK[source_format]}",
        f"--modelFile={model}",
        f"--outputFile={output}",
    ]
    if batch is not None and inputs:
        shapes = ";".join(f"{s.name}:{','.join(map(str, _static_dims(s, batch)))}" for s in inputs)
        argv.append(f"--inputShape={shapes}")
    argv.append(f"--fp16={'on' if precision == 'fp16' else 'off'}")
    return argv
