# SPDX-License-Identifier: Apache-2.0
"""``push``: a built image lands in a registry under ``<registry>/<name>:<tag>``, layer for
layer. The registry is the real one (CNCF distribution, built from its Go module like the test
cluster's binaries), on loopback, over plain HTTP."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests import images
from tests.cluster import build as go_build
from tests.cluster import versions
from tests.images import tools
from tests.loopback import free_port

pytestmark = pytest.mark.slow
REGISTRY = versions.Component(
    name="registry",
    version="v3.0.0",
    binaries=("registry",),
    packages=("github.com/distribution/distribution/v3/cmd/registry@v3.0.0",),
)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    if images.missing_reason():
        pytest.skip(f"runtime images not built: {images.missing_reason()}")
    go_build.ensure_built((REGISTRY,))
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
                "log": {"level": "warn"},
            }
        )
    )
    log = (tmp_path / "registry.log").open("wb")
    binary = go_build.component_dir(REGISTRY) / "registry"
    process = subprocess.Popen([str(binary), "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the registry did not start: {tmp_path / 'registry.log'}")
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.mark.timeout(1800)
def test_push_names_the_image_under_the_registry(registry: str, tmp_path: Path) -> None:
    built = images.ensure(["operator"])["operator"]
    destination = images.push(built, f"{registry}/ml", "9.9.9", tls_verify=False)
    assert destination == f"{registry}/ml/operator:9.9.9"
    request = urllib.request.Request(
        f"http://{registry}/v2/ml/operator/manifests/9.9.9",
        headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        pushed = json.load(reply)
    local = json.loads(
        json.loads(
            tools.output(
                ["buildah", "inspect", "--type", "image", images.load(built)],
                tmp_path / "buildah.log",
            )
        )["Manifest"]
    )
    assert len(pushed["layers"]) == len(local["layers"])
    assert pushed["config"]["digest"] == local["config"]["digest"]
    with urllib.request.urlopen(f"http://{registry}/v2/_catalog", timeout=10) as reply:
        assert json.load(reply)["repositories"] == ["ml/operator"]
