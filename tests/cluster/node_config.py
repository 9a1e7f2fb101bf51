# SPDX-License-Identifier: Apache-2.0
"""How the real node's parts are configured: containerd, the CNI bridge, kubelet, kube-proxy,
CoreDNS, metrics-server, and the RBAC objects they need. Plain data, no I/O: ``node`` writes and
starts what these functions return.

The settings that matter on this kind of machine (shared/FACTS.md, "Containers and a real kubelet
node"): containerd's ``restrict_oom_score_adj`` (root lacks CAP_SYS_RESOURCE), the kubelet's
cgroupfs driver with ``failCgroupV1: false`` and ``failSwapOn: false``, the node's own address
(the kubelet refuses loopback), and a resolver of the cluster's own (never the host's).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

NODE_NAME = "inferplane-node"
BRIDGE = "inferplane0"
"""The CNI bridge: a name of its own (15 characters at most), removed by ``down``."""
POD_CIDR = "10.64.0.0/24"
"""Pod addresses: clear of the Service range (10.0.0.0/24), kwok's pods (10.128.0.0/9) and the
machine's own network."""
CLUSTER_DOMAIN = "cluster.local"
SANDBOX_IMAGE = "inferplane.test/pause:v1.36.1"
"""containerd's ``sandbox_image``: the pause binary built from k8s.io/kubernetes' source, imported
under this name (nothing is ever pulled)."""
DNS_PORT = 53
CLOSED_PROXY = "http://127.0.0.1:9"
"""containerd's proxy: a closed local port, so a stray image pull fails at once instead of
reaching out (pods here run only images imported into containerd)."""


_PATHS = {
    "containerd_root": "containerd/root",
    "containerd_state": "containerd/state",
    "containerd_config": "containerd/config.toml",
    "containerd_opt": "containerd/opt",
    "socket": "containerd/containerd.sock",
    "cni_conf": "cni/net.d",
    "cni_ipam": "cni/ipam",
    "kubelet_root": "kubelet",
    "kubelet_config": "kubelet.yaml",
    "kube_proxy_config": "kube-proxy.yaml",
    "pod_logs": "pod-logs",
    "volume_plugins": "volume-plugins",
    "resolv_conf": "resolv.conf",
    "corefile": "Corefile",
}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the node keeps everything: all under one folder (``<cluster dir>/node``)."""

    root: Path

    def path(self, name: str) -> Path:
        """``name`` is a key of ``_PATHS``: ``socket``, ``kubelet_root``, ``cni_conf``, ..."""
        return self.root / _PATHS[name]


def containerd_config(layout: Layout) -> str:
    """containerd 1.6 (Debian) configuration, version 2, with its own root, state and socket."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    disabled = ", ".join(
        f'"io.containerd.{p}"'
        for p in (
            "snapshotter.v1.aufs",
            "snapshotter.v1.btrfs",
            "snapshotter.v1.zfs",
            "snapshotter.v1.devmapper",
            "internal.v1.tracing",
        )
    )
    socket = layout.path("socket")
    return f"""version = 2
root = "{layout.path("containerd_root")}"
state = "{layout.path("containerd_state")}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{layout.path("containerd_opt")}"

[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc with
  # "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{layout.path("cni_conf")}"
"""


def cni_conflist(layout: Layout) -> dict[str, Any]:
    """A bridge with the pods' gateway on the host; no masquerade (all traffic stays on the
    machine), hairpin so a pod reaches itself through its Service."""
    return {
        "cniVersion": "1.0.0",
        "name": "inferplane",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.path("cni_ipam")),
                },
            }
        ],
    }


