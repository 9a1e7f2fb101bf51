# SPDX-License-Identifier: Apache-2.0
"""The serving bench's reading of wrk's report, including a slice that completed nothing."""

from __future__ import annotations

from tests.bench.serving import merge, parse_wrk

DONE = """Running 1s test @ http://127.0.0.1:1/v2/models/small/infer
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.00us  100.00us   2.00ms   90.00%
  Latency Distribution
     50%  300.00us
     75%  350.00us
     90%  400.00us
     99%    1.50ms
  12000 requests in 1.00s, 3.00MB read
  Non-2xx or 3xx responses: 2
Requests/sec:  11990.50
Transfer/sec:      3.00MB
"""

# At a load average of 20 a 1 s slice can end before any request completes: wrk prints no
# latency distribution, only timeouts.
NOTHING = """Running 1s test @ http://127.0.0.1:1/v2/models/heavy/infer
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
  0 requests in 1.00s, 0.00B read
  Socket errors: connect 0, read 0, write 0, timeout 32
Requests/sec:      0.00
Transfer/sec:       0.00B
"""


def test_a_completed_slice_reads_rate_latencies_and_errors() -> None:
    load = parse_wrk(DONE, 0.1, 0.9)
    assert (load.rps, load.p50_ms, load.p99_ms, load.errors) == (11990.5, 0.3, 1.5, 2)


def test_a_slice_without_a_completed_request_is_zero_and_has_no_latency() -> None:
    load = parse_wrk(NOTHING, 0.1, 0.9)
    assert (load.rps, load.p50_ms, load.p99_ms, load.errors) == (0.0, None, None, 32)


def test_merged_latency_comes_from_the_slices_that_completed_requests() -> None:
    merged = merge([parse_wrk(NOTHING, 0, 0), parse_wrk(DONE, 0, 0), parse_wrk(DONE, 0, 0)])
    assert merged.rps == 11990.5 * 2 / 3
    assert (merged.p50_ms, merged.p99_ms, merged.errors) == (0.3, 1.5, 36)
    assert merge([parse_wrk(NOTHING, 0, 0)]).p50_ms is None
