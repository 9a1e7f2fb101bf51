# SPDX-License-Identifier: Apache-2.0
"""One name for the requests-in-flight gauge: what the real server exports is what the
autoscalers query, what the API describes and what the docs tell users to scrape."""

from __future__ import annotations

import re
from pathlib import Path

from tests.serving.conftest import StartServer

from inferplane.api import crd
from inferplane.control import builders

ROOT = Path(__file__).resolve().parents[2]
NAME = "inferplane_in_flight_requests"
SPELLINGS = re.compile(r"inferplane_\w*in_?flight\w*")
"""Any spelling of the gauge's name, right or wrong."""


def test_the_server_exports_the_gauge_the_operator_scales_on(
    start_server: StartServer, mlp_onnx: Path
) -> None:
    server = start_server(mlp_onnx)
    exported = {
        match.group(1)
        for match in re.finditer(r"^# TYPE (\S+) gauge$", server.metrics(), re.MULTILINE)
    }
    assert NAME in exported
    assert builders.INFLIGHT_METRIC == NAME
    assert [m for m in exported if SPELLINGS.fullmatch(m)] == [NAME]


def test_the_api_describes_the_same_name() -> None:
    replicas = crd.definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    metric = replicas["properties"]["spec"]["properties"]["replicas"]["properties"]["metric"]
    assert NAME in metric["description"]
    source = (ROOT / "operator/inferplane/api/v1alpha1.py").read_text()
    assert set(SPELLINGS.findall(source)) == {NAME}


def test_every_doc_and_manifest_spells_it_the_same() -> None:
    files = [
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        *ROOT.glob("crds/*.yaml"),
        *ROOT.glob("charts/inferplane/**/*.yaml"),
        *ROOT.glob("operator/inferplane/**/*.py"),
    ]
    wrong = {
        f"{path.relative_to(ROOT)}: {found}"
        for path in files
        for found in SPELLINGS.findall(path.read_text())
        if found != NAME
    }
    assert not wrong, f"the gauge is {NAME}: {sorted(wrong)}"
    for doc in ("docs/serving.md", "docs/operator.md", "docs/install.md"):
        assert NAME in (ROOT / doc).read_text(), f"{doc} does not name {NAME}"
