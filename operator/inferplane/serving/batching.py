# SPDX-License-Identifier: Apache-2.0
"""The dynamic batcher: queue requests, merge compatible ones along the batch dimension, split.

One worker coroutine takes the oldest request and every queued request that agrees with it on
all but the first dimension, up to ``max_batch_size`` rows. If fewer rows are queued it waits at
most ``max_delay_s`` (counted from the oldest request's arrival) for more. It then runs the batch
either inline on the event loop (models that take microseconds: a thread hop would cost more
than the model) or on one worker thread, while the loop keeps parsing the next requests.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.serving.metrics import Metrics

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(slots=True)
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple[Any, ...]
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float


def batch_key(inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """What two requests must share to be merged: names, dtypes and all dims but the first."""
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items()))


class Batcher:
    def __init__(
        self,
        run: Run,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        metrics: Metrics,
        executor: Executor | None,
    ) -> None:
        self._run = run
        self._max_rows = max_batch_size
        self._max_delay = max_delay_s
        self._max_queue = max_queue
        self._metrics = metrics
        self._executor = executor
        self._queue: collections.deque[_Item] = collections.deque()
        self._rows = 0
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting_for_more = False
        """The worker is waiting out ``max_delay_s``: only a full batch should wake it early."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def submit(
        self, inputs: dict[str, np.ndarray], rows: int
    ) -> asyncio.Future[dict[str, np.ndarray]]:
        """Queue one request; its outputs (its own rows) arrive in the future returned."""
        if len(self._queue) >= self._max_queue:
            raise errors.Unavailable(f"queue full ({self._max_queue} requests waiting); retry")
        loop = asyncio.get_running_loop()
        item = _Item(inputs, rows, batch_key(inputs), loop.create_future(), time.perf_counter())
        self._queue.append(item)
        self._rows += rows
        self._metrics.queue_depth = len(self._queue)
        wake = self._wake
        if (
            wake is not None
            and not wake.done()
            and (self._rows >= self._max_rows or not self._waiting_for_more)
        ):
            wake.set_result(None)
        return item.future

    async def _sleep(self, timeout: float | None) -> None:
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._wake, timeout)
        except TimeoutError:
            pass
        finally:
            self._wake = None

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._waiting_for_more = False
                await self._sleep(None)
                continue
            if self._max_delay > 0 and self._rows < self._max_rows:
                left = self._queue[0].enqueued + self._max_delay - time.perf_counter()
                if left > 0:
                    self._waiting_for_more = True
                    await self._sleep(left)
                    self._waiting_for_more = False
            batch = self._take()
            await self._execute(batch)

    def _take(self) -> list[_Item]:
        first = self._queue.popleft()
        batch = [first]
        rows = first.rows
        kept: list[_Item] = []
        while self._queue and rows < self._max_rows:
            item = self._queue.popleft()
            if item.key == first.key and rows + item.rows <= self._max_rows:
                batch.append(item)
                rows += item.rows
            else:
                kept.append(item)
        self._queue.extendleft(reversed(kept))
        self._rows -= rows
        self._metrics.queue_depth = len(self._queue)
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        queue_hist = self._metrics.queue_seconds
        for item in batch:
            queue_hist.observe(started - item.enqueued)
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {
                name: np.concatenate([i.inputs[name] for i in batch]) for name in batch[0].inputs
            }
        try:
            if self._executor is None:
                results = self._run(inputs)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(self._executor, self._run, inputs)
        except Exception as exc:  # the backend failed: every request of the batch gets it
            error = (
                exc
                if isinstance(exc, errors.InferplaneError)
                else errors.BackendError(f"backend failed: {exc}")
            )
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self._metrics.compute_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_size.observe(sum(i.rows for i in batch))
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(results)
            return
        start = 0
        for item in batch:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result({name: a[start:end] for name, a in results.items()})
            start = end
