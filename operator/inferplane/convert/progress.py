# SPDX-License-Identifier: Apache-2.0
"""Progress of a conversion on stderr: a rich spinner per step on a terminal, plain lines
otherwise (Job logs, CI). Every step's duration is kept for the benchmark and ``--json``."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import IO, Any


class Reporter:
    """Prints steps as they start and end, and records their durations in ``timings``."""

    def __init__(self, stream: IO[str] | None = None, *, rich: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.rich = self.stream.isatty() if rich is None else rich
        self.timings: dict[str, float] = {}
        self._console: Any = None
        if self.rich:
            from rich.console import Console

            self._console = Console(file=self.stream)

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        status = self._console.status(label) if self._console else contextlib.nullcontext()
        if not self._console:
            self._line(f"{label} ...")
        try:
            with status:
                yield
        except BaseException:
            self._line(f"{label}: failed after {time.perf_counter() - start:.2f} s", ok=False)
            raise
        elapsed = time.perf_counter() - start
        self.timings[label] = self.timings.get(label, 0.0) + elapsed
        self._line(f"{label}: done in {elapsed:.2f} s")

    def note(self, text: str) -> None:
        self._line(text)

    def _line(self, text: str, *, ok: bool = True) -> None:
        if self._console:
            mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
            self._console.print(f"{mark} {text}", highlight=False)
        else:
            print(f"inferplane: {text}", file=self.stream, flush=True)


class Silent(Reporter):
    """A reporter that prints nothing (library use); timings are still recorded."""

    def __init__(self) -> None:
        super().__init__(stream=sys.stderr, rich=False)

    def _line(self, text: str, *, ok: bool = True) -> None:
        return None
