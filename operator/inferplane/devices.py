# SPDX-License-Identifier: Apache-2.0
"""The device-class vocabulary used everywhere: spec, labels, metrics, docs (DESIGN.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DeviceClass(str, enum.Enum):
    """A kind of hardware a model can be served on, best first in ``PREFERENCE``."""

    ASCEND910 = "ascend910"
    ASCEND310 = "ascend310"
    NVIDIA = "nvidia"
    CPU = "cpu"
    EDGE = "edge"

    def __str__(self) -> str:
        return self.value


class ArtifactFormat(str, enum.Enum):
    """A model file format, as a source or as a conversion target."""

    MINDSPORE_CHECKPOINT = "mindspore-checkpoint"
    MINDIR = "mindir"
    ONNX = "onnx"
    AIR = "air"
    OM = "om"
    TENSORRT = "tensorrt"
    MS = "ms"

    def __str__(self) -> str:
        return self.value


class BackendName(str, enum.Enum):
    """A serving backend (``serving/backends/<name>.py``)."""

    ONNXRUNTIME = "onnxruntime"
    MINDSPORE = "mindspore"
    TENSORRT = "tensorrt"
    ACL = "acl"
    MSLITE = "mslite"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class DeviceProfile:
    """What one device class needs: resources to request, how nodes show it, what it serves."""

    device_class: DeviceClass
    resources: tuple[str, ...]
    """Extended resource names that carry this class (first is the one requested by default)."""
    artifacts: tuple[ArtifactFormat, ...]
    """Artifact formats this class serves, best first."""
    backends: tuple[BackendName, ...]
    """Backends that can serve it, in the order of ``artifacts``."""
    image: str
    """The runtime image (``runtime-images/<image>``) with this class's backends."""


PROFILES: dict[DeviceClass, DeviceProfile] = {
    DeviceClass.ASCEND910: DeviceProfile(
        DeviceClass.ASCEND910,
        ("huawei.com/Ascend910",),
        (ArtifactFormat.MINDIR,),
        (BackendName.MINDSPORE,),
        "mindspore",
    ),
    DeviceClass.ASCEND310: DeviceProfile(
        DeviceClass.ASCEND310,
        ("huawei.com/Ascend310P", "huawei.com/Ascend310"),
        (ArtifactFormat.OM,),
        (BackendName.ACL,),
        "ascend",
    ),
    DeviceClass.NVIDIA: DeviceProfile(
        DeviceClass.NVIDIA,
        ("nvidia.com/gpu",),
        (ArtifactFormat.TENSORRT, ArtifactFormat.ONNX),
        (BackendName.TENSORRT, BackendName.ONNXRUNTIME),
        "nvidia",
    ),
    DeviceClass.CPU: DeviceProfile(
        DeviceClass.CPU,
        (),
        (ArtifactFormat.ONNX, ArtifactFormat.MINDIR),
        (BackendName.ONNXRUNTIME, BackendName.MINDSPORE),
        "cpu",
    ),
    DeviceClass.EDGE: DeviceProfile(
        DeviceClass.EDGE,
        (),
        (ArtifactFormat.MS,),
        (BackendName.MSLITE,),
        "edge",
    ),
}

PREFERENCE: tuple[DeviceClass, ...] = (
    DeviceClass.ASCEND910,
    DeviceClass.ASCEND310,
    DeviceClass.NVIDIA,
    DeviceClass.CPU,
    DeviceClass.EDGE,
)
"""The order ``devices: [auto]`` uses: dedicated accelerators first, CPU, then edge."""

BACKEND_FOR_FORMAT: dict[ArtifactFormat, BackendName] = {
    ArtifactFormat.ONNX: BackendName.ONNXRUNTIME,
    ArtifactFormat.MINDIR: BackendName.MINDSPORE,
    ArtifactFormat.MINDSPORE_CHECKPOINT: BackendName.MINDSPORE,
    ArtifactFormat.TENSORRT: BackendName.TENSORRT,
    ArtifactFormat.OM: BackendName.ACL,
    ArtifactFormat.MS: BackendName.MSLITE,
}
"""The backend that serves each artifact format (``serve --backend auto``)."""