def kubelet_config(
    layout: Layout,
    *,
    address: str,
    port: int,
    healthz_port: int,
    pki: Path,
) -> dict[str, Any]:
    """``pki`` is the cluster's certificate folder (``ca.crt``, ``kubelet-serving.*``)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.path('socket')}",
        # This machine: cgroup v1 hierarchy, cgroupfs (no systemd), swap allowed.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [address],
        # Pods with dnsPolicy Default read this file: it names the cluster's resolver, never
        # the host's.
        "resolvConf": str(layout.path("resolv_conf")),
        "podLogsDir": str(layout.path("pod_logs")),
        "volumePluginDir": str(layout.path("volume_plugins")),
        # Images cannot be pulled again here: never garbage-collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "nodeStatusReportFrequency": "10s",
        "maxPods": 110,
    }


def kube_proxy_config(*, kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "nodePortAddresses": ["primary"],
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # Zero leaves the machine's conntrack settings as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def corefile(*, address: str, ready_port: int, kubeconfig: Path) -> str:
    """The cluster domain only, answered from the API; no ``forward`` (none is linked in): a
    query for any other name is refused, never sent to the host's resolver."""
    return (
        f"{CLUSTER_DOMAIN}:{DNS_PORT} {{\n"
        "    errors\n"
        f"    bind {address}\n"
        f"    ready 127.0.0.1:{ready_port}\n"
        f"    kubernetes {CLUSTER_DOMAIN} {{\n"
        f"        kubeconfig {kubeconfig} inferplane-test\n"
        "        pods insecure\n"
        "    }\n"
        "}\n"
    )


def resolv_conf(address: str) -> str:
    return f"nameserver {address}\nsearch {CLUSTER_DOMAIN}\noptions ndots:5\n"


def kubelet_argv(binary: str, layout: Layout, *, kubeconfig: Path, address: str) -> list[str]:
    return [
        binary,
        f"--config={layout.path('kubelet_config')}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={layout.path('kubelet_root')}",
        f"--node-ip={address}",
        f"--hostname-override={NODE_NAME}",
        "--node-labels=inferplane.io/real-node=true",
        "--v=1",
    ]


def kube_proxy_argv(binary: str, layout: Layout) -> list[str]:
    return [binary, f"--config={layout.path('kube_proxy_config')}", "--v=1"]


def metrics_server_argv(
    binary: str,
    *,
    address: str,
    port: int,
    kubeconfig: Path,
    pki: Path,
) -> list[str]:
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={address}",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'metrics-server-serving.crt'}",
        f"--tls-private-key-file={pki / 'metrics-server-serving.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'metrics-server.crt'}",
        f"--kubelet-client-key={pki / 'metrics-server.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        # The shortest the kubelet's resource metrics allow: the HPA test stays short.
        "--metric-resolution=10s",
        "--kubelet-request-timeout=5s",
        "--v=1",
    ]


def _binding(name: str, role: str, kind: str, subject: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
    }


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": rules,
    }


METRICS_SERVER_USER = "system:metrics-server"
COREDNS_USER = "system:coredns"


def cluster_objects(*, address: str, metrics_port: int) -> list[dict[str, Any]]:
    """RBAC for the node's identities, and the metrics API served by the host's metrics-server.

    The API server authorises with RBAC only, so the kubelet (group ``system:nodes``) needs the
    ``system:node`` role bound (kubeadm binds it the same way); kube-proxy's built-in binding
    (``system:node-proxier`` → ``system:kube-proxy``) already exists.
    """
    read = ["get", "list", "watch"]
    return [
        _binding("inferplane:node", "system:node", "Group", "system:nodes"),
        _binding(
            "inferplane:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            "User",
            "kube-apiserver-kubelet-client",
        ),
        _cluster_role(
            COREDNS_USER,
            [
                {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
            ],
        ),
        _binding(COREDNS_USER, COREDNS_USER, "User", COREDNS_USER),
        _cluster_role(
            METRICS_SERVER_USER,
            [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": read},
            ],
        ),
        _binding(METRICS_SERVER_USER, METRICS_SERVER_USER, "User", METRICS_SERVER_USER),
        _binding(
            "metrics-server:system:auth-delegator",
            "system:auth-delegator",
            "User",
            METRICS_SERVER_USER,
        ),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "metrics-server-auth-reader", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": METRICS_SERVER_USER,
                }
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": metrics_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "metrics-server-host",
                "namespace": "kube-system",
                "labels": {"kubernetes.io/service-name": "metrics-server"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": metrics_port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                "insecureSkipTLSVerify": True,
            },
        },
    ]


def as_json(data: dict[str, Any]) -> str:
    """JSON is YAML: the kubelet and kube-proxy read their configuration files as either."""
    return json.dumps(data, indent=2)
