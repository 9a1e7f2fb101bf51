# SPDX-License-Identifier: Apache-2.0
"""MindSpore already running in the process: the same device is fine, another a clear error."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np, mindspore as ms
from inferplane import errors, mindspore_runtime
x = ms.Tensor(np.ones((2, 2), np.float32))
assert (x + x).asnumpy().sum() == 8  # the runtime starts, on MindSpore's default device
try:
    ms.set_device("CPU")
except RuntimeError:
    print("mindspore refuses set_device now")
mindspore_runtime.use_device(ms, "CPU")
print("CPU again: ok")
try:
    mindspore_runtime.use_device(ms, "Ascend")
except errors.BackendError as exc:
    print("Ascend:", exc)
"""


def test_a_process_that_ran_mindspore_first() -> None:
    # A process of its own: MindSpore's device is fixed once its first kernel ran.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "mindspore refuses set_device now" in lines
    assert "CPU again: ok" in lines
    assert (
        "Ascend: MindSpore already runs on CPU in this process and cannot switch to Ascend; "
        "run inferplane in a process of its own"
    ) in lines
