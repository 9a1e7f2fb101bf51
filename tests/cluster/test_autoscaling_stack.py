# SPDX-License-Identifier: Apache-2.0
"""Prometheus' and KEDA's configuration for the autoscaling tests on the real node."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from pathlib import Path

import yaml
from tests.cluster import autoscaling

ROOT = Path(__file__).resolve().parents[2]


def test_the_test_prometheus_scrapes_as_docs_install_tells_users() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)]
    documented = [b for b in blocks if isinstance(b, dict) and "scrape_configs" in b]
    assert [b["scrape_configs"] for b in documented] == [[autoscaling.SCRAPE_JOB]]


def test_prometheus_discovers_through_the_kubeconfig(tmp_path: Path) -> None:
    config = autoscaling.prometheus_config(tmp_path / "kubeconfig", interval_s=2)
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [
        {"role": "pod", "kubeconfig_file": str(tmp_path / "kubeconfig")}
    ]
    assert autoscaling.SCRAPE_JOB["kubernetes_sd_configs"] == [{"role": "pod"}]  # not mutated
    assert config["global"]["scrape_interval"] == "2s"


def test_keda_certificates_authenticate_both_ends(tmp_path: Path) -> None:
    """Mutual TLS with the pair, as KEDA's gRPC metrics service and its adapter use it."""
    autoscaling.write_certs(tmp_path, ("127.0.0.1", "localhost"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server.load_verify_locations(tmp_path / "ca.crt")
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls:
            peer = tls.getpeercert()
            seen.append(dict(x[0] for x in peer["subject"])["commonName"])
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    raw = socket.create_connection(("127.0.0.1", port))
    with client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    assert seen == ["keda"]


def test_the_adapter_is_registered_through_the_aggregation_layer() -> None:
    objects = autoscaling.cluster_objects(address="192.0.2.10", adapter_port=6443)
    kinds = {o["kind"]: o for o in objects}
    api = kinds["APIService"]
    assert api["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert api["spec"]["service"] == {
        "name": "keda-metrics-apiserver", "namespace": "keda", "port": 443,
    }  # fmt: skip
    endpoints = kinds["EndpointSlice"]
    assert endpoints["metadata"]["labels"] == {
        "kubernetes.io/service-name": "keda-metrics-apiserver"
    }
    assert endpoints["endpoints"][0]["addresses"] == ["192.0.2.10"]
    assert endpoints["ports"][0]["port"] == 6443
