# SPDX-License-Identifier: Apache-2.0
"""The batcher's queue bounds and failure isolation, on a real event loop, without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from inferplane import errors
from inferplane.serving.batching import Batcher, Outcome, batch_key
from inferplane.serving.metrics import Metrics


def _batcher(run: Any, outcomes: dict[Any, Outcome], **limits: int) -> Batcher:
    """A batcher that records each request's own outcome: its rows of a batch's outputs."""
    settings = {"max_batch_size": 8, "max_queue": 100, "max_queue_bytes": 1 << 20, **limits}

    def deliver(tokens: list[Any], rows: list[int], outcome: Outcome) -> None:
        start = 0
        for token, n in zip(tokens, rows, strict=True):
            own = outcome
            if not isinstance(outcome, errors.InferplaneError):
                own = {name: a[start : start + n] for name, a in outcome.items()}
            outcomes[token] = own
            start += n

    return Batcher(
        run,
        deliver,
        max_delay_s=0.0,
        metrics=Metrics("m"),
        executor=None,
        **settings,
    )


def test_the_queue_refuses_past_its_byte_budget() -> None:
    async def scenario() -> dict[Any, Outcome]:
        outcomes: dict[Any, Outcome] = {}
        batcher = _batcher(lambda i: i, outcomes, max_queue_bytes=150)
        x = {"x": np.ones((1, 2), np.float32)}
        batcher.submit(x, 1, batch_key(x), "first", 100)  # an empty queue takes any size
        with pytest.raises(errors.Unavailable, match="budget is 150"):
            batcher.submit(x, 1, batch_key(x), "second", 100)
        batcher.submit(x, 1, batch_key(x), "small", 50)
        await asyncio.sleep(0.01)
        batcher.submit(x, 1, batch_key(x), "after", 100)  # the queue has drained
        await asyncio.sleep(0.01)
        return outcomes

    outcomes = asyncio.run(scenario())
    assert sorted(outcomes) == ["after", "first", "small"]


def test_a_failed_merged_batch_is_rerun_request_by_request() -> None:
    calls: list[int] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        calls.append(len(x))
        if (x < 0).any():
            raise errors.ProtocolError("negative")
        return {"y": x * 2}

    async def scenario() -> dict[Any, Outcome]:
        outcomes: dict[Any, Outcome] = {}
        batcher = _batcher(run, outcomes)
        for token, value in (("a", 1.0), ("bad", -1.0), ("c", 3.0)):
            x = {"x": np.full((1, 2), value, np.float32)}
            batcher.submit(x, 1, batch_key(x), token, 8)
        await asyncio.sleep(0.05)
        return outcomes

    outcomes = asyncio.run(scenario())
    assert calls == [3, 1, 1, 1], "merged once, then each request alone"
    assert isinstance(outcomes["bad"], errors.ProtocolError)
    np.testing.assert_array_equal(outcomes["a"]["y"], [[2.0, 2.0]])  # type: ignore[index]
    np.testing.assert_array_equal(outcomes["c"]["y"], [[6.0, 6.0]])  # type: ignore[index]


def test_after_a_merged_batch_the_next_waits_one_poll_for_the_clients_it_answered() -> None:
    """A request queued while the loop polls once more (here: a callback queued behind the
    flush's scheduling) joins the batch after a merged one; a lone client's never waits."""
    calls: list[int] = []

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"]}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        batcher = _batcher(run, {})
        x = {"x": np.ones((1, 2), np.float32)}

        def submit(token: str) -> None:
            batcher.submit(x, 1, batch_key(x), token, 8)

        submit("lone")
        loop.call_soon(submit, "late for the lone one")
        await asyncio.sleep(0.01)
        assert calls == [1, 1], "no merged batch yet: each flush ran on the next turn"
        submit("a")
        submit("b")
        await asyncio.sleep(0.01)
        assert calls[-1] == 2
        submit("c")
        loop.call_soon(submit, "d")  # arrives during the extra poll
        await asyncio.sleep(0.01)
        assert calls[-1] == 2, f"c and d merged after a merged batch: {calls}"

    asyncio.run(scenario())
