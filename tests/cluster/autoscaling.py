# SPDX-License-Identifier: Apache-2.0
"""Prometheus and KEDA beside a test cluster, as host processes built from their Go modules.

- **Prometheus** discovers pods through the API server (``kubernetes_sd_configs``, role pod) and
  scrapes those annotated ``prometheus.io/scrape: "true"`` at ``prometheus.io/port`` and
  ``prometheus.io/path``, labelling each series with ``namespace`` and ``pod``: the scrape job
  docs/install.md gives users, word for word (``SCRAPE_JOB``). It reaches pods at their pod IPs,
  which the host routes to the real node's bridge.
- **KEDA**'s operator (controllers, and the gRPC metrics service on loopback, with mutual TLS
  from a CA made here) and its metrics API server, registered as ``v1beta1.external.metrics.k8s.io``
  through the API server's aggregation layer: an APIService whose Service's EndpointSlice names
  the machine's own address, where the adapter listens.

Plain data builders, a small ``Stack`` that starts and stops the processes, and ``running``, which
does the whole of it for a cluster (CRDs, processes, APIService, and the way back).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.cluster import build, handle, processes, versions
from tests.loopback import free_port

KEDA_NAMESPACE = "keda"
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"

SCRAPE_JOB: dict[str, Any] = {
    "job_name": "kubernetes-pods",
    "kubernetes_sd_configs": [{"role": "pod"}],
    "relabel_configs": [
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "action": "keep",
            "regex": "true",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
            "action": "replace",
            "target_label": "__metrics_path__",
            "regex": "(.+)",
        },
        {
            "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
            "action": "replace",
            "regex": r"([^:]+)(?::\d+)?;(\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ],
}
"""The annotation scrape job of docs/install.md (a test checks the two agree)."""


def prometheus_config(kubeconfig: Path, *, interval_s: int) -> dict[str, Any]:
    """The whole Prometheus configuration: the annotation job, discovering through
    ``kubeconfig`` (the host process has no service account)."""
    job = json.loads(json.dumps(SCRAPE_JOB))
    job["kubernetes_sd_configs"][0]["kubeconfig_file"] = str(kubeconfig)
    return {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "scrape_configs": [job],
    }


def prometheus_argv(binary: Path, *, config: Path, data: Path, listen: str) -> list[str]:
    return [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=1h",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    ]


def keda_operator_argv(
    binary: Path, *, certs: Path, grpc: str, metrics: str, probe: str
) -> list[str]:
    return [
        str(binary),
        f"--metrics-service-bind-address={grpc}",
        f"--metrics-bind-address={metrics}",
        f"--health-probe-bind-address={probe}",
        f"--cert-dir={certs}",
        "--enable-cert-rotation=false",
        "--enable-webhook-patching=false",
        "--enable-apiservice-patching=false",
        "--zap-log-level=info",
    ]


def keda_adapter_argv(
    binary: Path,
    *,
    kubeconfig: Path,
    certs: Path,
    grpc: str,
    address: str,
    port: int,
    metrics_port: int,
) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={address}",
        f"--secure-port={port}",
        f"--tls-cert-file={certs / 'tls.crt'}",
        f"--tls-private-key-file={certs / 'tls.key'}",
        f"--cert-dir={certs}",
        f"--metrics-service-address={grpc}",
        f"--port={metrics_port}",
    ]


def keda_env(kubeconfig: Path) -> dict[str, str]:
    """What KEDA reads from a pod's environment and service account, for a host process."""
    return {
        "KUBECONFIG": str(kubeconfig),
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": KEDA_NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        "OPERATOR_NAME": "keda-operator",
    }


def write_certs(directory: Path, addresses: tuple[str, ...]) -> None:
    """``ca.crt``, and ``tls.crt`` + ``tls.key`` valid for serving and as a client on
    ``addresses``: KEDA's gRPC metrics service and its adapter authenticate each other with them
    (mutual TLS), and the adapter serves the aggregation layer with the same pair."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keda-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for address in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keda")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        )
        .add_extension(x509.SubjectAlternativeName(names), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "tls.crt").write_bytes(cert.public_bytes(pem))
    (directory / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def cluster_objects(*, address: str, adapter_port: int) -> list[dict[str, Any]]:
    """KEDA's namespace, and its metrics API server registered with the aggregation layer: a
    Service without selector whose EndpointSlice names the host's address and port."""
    service = "keda-metrics-apiserver"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": KEDA_NAMESPACE},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": adapter_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-host",
                "namespace": KEDA_NAMESPACE,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": adapter_port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": EXTERNAL_METRICS},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": service, "namespace": KEDA_NAMESPACE, "port": 443},
                "insecureSkipTLSVerify": True,
            },
        },
    ]


