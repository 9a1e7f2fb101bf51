# SPDX-License-Identifier: Apache-2.0
"""MindSpore's process-wide set-up, shared by conversion (export) and serving (its backend).

MindSpore fixes its device when the first kernel runs: ``set_device`` afterwards raises, even
with the device already in use. A process that ran MindSpore before inferplane asked (a
notebook, a training script calling ``inferplane.local``, a test) keeps working here as long as
it runs on the device wanted; another device is a clear error, not MindSpore's traceback.
"""

from __future__ import annotations

from typing import Any

from inferplane import errors


def use_device(ms: Any, target: str) -> None:
    """Run MindSpore on ``target`` ("CPU", "GPU", "Ascend") in GRAPH mode."""
    running = ms.get_context("device_target")
    try:
        ms.set_device(target)
    except RuntimeError:
        if running != target:
            raise errors.BackendError(
                f"MindSpore already runs on {running} in this process and cannot switch to "
                f"{target}; run inferplane in a process of its own"
            ) from None
    ms.set_context(mode=ms.GRAPH_MODE)
