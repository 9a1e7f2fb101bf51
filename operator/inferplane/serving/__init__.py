# SPDX-License-Identifier: Apache-2.0
"""The data plane: a thin Open Inference Protocol (KServe V2) server over one backend."""

from __future__ import annotations

import importlib.machinery
import importlib.util


def compiled() -> bool:
    """Whether the request path runs as mypyc-compiled extension modules (``setup.py``): the
    runtime images install them; a source checkout runs the same modules as Python."""
    spec = importlib.util.find_spec("inferplane.serving.app")
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)
