# SPDX-License-Identifier: Apache-2.0
"""Helpers for the chart tests: render ``charts/inferplane`` with the real helm, and read it back.

Used by ``tests/charts`` (templates only, no API server) and ``tests/integration/test_chart.py``
(install, upgrade, RBAC and Pod Security on the real API server).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster import build, versions

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "inferplane"
S3_VALUES: dict[str, Any] = {
    "store": {"s3": {"bucket": "models", "credentialsSecret": "inferplane-store"}}
}
"""The smallest values that install: an S3 bucket and the name of its credentials Secret."""


def helm() -> Path:
    path = build.binary_path("helm")
    if not path.is_file():
        pytest.fail(f"helm is not built ({path}): run `python -m tests.cluster build`")
    return path


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_values(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def template(
    values: dict[str, Any],
    tmp_path: Path,
    *,
    release: str = "ip",
    namespace: str = "inferplane-system",
) -> subprocess.CompletedProcess[str]:
    """``helm template`` against the test cluster's Kubernetes version; no API server needed."""
    return subprocess.run(
        [
            str(helm()),
            "template",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--kube-version",
            versions.KUBERNETES,
            "--values",
            str(write_values(tmp_path, values)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def render(values: dict[str, Any], tmp_path: Path, **kwargs: str) -> list[dict[str, Any]]:
    result = template(values, tmp_path, **kwargs)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = find(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The operator container's environment: name -> value (or the valueFrom mapping)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    """What in a pod spec breaks the ``restricted`` Pod Security Standard (v1.25+ rules).

    A static reading of https://kubernetes.io/docs/concepts/security/pod-security-standards/ —
    the real API server enforces the same in ``tests/integration/test_chart.py``.
    """
    problems = []
    pod_sc = pod_spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            problems.append(f"{field} is set")
    allowed_volumes = {
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
        "persistentVolumeClaim", "projected", "secret",
    }  # fmt: skip
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {caps['add']}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
    return problems
