# SPDX-License-Identifier: Apache-2.0
"""How each process of the test cluster is configured: command lines, kubeconfigs, kwok options.

Nothing here starts a process: ``control_plane`` does, with what these functions return.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cluster.profile import KWOK_ANNOTATION

STAGES = Path(__file__).resolve().parent / "stages.yaml"
SERVICE_CIDR = "10.0.0.0/24"
API_CLIENT_LIMITS = ("--kube-api-qps=300", "--kube-api-burst=600")
"""Client rate limits of the controller manager and the scheduler (defaults 20/30 and 50/100)."""
CONTROLLER_WORKERS = (
    "--concurrent-deployment-syncs=50",
    "--concurrent-replicaset-syncs=50",
    "--concurrent-endpoint-syncs=20",
    "--concurrent-service-endpoint-syncs=20",
)
"""Workers of the controllers that 1000 Deployments keep busy (defaults 5 each). Each sync waits
on a few API calls, so 5 workers bound the deployment controller to about 12 syncs/s on this
machine (docs/benchmarks.md, "Operator at scale"): large clusters raise these the same way."""

KWOK_CONFIGURATION: dict[str, Any] = {
    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
    "kind": "KwokConfiguration",
    # A configuration file replaces kwok's defaults instead of merging with them, so every
    # option is spelled out: kwok v0.8.0's defaults, except the stage and lease parallelism (4 by
    # default, too few to initialise 1000 nodes quickly).
    "options": {
        "manageAllNodes": False,
        "enableDebuggingHandlers": True,
        "enableContentionProfiling": False,
        "enableProfilingHandler": True,
        "podPlayStageParallelism": 16,
        "nodePlayStageParallelism": 16,
        "nodeLeaseParallelism": 16,
        "podsOnNodeSyncParallelism": 1,
        "enablePodsOnNodeSyncListPager": True,
        "enablePodsOnNodeSyncStreamWatch": False,
    },
}


def write_kubeconfig(path: Path, *, server: str, pki_dir: Path, user: str) -> None:
    """A kubeconfig with file references (kubectl, helm and client libraries all read them)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "inferplane-test",
                "cluster": {
                    "server": server,
                    "certificate-authority": str(pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki_dir / f"{user}.crt"),
                    "client-key": str(pki_dir / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "inferplane-test", "context": {"cluster": "inferplane-test", "user": user}}
        ],
        "current-context": "inferplane-test",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def argv(
    name: str,
    binary: str,
    directory: Path,
    ports: dict[str, int],
    *,
    advertise: str | None = None,
) -> list[str]:
    """``advertise``: the machine's own address, which the API server listens on and publishes
    as the ``kubernetes`` Service's endpoint (pods reach it there); None keeps it on loopback,
    with no endpoints (a loopback address cannot back a Service)."""
    p = directory / "pki"
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    if name == "etcd":
        return [
            binary,
            "--name=etcd0",
            f"--data-dir={directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=etcd0={peer_url}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            binary,
            f"--etcd-servers={etcd_url}",
            *(
                (
                    "--bind-address=0.0.0.0",
                    f"--advertise-address={advertise}",
                    "--endpoint-reconciler-type=lease",
                )
                if advertise
                else (
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--endpoint-reconciler-type=none",
                )
            ),
            f"--secure-port={ports['kube-apiserver']}",
            f"--cert-dir={p}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--authorization-mode=RBAC",
            # The aggregation layer: request-header authentication (which the controllers'
            # delegated authentication reads too), the front proxy's client certificate, and
            # extension API servers (metrics-server) dialled at their endpoints' addresses.
            f"--requestheader-client-ca-file={p / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
            # How the API server authenticates to kubelets (logs, exec, port-forward).
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            # Node names resolve nowhere here: dial the address the kubelet reports.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
    if name == "kube-controller-manager":
        return [
            binary,
            f"--kubeconfig={directory / 'kube-controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={directory / 'kube-controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={directory / 'kube-controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # kwok renews node leases every 50 s (lease duration 200 s): give it room.
            "--node-monitor-grace-period=240s",
            # The default client limit (20 requests/s per controller) is sized for small
            # clusters; at 1000 nodes the deployment and replicaset controllers queue behind it,
            # as they do in real large clusters until operators raise it.
            *API_CLIENT_LIMITS,
            *CONTROLLER_WORKERS,
            "--profiling=false",
            "--v=1",
        ]
    if name == "kube-scheduler":
        return [
            binary,
            f"--kubeconfig={directory / 'kube-scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={directory / 'kube-scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={directory / 'kube-scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-scheduler']}",
            "--leader-elect=false",
            *API_CLIENT_LIMITS,
            "--profiling=false",
            "--v=1",
        ]
    if name == "kwok":
        return [
            binary,
            f"--kubeconfig={directory / 'kubeconfig'}",
            f"--config={STAGES}",
            f"--config={directory / 'kwok.yaml'}",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            # Leases are what the node lifecycle controller watches; a long duration keeps
            # 1000 nodes' renewals to ~20 writes/s.
            "--node-lease-duration-seconds=200",
            "--cidr=10.128.0.1/9",
            "--node-ip=10.0.255.1",
        ]
    raise ValueError(name)
