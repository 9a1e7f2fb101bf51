# SPDX-License-Identifier: Apache-2.0
"""The runtime images, built on this machine from Debian's packages and PyPI (docs/testing.md).

For other tests (the real node imports the archives into containerd)::

    from tests import images
    built = images.ensure(["operator", "cpu", "mindspore"])   # builds what is missing
    built["cpu"].reference     # "ghcr.io/inferplane/cpu:0.1.0" (the chart's default name)
    built["cpu"].archive       # $INFERPLANE_CACHE/images/cpu-<key>.oci.tar
    images.archive("cpu")      # the same path, building first when needed

``ctr -n k8s.io images import <archive>`` names the image ``reference``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.images.build import IMAGES, NOT_BUILT, REGISTRY, Built, ensure, load, push
from tests.images.tools import ToolError, missing_reason

__all__ = [
    "IMAGES",
    "NOT_BUILT",
    "REGISTRY",
    "Built",
    "ToolError",
    "archive",
    "ensure",
    "for_tests",
    "load",
    "missing_reason",
    "push",
]


def archive(name: str) -> Path:
    """The OCI archive of image ``name`` (operator, cpu, mindspore), built when missing."""
    return ensure([name])[name].archive


def for_tests(name: str) -> str:
    """Image ``name`` built (when needed) and in buildah's storage, for a test to run; the test
    skips, saying why, where this machine cannot build images (not root)."""
    reason = missing_reason()
    if reason:
        pytest.skip(f"runtime images not built: {reason}")
    return load(ensure([name])[name])
