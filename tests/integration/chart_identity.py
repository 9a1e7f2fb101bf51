# SPDX-License-Identifier: Apache-2.0
"""The chart on the test cluster, and the operator's identity it creates.

``helm`` runs the real helm against the session cluster; ``service_account_kubeconfig`` turns a
ServiceAccount into a kubeconfig (a TokenRequest token), so the operator can run out of cluster
as exactly the identity, and with exactly the RBAC, that the chart gives it in a cluster.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from tests.charts.chart import CHART, S3_VALUES, merge, write_values
from tests.cluster.handle import Cluster


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(cluster.bin("helm")), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=cluster.env,
    )
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ``account`` with a token from the TokenRequest API."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = {c["name"]: c["context"] for c in admin["contexts"]}[admin["current-context"]]
    server = {c["name"]: c["cluster"] for c in admin["clusters"]}[context["cluster"]]
    server = dict(server)
    if "certificate-authority" in server:
        server["certificate-authority"] = str(
            (cluster.kubeconfig.parent / server["certificate-authority"]).resolve()
        )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": server}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def chart_operator_identity(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """Install the chart (cluster-wide mode) into ``namespace``; yield a kubeconfig of its
    operator ServiceAccount; uninstall afterwards."""
    release = f"id-{namespace[-8:]}"
    values = merge(S3_VALUES, {"operator": {"replicas": 1}})
    helm(
        cluster, "install", release, str(CHART), "-n", namespace,
        "--values", str(write_values(tmp_path, values)),
    )  # fmt: skip
    try:
        yield service_account_kubeconfig(
            cluster, namespace, f"{release}-inferplane", tmp_path / "sa.kubeconfig"
        )
    finally:
        helm(cluster, "uninstall", release, "-n", namespace, "--wait", check=False)
