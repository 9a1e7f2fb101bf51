# SPDX-License-Identifier: Apache-2.0
"""The operator image starts against the real test cluster and answers its liveness endpoint,
run as its pod runs it (read-only root, uid 65532, no capabilities; host network here, so it
reaches the API server on loopback)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests import images
from tests.cluster import handle
from tests.e2e import operator_process
from tests.images import container
from tests.loopback import free_port

pytestmark = pytest.mark.slow


def kubeconfig_for(cluster: handle.Cluster, directory: Path) -> Path:
    """The cluster's kubeconfig with its certificates inline, readable by uid 65532."""
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    path = directory / "config"
    path.write_text(cluster.kubectl("config", "view", "--raw", "--flatten").stdout)
    path.chmod(0o644)
    return path


@pytest.mark.timeout(1800)  # a cold machine builds the base and the image first
def test_operator_image_answers_liveness(cluster: handle.Cluster, tmp_path: Path) -> None:
    image = images.for_tests("operator")
    operator_process.install_crd(cluster)
    kubeconfig = kubeconfig_for(cluster, tmp_path / "kube")
    port = free_port()
    args = ["operator", "--standalone", "--liveness", f"http://127.0.0.1:{port}/healthz"]
    env = {"KUBECONFIG": "/kube/config", "INFERPLANE_STORE": "file:///tmp/store"}
    with container.run(image, args, mounts={"/kube": kubeconfig.parent}, env=env) as running:
        deadline = time.monotonic() + 90
        while True:
            if running.process.poll() is not None:
                pytest.fail(
                    f"the operator exited ({running.process.returncode}):\n{running.output()}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    assert reply.status == 200
                    json.loads(reply.read())
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"no liveness answer after 90 s:\n{running.output()}")
                time.sleep(0.5)
