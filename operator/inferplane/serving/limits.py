# SPDX-License-Identifier: Apache-2.0
"""What the HTTP layer allows a client: sizes, counts and deadlines, one documented field each.

Every limit answers a way a client (careless or hostile) could hold the server's memory,
connections or time; the defaults follow mature servers (nginx, uvicorn/h11, hyper) and are
sized for one pod. ``inferplane serve`` sets each with the flag named in its docstring; see
docs/serving.md for the table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 64 << 20
    """``--max-request-bytes``: a larger body gets 413, before it is read when Content-Length
    says so; the rest is discarded and the connection stays usable."""

    max_head_bytes: int = 64 << 10
    """Request line and headers, counted in raw bytes as they arrive (so a header that never
    ends is caught too): past this, 431 and the connection is closed (nginx: 4 x 8 KiB,
    h11: 16 KiB)."""

    max_headers: int = 100
    """Header fields per request: past this, 431 and close (hyper and Go: 100)."""

    max_url_bytes: int = 8 << 10
    """The request target: past this, 414 and close (nginx's large buffer: 8 KiB)."""

    idle_timeout_s: float = 75.0
    """``--idle-timeout-s``: a keep-alive connection with no request for this long is closed;
    longer than the usual proxy's (nginx 60 s), so that a proxy never reuses a connection the
    server is closing. Also how long a client may leave its answers unread before it is cut."""

    head_timeout_s: float = 10.0
    """``--head-timeout-s``: a request head must arrive whole within this long of its first
    byte, however it trickles (slowloris): then 408 and close (nginx client_header_timeout)."""

    body_timeout_s: float = 60.0
    """``--body-timeout-s``: a request body must arrive whole within this long of its head
    (64 MiB in 60 s needs about 1 MiB/s): then 408 and close."""

    max_connections: int = 2048
    """``--max-connections``: connections open at once; one more gets 503 and is closed
    (the server raises its open-files limit to fit, as far as the hard limit allows)."""