def hpa_reads_external_metrics() -> list[dict[str, Any]]:
    """What KEDA's own install binds: the HPA controller may read external metrics."""
    name = "keda-hpa-controller-external-metrics"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["external.metrics.k8s.io"],
                    "resources": ["*"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": "horizontal-pod-autoscaler",
                    "namespace": "kube-system",
                }
            ],
        },
    ]


@dataclass
class Stack:
    """Prometheus and KEDA's two processes for one cluster; ``stop`` ends exactly those."""

    directory: Path
    kubeconfig: Path
    address: str
    """The machine's own address: the adapter listens there for the aggregation layer."""
    prometheus_port: int
    adapter_port: int
    grpc_port: int
    keda_ports: tuple[int, int, int]
    """The KEDA operator's metrics and health-probe ports (loopback), the adapter's metrics."""
    scrape_interval_s: int = 2
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def start_prometheus(self) -> None:
        config = self.directory / "prometheus.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            json.dumps(prometheus_config(self.kubeconfig, interval_s=self.scrape_interval_s))
        )
        binary = build.binary_path("prometheus")
        argv = prometheus_argv(
            binary,
            config=config,
            data=self.directory / "prometheus-data",
            listen=f"127.0.0.1:{self.prometheus_port}",
        )
        self.pids["prometheus"] = processes.start(
            argv, log=self.directory / "prometheus.log", tie_to_parent=True
        )

    def start_keda(self) -> None:
        certs = self.directory / "keda-certs"
        write_certs(certs, ("127.0.0.1", "localhost", self.address))
        env = {**_base_env(), **keda_env(self.kubeconfig)}
        grpc = f"127.0.0.1:{self.grpc_port}"
        metrics, probe, adapter_metrics = self.keda_ports
        operator = keda_operator_argv(
            build.binary_path("keda-operator"),
            certs=certs,
            grpc=grpc,
            metrics=f"127.0.0.1:{metrics}",
            probe=f"127.0.0.1:{probe}",
        )
        self.pids["keda-operator"] = processes.start(
            operator, log=self.directory / "keda-operator.log", tie_to_parent=True, env=env
        )
        adapter = keda_adapter_argv(
            build.binary_path("keda-adapter"),
            kubeconfig=self.kubeconfig,
            certs=certs,
            grpc=grpc,
            address=self.address,
            port=self.adapter_port,
            metrics_port=adapter_metrics,
        )
        self.pids["keda-adapter"] = processes.start(
            adapter, log=self.directory / "keda-adapter.log", tie_to_parent=True, env=env
        )

    def alive(self) -> dict[str, bool]:
        return {
            name: processes.is_ours(pid, str(build.binary_path(name)))
            for name, pid in self.pids.items()
        }

    def stop(self) -> None:
        for name, pid in reversed(list(self.pids.items())):
            processes.stop(pid, str(build.binary_path(name)))
        self.pids.clear()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def _available(cluster: handle.Cluster, apiservice: str) -> bool:
    item = cluster.get("apiservice", apiservice)
    return any(
        c["type"] == "Available" and c["status"] == "True"
        for c in item.get("status", {}).get("conditions", [])
    )


@contextlib.contextmanager
def running(cluster: handle.Cluster, directory: Path, address: str) -> Iterator[Stack]:
    """Prometheus and KEDA (built first when missing) beside ``cluster``, KEDA's CRDs applied
    and its metrics API server Available through the aggregation layer. On the way out the
    APIService goes with the processes: an unavailable aggregated API breaks discovery for every
    later client of the cluster, and every ScaledObject goes first, while KEDA can still remove
    its finalizer (the CRDs stay; they cost nothing)."""
    build.ensure_built(versions.AUTOSCALING, echo=True)
    for crd in sorted(build.keda_crds().glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    cluster.wait_established("scaledobjects.keda.sh")
    stack = Stack(
        directory=directory,
        kubeconfig=cluster.kubeconfig,
        address=address,
        prometheus_port=free_port(),
        adapter_port=free_port(),
        grpc_port=free_port(),
        keda_ports=(free_port(), free_port(), free_port()),
    )
    try:
        stack.start_prometheus()
        stack.start_keda()
        objects = cluster_objects(address=address, adapter_port=stack.adapter_port)
        for manifest in [*objects, *hpa_reads_external_metrics()]:
            cluster.apply(manifest)
        handle.wait_until(
            lambda: _available(cluster, EXTERNAL_METRICS),
            timeout=180,
            interval=2,
            what=f"KEDA's metrics API server Available (logs in {directory})",
        )
        yield stack
    finally:
        # ScaledObjects carry KEDA's finalizer: they go while KEDA still runs, or a namespace
        # deleted after the tests would wait on them for ever.
        cluster.kubectl(
            "delete", "scaledobjects.keda.sh", "--all", "--all-namespaces", "--wait=true",
            "--timeout=120s", check=False,
        )  # fmt: skip
        cluster.kubectl("delete", "apiservice", EXTERNAL_METRICS, "--ignore-not-found", check=False)
        stack.stop()
