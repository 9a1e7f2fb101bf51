# SPDX-License-Identifier: Apache-2.0
"""The dynamic batcher: queue requests, merge compatible ones along the batch dimension, split.

A flush takes the oldest request and every queued request that agrees with it on all but the
first dimension, up to ``max_batch_size`` rows. While fewer rows are queued it waits at most
``max_delay_s`` (counted from the oldest request's arrival); with no delay it runs on the next
loop turn, so whatever arrived in the same turn joins. After a batch that merged several
requests, it first lets the loop poll the sockets once more: the clients just answered are
sending their next requests, and those join this batch rather than start the next (closed-loop
clients at c=8: 7.9 requests per batch instead of 4.2, and about a fifth less CPU per
request). A lone client's request never waits for that poll. The batch runs either inline on
the event loop (models that take microseconds: a thread hop would cost more than the model)
or on one worker thread, while the loop keeps parsing the next requests; one batch runs at a
time.

No future or task per request: each request carries an opaque token, and a batch's outcome goes
to ``deliver(tokens, rows, outcome)`` once, for all its requests: the merged outputs, of which
each request owns its rows in turn, or the error they all get. That is a fraction of the cost
of chaining futures or splitting the outputs here, which matters when the model itself takes
microseconds.

Isolation: only requests with the same batch key merge (the data plane merges only models whose
inputs all share the first dimension, and refuses a request whose inputs disagree on it), and
a merged call that fails is re-run request by request, so that only the request that caused the
failure gets an error and its neighbours their answers.

The queue is bounded twice: by requests (``max_queue``) and by the bytes of their bodies
(``max_queue_bytes``); past either, a request is refused (503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import Executor
from time import perf_counter
from typing import Any

import numpy as np

from inferplane import errors
from inferplane.serving.metrics import Metrics

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Merge = Callable[[list[Any]], dict[str, np.ndarray]]
"""The model's inputs for a batch: its requests' payloads (in order), merged along the first
dimension (a batch of one: that request's inputs)."""
Outcome = dict[str, np.ndarray] | errors.InferplaneError
Deliver = Callable[[list[Any], list[int], Outcome], None]
"""A batch's requests (their tokens, in order), the rows of each, and the batch's outcome."""


class _Item:
    """One queued request. A plain class, not a dataclass: compiled (setup.py), a dataclass is
    a Python class again, built and read through Python attribute lookups."""

    __slots__ = ("alone", "enqueued", "key", "payload", "rows", "size", "token")

    def __init__(
        self, payload: Any, rows: int, key: tuple[Any, ...], token: Any, enqueued: float, size: int
    ) -> None:
        self.payload = payload
        """The request's inputs, in whatever form ``merge`` takes."""
        self.rows = rows
        self.key = key
        self.token = token
        self.enqueued = enqueued
        self.size = size
        """The request's bytes (its body), counted against the queue's byte budget."""
        self.alone = False
        """Run unmerged: its merged batch failed, and it is re-run alone to find the culprit."""


def batch_key(inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """What two requests must share to be merged: names, dtypes and all dims but the first.

    The dtype object itself (equal and hashed alike for aliases such as ``l`` and ``q``), not
    ``dtype.str``, which builds a new string on each call: this runs once per JSON request.
    """
    if len(inputs) == 1:
        for name, a in inputs.items():
            return ((name, a.dtype, a.shape[1:]),)
    return tuple(sorted(((name, a.dtype, a.shape[1:]) for name, a in inputs.items()), key=_name))


def _name(part: tuple[Any, ...]) -> str:
    return str(part[0])


def concatenate(payloads: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The default ``Merge``: payloads are the inputs themselves, as arrays."""
    if len(payloads) == 1:
        return payloads[0]
    return {name: np.concatenate([p[name] for p in payloads]) for name in payloads[0]}


class Batcher:
    def __init__(
        self,
        run: Run,
        deliver: Deliver,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        max_queue_bytes: int,
        metrics: Metrics,
        executor: Executor | None,
        merge: Merge = concatenate,
    ) -> None:
        self._run = run
        self._merge = merge
        self._deliver = deliver
        self._max_rows = max_batch_size
        self._max_delay = max_delay_s
        self._max_queue = max_queue
        self._max_bytes = max_queue_bytes
        self._bytes = 0
        self._metrics = metrics
        self._executor = executor
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[_Item] = collections.deque()
        self._rows = 0
        self._pending: asyncio.Handle | asyncio.TimerHandle | None = None
        """The scheduled flush (next loop turn, or when the oldest request's delay ends)."""
        self._waiting_for_more = False
        """The scheduled flush waits out the delay: a full batch should not."""
        self._busy = False
        """A batch is running on the worker thread; the next flush follows its end."""
        self._merged = False
        """The last batch merged several requests: the next flush waits for one more poll."""
        self._stopped = False

    def submit(self, payload: Any, rows: int, key: Any, token: Any, size: int) -> None:
        """Queue one request (``key``: its ``batch_key``, ``size``: its bytes); its outcome goes
        to ``deliver``. One request alone is always queued, whatever its size (the body limit
        bounds it), so that the byte budget can never refuse every request."""
        if self._stopped:
            raise errors.Unavailable("the server is stopping")
        if len(self._queue) >= self._max_queue:
            raise errors.Unavailable(f"queue full ({self._max_queue} requests waiting); retry")
        if self._queue and self._bytes + size > self._max_bytes:
            raise errors.Unavailable(
                f"queue full ({self._bytes} bytes waiting, the budget is {self._max_bytes}); retry"
            )
        self._queue.append(_Item(payload, rows, key, token, perf_counter(), size))
        self._rows += rows
        self._bytes += size
        self._metrics.queue_depth = len(self._queue)
        if self._busy:
            return
        pending = self._pending
        if pending is None:
            self._schedule()
        elif self._waiting_for_more and self._rows >= self._max_rows:
            pending.cancel()  # a full batch need not wait out the delay
            self._waiting_for_more = False
            self._pending = self._loop.call_soon(self._flush)

    def stop(self) -> None:
        """Refuse new requests and fail every queued one (a running batch still delivers)."""
        self._stopped = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
            self._waiting_for_more = False
        queued = list(self._queue)
        self._queue.clear()
        if queued:
            stopping = errors.Unavailable("the server is stopping")
            self._deliver([i.token for i in queued], [i.rows for i in queued], stopping)
        self._rows = 0
        self._bytes = 0
        self._metrics.queue_depth = 0

    def _schedule(self) -> None:
        if not self._queue or self._stopped:
            return
        left = 0.0
        if self._max_delay > 0 and self._rows < self._max_rows:
            left = self._queue[0].enqueued + self._max_delay - perf_counter()
        self._waiting_for_more = left > 0
        if left > 0:
            self._pending = self._loop.call_later(left, self._flush)
        else:
            self._pending = self._loop.call_soon(
                self._poll_then_flush if self._merged else self._flush
            )

    def _poll_then_flush(self) -> None:
        """Flush on the turn after this one, so that the loop polls the sockets in between."""
        self._pending = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._pending = None
        self._waiting_for_more = False
        batch = self._take()
        self._merged = len(batch) > 1
        started = perf_counter()
        self._metrics.queue_seconds.observe_ages(started, [i.enqueued for i in batch])
        try:
            inputs = self._merge([i.payload for i in batch])
            if self._executor is None:
                results = self._run(inputs)
        except Exception as exc:
            self._finish(batch, started, _backend_error(exc))
            return
        if self._executor is None:
            self._finish(batch, started, results)
            return
        self._busy = True
        running = self._loop.run_in_executor(self._executor, self._run, inputs)
        running.add_done_callback(lambda done: self._finished(batch, started, done))

    def _finished(self, batch: list[_Item], started: float, done: asyncio.Future[Any]) -> None:
        self._busy = False
        if done.cancelled():
            self._finish(batch, started, errors.Unavailable("the server is stopping"))
        elif (exc := done.exception()) is not None:
            self._finish(batch, started, _backend_error(exc))
        else:
            self._finish(batch, started, done.result())

    def _take(self) -> list[_Item]:
        first = self._queue.popleft()
        batch = [first]
        rows = first.rows
        size = first.size
        kept: list[_Item] = []
        while self._queue and rows < self._max_rows and not first.alone:
            item = self._queue.popleft()
            if item.key == first.key and rows + item.rows <= self._max_rows and not item.alone:
                batch.append(item)
                rows += item.rows
                size += item.size
            else:
                kept.append(item)
        self._queue.extendleft(reversed(kept))
        self._rows -= rows
        self._bytes -= size
        self._metrics.queue_depth = len(self._queue)
        return batch

    def _finish(self, batch: list[_Item], started: float, outcome: Outcome) -> None:
        """Hand the batch's requests their outcome, then schedule the next batch. A merged
        batch that failed goes back to the head of the queue, each request to run alone."""
        if isinstance(outcome, errors.InferplaneError) and len(batch) > 1 and not self._stopped:
            for item in reversed(batch):
                item.alone = True
                self._queue.appendleft(item)
                self._rows += item.rows
                self._bytes += item.size
            self._metrics.retried += len(batch)
            self._metrics.queue_depth = len(self._queue)
        elif len(batch) == 1:
            item = batch[0]
            if not isinstance(outcome, errors.InferplaneError):
                self._metrics.compute_seconds.observe(perf_counter() - started)
                self._metrics.batch_size.observe(item.rows)
            self._deliver([item.token], [item.rows], outcome)
        else:
            rows = [i.rows for i in batch]
            if not isinstance(outcome, errors.InferplaneError):
                self._metrics.compute_seconds.observe(perf_counter() - started)
                self._metrics.batch_size.observe(sum(rows))
            self._deliver([i.token for i in batch], rows, outcome)
        if self._pending is None:
            self._schedule()


def _backend_error(exc: BaseException) -> errors.InferplaneError:
    """The error every request of a failed batch gets."""
    if isinstance(exc, errors.InferplaneError):
        return exc
    return errors.BackendError(f"backend failed: {exc}")
