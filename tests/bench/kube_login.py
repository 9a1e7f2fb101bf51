# SPDX-License-Identifier: Apache-2.0
"""What the operator's login adds to each API request on the client side.

    python -m tests.bench.kube_login [--calls 200000]

Every request of ``control/kube.py`` asks its ``Config`` for the Authorization header. Three
ways, side by side in one process: a fixed token (the client before the official ``kubernetes``
client did the login), the official client's configuration asked on every call (its refresh
hook re-checks the token file's minute or the exec credential's expiry each time), and the same
configuration with the header reused for ``kube.HEADER_TTL_S`` (what the operator does). The
in-cluster configuration is real: a service-account directory with a token and a CA.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.cluster import pki

from inferplane.control import kube


def _per_call(func: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferplane-login-") as tmp:
        account = Path(tmp)
        pki.generate(account / "pki")
        (account / "ca.crt").write_bytes((account / "pki" / "ca.crt").read_bytes())
        (account / "token").write_text("t" * 900)  # about a bound token's length
        environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
        config = kube.load_config(environ=environ, service_account=account)
        client = config.client

        def uncached() -> object:
            return client.get_api_key_with_prefix("BearerToken")

        fixed = kube.Config(config.server, False, token="t" * 900)
        rows = {
            "fixed token": _per_call(fixed.authorization, args.calls),
            "official client, every call": _per_call(uncached, max(args.calls // 100, 100)),
            "official client, reused 10 s": _per_call(config.authorization, args.calls),
        }
    base = rows["fixed token"]
    print(f"load average {os.getloadavg()[0]:.2f}")
    for name, seconds in rows.items():
        print(f"{name:30s} {seconds * 1e6:9.2f} us/request  {seconds / base:8.1f}x fixed")


if __name__ == "__main__":
    main()
