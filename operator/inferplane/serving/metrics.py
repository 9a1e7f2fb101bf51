# SPDX-License-Identifier: Apache-2.0
"""Prometheus metrics on a registry the server instance owns (no global registry).

The request path only bumps plain integers and floats (a bisect and two additions per histogram
observation, about a tenth of ``prometheus_client.Histogram.observe`` with its lock); a custom
collector turns them into metric families when ``/metrics`` is scraped. Everything runs on the
event loop thread, so no locks are needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from inferplane import __version__
from inferplane.serving import compiled

LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS: Final[tuple[int, ...]] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _bucket(bounds: tuple[float, ...], value: float) -> int:
    """The index of the first bound not below ``value`` (``bisect_left``). A scan: the values
    the server sees fall in the first few buckets, and compiled (setup.py) each step is one
    native comparison where ``bisect`` calls Python's rich comparison."""
    i = 0
    for bound in bounds:
        if bound >= value:
            return i
        i += 1
    return i


class Histogram:
    """Bucket counts and a sum; ``observe`` is the only thing the request path calls."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple([float(b) for b in bounds])
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[_bucket(self.bounds, value)] += 1
        self.sum += value

    def observe_ages(self, now: float, starts: list[float]) -> None:
        """Observe ``now - start`` for each start: one call for a batch of requests."""
        counts, bounds, total = self.counts, self.bounds, 0.0
        for start in starts:
            age = now - start
            counts[_bucket(bounds, age)] += 1
            total += age
        self.sum += total

    def family_buckets(self) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            buckets.append((repr(float(bound)), total))
        buckets.append(("+Inf", total + self.counts[-1]))
        return buckets


class Metrics:
    """The server's metrics for one model: a collector of its own registry (which only calls
    ``collect``). It derives from no class of prometheus_client: compiled (setup.py), a class
    whose base mypyc sees as Any breaks at run time."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.requests: dict[str, int] = {}
        """Finished requests by outcome (``success``, ``client_error``, ``unavailable``, ...)."""
        self.request_seconds = Histogram(LATENCY_BUCKETS)
        self.queue_seconds = Histogram(LATENCY_BUCKETS)
        self.compute_seconds = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.queue_depth = 0
        self.retried = 0
        """Requests re-run alone because the merged batch they were in failed."""
        self.in_flight = 0
        self.load_seconds = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count(self, outcome: str, n: int = 1) -> None:
        self.requests[outcome] = self.requests.get(outcome, 0) + n

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily(
            "inferplane_build_info",
            "The server's version, and whether its request path is compiled (mypyc); always 1.",
            labels=["version", "compiled"],
        )
        info.add_metric([__version__, str(compiled()).lower()], 1)
        yield info
        labels = ["model"]
        requests = CounterMetricFamily(
            "inferplane_requests", "Inference requests by outcome.", labels=["model", "outcome"]
        )
        for outcome, n in sorted(self.requests.items()):
            requests.add_metric([self.model, outcome], n)
        yield requests
        retried = CounterMetricFamily(
            "inferplane_batch_retries",
            "Requests re-run alone because the merged batch they were in failed.",
            labels=labels,
        )
        retried.add_metric([self.model], self.retried)
        yield retried
        for name, doc, hist in (
            ("inferplane_request_duration_seconds", "Time from request to response.",
             self.request_seconds),
            ("inferplane_queue_duration_seconds", "Time a request waited for its batch.",
             self.queue_seconds),
            ("inferplane_compute_duration_seconds", "Time the backend ran, per batch.",
             self.compute_seconds),
            ("inferplane_batch_size", "Rows per backend call.", self.batch_size),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=labels)
            family.add_metric([self.model], hist.family_buckets(), sum_value=hist.sum)
            yield family
        for name, doc, value in (
            ("inferplane_queue_depth", "Requests waiting for the backend.", self.queue_depth),
            ("inferplane_in_flight_requests", "Inference requests being handled.", self.in_flight),
            ("inferplane_model_load_seconds", "Time to load and warm up the model.",
             self.load_seconds),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            gauge.add_metric([self.model], value)
            yield gauge
