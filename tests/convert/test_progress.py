# SPDX-License-Identifier: Apache-2.0
"""Progress lines: plain for logs, rich marks on a terminal, durations kept, failures shown."""

from __future__ import annotations

import io

import pytest

from inferplane.convert import progress


def test_plain_lines_and_timings() -> None:
    out = io.StringIO()
    rep = progress.Reporter(out)
    assert rep.rich is False, "a StringIO is not a terminal"
    with rep.step("export onnx"):
        pass
    with pytest.raises(RuntimeError), rep.step("verify parity"):
        raise RuntimeError("boom")
    lines = out.getvalue().splitlines()
    assert lines[0] == "inferplane: export onnx ..."
    assert lines[1].startswith("inferplane: export onnx: done in ")
    assert lines[3].startswith("inferplane: verify parity: failed after ")
    assert list(rep.timings) == ["export onnx"]


def test_rich_marks() -> None:
    out = io.StringIO()
    rep = progress.Reporter(out, rich=True)
    with rep.step("store upload"):
        pass
    rep.note("store hit")
    text = out.getvalue()
    assert "✓ store upload: done in" in text and "✓ store hit" in text
    assert "inferplane:" not in text
