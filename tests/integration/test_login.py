# SPDX-License-Identifier: Apache-2.0
"""The operator's one Kubernetes login (the official client's configuration) on the real API
server: a service-account token rotated and the old one revoked during a run, and an exec-plugin
kubeconfig (as EKS, GKE and AKS use) for both kopf and the operator's own calls.

Tokens are real bound service-account tokens (TokenRequest, bound to a Secret): deleting the
Secret revokes the token at once, which is what a rotation that outlives the old token looks
like to a client that never re-reads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cluster import handle
from tests.e2e import operator_process as op

from inferplane import errors
from inferplane.control import handlers, kube

EXEC_PLUGIN = """\
import json, pathlib, sys
calls = pathlib.Path(sys.argv[2])
calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
token = pathlib.Path(sys.argv[1]).read_text().strip()
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {"token": token},
}))
"""


REAUTH = "Re-authentication has been initiated."
"""kopf's log line when a request of its own got a 401 and it calls the login handlers again
(the operator's own client logs in again by itself and never empties kopf's vault)."""


class Account:
    """A ServiceAccount bound to ``cluster-admin``, and bound tokens that can be revoked."""

    def __init__(self, cluster: handle.Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = f"login-{uuid.uuid4().hex[:8]}"
        cluster.kubectl("create", "serviceaccount", self.name, "-n", namespace)
        cluster.kubectl(
            "create", "clusterrolebinding", self.name, "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:{self.name}",
        )  # fmt: skip

    def token(self, bound_to: str) -> str:
        """A token valid until the Secret ``bound_to`` is deleted."""
        self.cluster.kubectl("create", "secret", "generic", bound_to, "-n", self.namespace)
        return self.cluster.kubectl(
            "create", "token", self.name, "-n", self.namespace, "--duration=10m",
            "--bound-object-kind=Secret", f"--bound-object-name={bound_to}",
        ).stdout.strip()  # fmt: skip

    def revoke(self, bound_to: str) -> None:
        self.cluster.kubectl("delete", "secret", bound_to, "-n", self.namespace)

    def delete(self) -> None:
        self.cluster.kubectl("delete", "clusterrolebinding", self.name, check=False)


@pytest.fixture
def account(cluster: handle.Cluster, namespace: str) -> Iterator[Account]:
    made = Account(cluster, namespace)
    try:
        yield made
    finally:
        made.delete()


def _status(cluster: handle.Cluster, token: str) -> int:
    """The API server's answer to ``token`` (200, or 401 once it is revoked)."""
    context = ssl.create_default_context(cafile=str(cluster.state.directory / "pki" / "ca.crt"))
    request = urllib.request.Request(
        f"{cluster.server}/api/v1/namespaces/default/pods?limit=1",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _revoke(cluster: handle.Cluster, account: Account, bound_to: str, token: str) -> None:
    account.revoke(bound_to)
    cluster.wait_until(
        lambda: _status(cluster, token) == 401, timeout=30, what="the old token to be revoked"
    )


def _rotate(path: Path, token: str) -> None:
    """Replace the token file the way the kubelet does: a new file renamed over the old one."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(token)
    os.replace(fresh, path)


def test_in_cluster_token_rotated_and_revoked_during_a_run(
    cluster: handle.Cluster, namespace: str, account: Account, tmp_path: Path
) -> None:
    """In a pod: ``KUBERNETES_SERVICE_HOST``/``PORT`` and the projected token. The kubelet
    replaces the token file; once the old token is revoked, the next call gets a 401, reads the
    file again and succeeds, with no restart."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "ca.crt").write_bytes((cluster.state.directory / "pki" / "ca.crt").read_bytes())
    (directory / "namespace").write_text(namespace)
    first = account.token("bound-1")
    _rotate(directory / "token", first)
    environ = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cluster.state.ports["kube-apiserver"]),
    }

    async def run() -> None:
        config = kube.load_config(environ=environ, service_account=directory)
        assert config.server == cluster.server
        async with kube.Kube(config) as client:
            await client.list("v1", "Pod", namespace=namespace)
            assert client.logins == 1
            _rotate(directory / "token", account.token("bound-2"))
            _revoke(cluster, account, "bound-1", first)
            assert await client.get("v1", "Pod", "absent", namespace=namespace) is None
            assert client.logins == 2
            await client.list("v1", "Pod", namespace=namespace)
            assert client.logins == 2  # the fresh token holds: no login per call

        # Without a way to log in again, the same revocation is a clear 401 error.
        stale = kube.Config(config.server, config.ssl, token=first)
        async with kube.Kube(stale) as client:
            with pytest.raises(errors.KubeError) as raised:
                await client.list("v1", "Pod", namespace=namespace)
            assert raised.value.status == 401

    asyncio.run(run())


def _exec_kubeconfig(cluster: handle.Cluster, tmp_path: Path, token_file: Path) -> Path:
    plugin = tmp_path / "token_plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "exec",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": str(cluster.state.directory / "pki" / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "plugin",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable,
                        "args": [str(plugin), str(token_file), str(tmp_path / "calls")],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "exec", "context": {"cluster": "test", "user": "plugin"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def test_exec_plugin_kubeconfig_for_kopf_and_the_operator(
    cluster: handle.Cluster, namespace: str, account: Account, tmp_path: Path
) -> None:
    """The real operator with an exec-plugin kubeconfig: kopf's watches and the operator's own
    calls both authenticate with the plugin's token. The plugin's token is rotated and the old
    one revoked mid-run. kopf's own requests meet the 401 too: its watches end every
    ``INFERPLANE_WATCH_TIMEOUT_S`` (3 s here) and re-open with the old token, and kopf logs in
    again through the operator's login handler (which runs the plugin). A model created
    afterwards, seen only through those re-opened watches, still gets its conversion Job."""
    op.install_crd(cluster)
    token_file = tmp_path / "token"
    first = account.token("exec-1")
    _rotate(token_file, first)
    kubeconfig = _exec_kubeconfig(cluster, tmp_path, token_file)

    loaded = kube.load_config(str(kubeconfig))
    info = handlers.connection_info(loaded)
    assert (info.server, info.scheme, info.token) == (cluster.server, "Bearer", first)

    operator = op.Operator(
        cluster,
        store=f"file://{tmp_path / 'store'}",
        log=tmp_path / "operator.log",
        KUBECONFIG=str(kubeconfig),
        INFERPLANE_WATCH_TIMEOUT_S="3",
    )
    log_path = tmp_path / "operator.log"
    operator.start()
    try:
        cluster.apply(op.model("before"), namespace=namespace)
        op.wait_phase(cluster, namespace, "before", "Converting")
        calls = int((tmp_path / "calls").read_text())
        assert REAUTH not in log_path.read_text()
        _rotate(token_file, account.token("exec-2"))
        _revoke(cluster, account, "exec-1", first)
        cluster.wait_until(
            lambda: REAUTH in log_path.read_text(),
            timeout=60,
            what="kopf to meet a 401 on its own request and log in again",
        )
        cluster.apply(op.model("after", devices=["cpu"], replicas={"min": 2, "max": 2}),
                      namespace=namespace)  # fmt: skip
        op.wait_phase(cluster, namespace, "after", "Converting", timeout=90)
        assert int((tmp_path / "calls").read_text()) > calls
    finally:
        operator.stop()
    log = log_path.read_text()
    assert "kubernetes.default.svc" not in log
