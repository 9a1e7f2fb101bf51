# SPDX-License-Identifier: Apache-2.0
"""Which request path runs, and that the server says so.

``scripts/test.sh`` runs ``tests/serving`` twice: against the checkout (Python) and against the
compiled build of ``tests/compiled.py`` with ``INFERPLANE_EXPECT_COMPILED=1``. These tests make
sure each pass ran what it claims: a pass that silently imported the other build fails here.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from tests.serving.conftest import StartServer, metric_value

from inferplane import __version__
from inferplane.serving import compiled

EXPECTED = os.environ.get("INFERPLANE_EXPECT_COMPILED", "0") == "1"
HOT = ("app", "dataplane", "batching", "protocol", "metrics")
"""The modules setup.py compiles."""


@pytest.mark.parametrize("name", HOT)
def test_the_expected_build_of_the_request_path_is_imported(name: str) -> None:
    module = importlib.import_module(f"inferplane.serving.{name}")
    assert str(module.__file__).endswith(".so") is EXPECTED, module.__file__
    assert compiled() is EXPECTED


def test_the_http_layer_stays_python() -> None:
    from inferplane.serving import http

    assert str(http.__file__).endswith(".py")


def test_the_server_reports_its_build(start_server: StartServer, mlp_onnx: Path) -> None:
    server = start_server(mlp_onnx)
    flag = "true" if EXPECTED else "false"
    text = server.metrics()
    assert metric_value(text, "inferplane_build_info", version=__version__, compiled=flag) == 1
    assert f'compiled="{"false" if EXPECTED else "true"}"' not in text
    assert server.stop() == 0
    expected = "compiled request path" if EXPECTED else "request path in Python"
    assert expected in server.log_text()
