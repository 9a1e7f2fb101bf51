# SPDX-License-Identifier: Apache-2.0
"""Build hook: with ``INFERPLANE_MYPYC=1`` the server's request path is compiled with mypyc.

Everything else about the package is declared in ``pyproject.toml``. The compiled modules are
the ones every request runs through (docs/serving.md, "The compiled request path"); the HTTP
layer stays Python because its hot loop is httptools' C parser already. Without the variable
the wheel is pure Python: the same code, slower per request. The runtime images set it in a
builder stage (runtime-images/README.md); ``python -m tests.compiled`` builds the same wheel
for the tests and the benchmarks.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

COMPILED = [
    "operator/inferplane/serving/app.py",
    "operator/inferplane/serving/dataplane.py",
    "operator/inferplane/serving/batching.py",
    "operator/inferplane/serving/protocol.py",
    "operator/inferplane/serving/metrics.py",
]


def ext_modules() -> list[object]:
    flag = os.environ.get("INFERPLANE_MYPYC", "0")
    if flag not in ("0", "1"):
        raise SystemExit(f"INFERPLANE_MYPYC must be 0 or 1, not {flag!r}")
    if flag == "0":
        return []
    if "editable_wheel" in sys.argv:
        raise SystemExit(
            "INFERPLANE_MYPYC=1 does not apply to an editable install: the compiled modules would "
            "shadow the sources being edited (build a wheel, or use python -m tests.compiled)"
        )
    from mypyc.build import mypycify

    # The same compiled code wherever it is built: mypy reads no config file (the project's
    # pydantic plugin) and no installed package (a pip build environment may or may not see the
    # outer environment's), so every third-party name is typed as Any.
    options = [
        "--config-file=",
        "--no-site-packages",
        "--ignore-missing-imports",
        "--python-version=3.11",
    ]
    return mypycify([*options, *COMPILED], opt_level="3", group_name="inferplane_serving")


setup(ext_modules=ext_modules())
