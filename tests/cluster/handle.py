# SPDX-License-Identifier: Apache-2.0
"""``Cluster``: what a test holds of a running test cluster (the ``cluster`` fixture's value)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.cluster import build, control_plane, node
from tests.cluster.profile import Profile

T = TypeVar("T")

HOLD_LABEL = "kwok.inferplane.io/hold"
RESULT_ANNOTATION = "kwok.inferplane.io/result"
MESSAGE_ANNOTATION = "kwok.inferplane.io/message"


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call that failed; its message carries kubectl's stderr."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {self.stderr.strip()}"


class Cluster:
    """A running test cluster: kubeconfig, binaries, kubectl, waits, and the hold contract."""

    def __init__(self, state: control_plane.State, real_node: node.NodeState | None = None) -> None:
        self.state = state
        self.real_node = real_node
        """The real kubelet node joined to this cluster (``real_cluster`` fixture), if any."""

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def nodes(self) -> Profile:
        """The profile the cluster was brought up with: which simulated nodes exist."""
        return self.state.profile

    @property
    def server(self) -> str:
        return self.state.server

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses: ``KUBECONFIG`` and the cluster's binaries on ``PATH``."""
        return control_plane.environment(self.state)

    def bin(self, name: str) -> Path:
        """A cached binary: ``kubectl``, ``helm``, ``kwok``, ``kube-apiserver``, ``etcd``, ..."""
        return build.binary_path(name)

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=self.env
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None) -> None:
        """``kubectl apply`` a manifest given as a dict or as YAML/JSON text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, input=text)

    def get(self, kind: str, name: str = "", namespace: str | None = None) -> Any:
        """``kubectl get -o json``: one object, or a list's ``items`` when ``name`` is empty."""
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        data = json.loads(self.kubectl(*args).stdout)
        return data if name else data["items"]

    def wait_until(
        self,
        condition: Callable[[], T | None],
        *,
        timeout: float = 60,
        interval: float = 0.2,
        what: str = "a condition",
    ) -> T:
        """Call ``condition`` until it returns something truthy; return that, or fail."""
        return wait_until(condition, timeout=timeout, interval=interval, what=what)

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until each CRD (``plural.group``) is Established. Polled, not ``kubectl wait``:
        that fails at once ("accessor error: <nil>") while a new CRD has no conditions yet."""
        path = '{.status.conditions[?(@.type=="Established")].status}'
        for crd in crds:
            self.wait_until(
                lambda crd=crd: (
                    self.kubectl(
                        "get", "crd", crd, "-o", f"jsonpath={path}", check=False
                    ).stdout.strip()
                    == "True"
                ),
                timeout=timeout,
                what=f"CRD {crd} Established",
            )

    def hold_release(self, namespace: str, pod: str, result: str, message: str = "") -> None:
        """End a held pod: ``result`` is ``succeeded`` or ``failed``; ``message`` becomes the
        container's terminated message. See the hold contract in docs/testing.md."""
        if result not in ("succeeded", "failed"):
            raise ValueError(f"result must be 'succeeded' or 'failed', not {result!r}")
        annotations = [f"{RESULT_ANNOTATION}={result}"]
        if message:
            annotations.append(f"{MESSAGE_ANNOTATION}={message}")
        self.kubectl("annotate", "--overwrite", "-n", namespace, "pod", pod, *annotations)

    def create_namespace(self, prefix: str = "t") -> str:
        """A fresh namespace whose ``default`` ServiceAccount exists (pods need it)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        self.wait_until(
            lambda: (
                self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
                == 0
            ),
            timeout=30,
            what=f"the default ServiceAccount in {name}",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)

    @contextlib.contextmanager
    def temporary_namespace(self, prefix: str = "t") -> Iterator[str]:
        """A fresh namespace for the ``with`` block, deleted after it."""
        name = self.create_namespace(prefix)
        try:
            yield name
        finally:
            self.delete_namespace(name)


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float = 60,
    interval: float = 0.2,
    what: str = "a condition",
) -> T:
    """Poll ``condition`` until it returns something truthy and return that value.

    Raises ``TimeoutError`` naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}: last {last!r}")
        time.sleep(interval)
