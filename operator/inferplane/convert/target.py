# SPDX-License-Identifier: Apache-2.0
"""What a conversion request asks for: which formats, for which device, with which options.

``Conversion`` checks the request and turns it into the ``TargetOptions`` that name its artifact,
defaults filled in. Standard library only: the store-hit fast path (``convert.hit``) and the full
pipeline check a request and compute its key with this one class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferplane import errors
from inferplane.artifacts.key import TargetOptions, checkpoint_graph
from inferplane.convert import identity
from inferplane.devices import ArtifactFormat, DeviceClass

F = ArtifactFormat

SUPPORTED: dict[ArtifactFormat, tuple[ArtifactFormat, ...]] = {
    F.MINDSPORE_CHECKPOINT: (F.ONNX, F.MINDIR, F.OM, F.TENSORRT, F.MS),
    F.MINDIR: (F.MINDIR, F.MS),
    F.ONNX: (F.ONNX, F.OM, F.TENSORRT, F.MS),
    F.AIR: (F.OM,),
}
"""Which targets each source format converts to (MindSpore cannot export ONNX from a MindIR)."""

DEFAULT_DEVICE: dict[ArtifactFormat, DeviceClass] = {
    F.ONNX: DeviceClass.CPU,
    F.MINDIR: DeviceClass.ASCEND910,
    F.OM: DeviceClass.ASCEND310,
    F.TENSORRT: DeviceClass.NVIDIA,
    F.MS: DeviceClass.EDGE,
}
PROFILE_TARGETS = (F.OM, F.TENSORRT)
"""Targets built for a dynamic-shape profile (min, opt, max batch)."""
DEFAULT_PROFILE = (1, 8, 32)
PRECISIONS = ("fp32", "fp16")


def parse_batch(text: str | None) -> tuple[int, int, int] | None:
    """``--batch min,opt,max`` as three numbers (their order is checked by ``Conversion``)."""
    if not text:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise errors.SpecError(f"--batch '{text}': expected min,opt,max, e.g. 1,8,32") from None
    if len(values) != 3:
        raise errors.SpecError(f"--batch '{text}': expected three numbers min,opt,max")
    return values[0], values[1], values[2]


def cli_fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Conversion`` fields from ``inferplane convert``'s options (inputs as given: text)."""
    device = options.get("device")
    return {
        "source_format": ArtifactFormat(options["source_format"]),
        "target": ArtifactFormat(options["target"]),
        "network": options.get("network"),
        "inputs": tuple(options.get("inputs") or ()),
        "device_class": DeviceClass(device) if device else None,
        "device_spec": options.get("device_spec"),
        "precision": options.get("precision") or "fp32",
        "batch": parse_batch(options.get("batch")),
        "code": options.get("code_id"),
        "tool": options.get("tool_id"),
    }


@dataclass(frozen=True, kw_only=True)
class Conversion:
    """The part of a request that decides the artifact (``pipeline.Request`` adds the rest)."""

    source_format: ArtifactFormat
    target: ArtifactFormat
    network: str | None = None
    inputs: tuple[object, ...] = ()
    """TensorSpecs, or their canonical ``name:shape:TYPE`` text (see ``checkpoint_graph``)."""
    device_class: DeviceClass | None = None
    device_spec: str | None = None
    precision: str = "fp32"
    batch: tuple[int, int, int] | None = None
    code: str | None = None
    """The network code's identity as the operator names it (the ``source.image`` reference;
    ``""``: the code comes with the conversion image). None: a digest of the module's files."""
    tool: str | None = None
    """The converting tool's identity as the operator names it (the conversion image). None:
    the versions of this machine's tools (``identity.tool_identity``)."""

    def check(self) -> None:
        """Every mistake that can be seen before any work starts, as a SpecError."""
        source, target = self.source_format, self.target
        if target not in SUPPORTED[source]:
            allowed = ", ".join(t.value for t in SUPPORTED[source])
            raise errors.SpecError(
                f"cannot convert {source} to {target} (from {source}: {allowed})"
            )
        if source is F.MINDSPORE_CHECKPOINT and not self.network:
            raise errors.SpecError(
                "a checkpoint holds only weights: --network module:callable is required"
            )
        if source is not F.ONNX and not self.inputs:
            raise errors.SpecError(
                f"a {source} source needs its input signature: "
                "--input name:shape:DATATYPE, e.g. x:-1,1,32,32:FP32"
            )
        if self.precision not in PRECISIONS:
            raise errors.SpecError(f"precision '{self.precision}': one of fp32, fp16")
        if self.precision == "fp16" and target not in (F.OM, F.TENSORRT, F.MS):
            raise errors.SpecError(f"--precision fp16 applies to om, tensorrt and ms, not {target}")
        if target in PROFILE_TARGETS and not self.device_spec:
            what = (
                "the SoC version (e.g. Ascend310P3)"
                if target is F.OM
                else "the GPU product (e.g. A100-SXM4-40GB)"
            )
            raise errors.SpecError(f"{target} needs --device-spec, {what}: it runs only there")
        if self.batch is not None:
            low, opt, high = self.batch
            if not 1 <= low <= opt <= high:
                raise errors.SpecError(f"--batch {low},{opt},{high}: need 1 <= min <= opt <= max")

    @property
    def profile(self) -> tuple[int, int, int]:
        """The batch profile the target is built for (the default when none was asked)."""
        return self.batch or DEFAULT_PROFILE

    def options(self, *, code_dir: Path | None = None) -> TargetOptions:
        """The options the artifact is converted with, and so named by.

        ``code_dir``: the code that came with the source (an archive's), searched first for the
        network module when its files are digested.
        """
        code = self.code
        if code is None and self.source_format is F.MINDSPORE_CHECKPOINT and self.network:
            code = identity.code_digest(self.network, identity.search_path(code_dir))
        return TargetOptions(
            format=self.target,
            device_class=self.device_class or DEFAULT_DEVICE[self.target],
            product=self.device_spec,
            precision=self.precision,
            batch=self.profile if self.target in PROFILE_TARGETS else self.batch,
            **checkpoint_graph(self.source_format, self.network, self.inputs, code),
            tool=self.tool or identity.tool_identity(self.source_format, self.target),
        )
