# SPDX-License-Identifier: Apache-2.0
"""The real node (``tests/cluster/node.py``) is a real Kubernetes node: it registers with the
node's certificate, runs pods in containers on the CNI bridge, publishes the API server through
the ``kubernetes`` Service, answers cluster names from its own DNS and nothing else, serves the
metrics API from its kubelet — and ``down`` leaves the machine as ``up`` found it."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from tests.cluster import dns_query, handle, node, versions
from tests.cluster import node_config as config


def _real(cluster: handle.Cluster) -> node.NodeState:
    assert cluster.real_node is not None
    return cluster.real_node


def test_the_node_registers_ready_with_containerd(real_cluster: handle.Cluster) -> None:
    real = _real(real_cluster)
    item = real_cluster.get("node", config.NODE_NAME)
    info = item["status"]["nodeInfo"]
    assert info["kubeletVersion"] == versions.KUBERNETES
    assert info["containerRuntimeVersion"].startswith("containerd://")
    addresses = {a["type"]: a["address"] for a in item["status"]["addresses"]}
    assert addresses["InternalIP"] == real.address
    ready = [c for c in item["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True", ready
    assert "kwok.x-k8s.io/node" not in item["metadata"].get("annotations", {})


def test_the_kubernetes_service_has_the_machine_address(real_cluster: handle.Cluster) -> None:
    real = _real(real_cluster)
    slices = real_cluster.get("endpointslices", namespace="default")
    ours = [
        s
        for s in slices
        if s["metadata"]["labels"].get("kubernetes.io/service-name") == "kubernetes"
    ]
    addresses = {a for s in ours for e in s["endpoints"] for a in e["addresses"]}
    assert addresses == {real.address}
    port = int(real_cluster.server.rsplit(":", 1)[1])
    assert {p["port"] for s in ours for p in s["ports"]} == {port}


def test_cluster_dns_answers_the_cluster_domain_and_forwards_nothing(
    real_cluster: handle.Cluster,
) -> None:
    real = _real(real_cluster)
    code, addresses = dns_query.query_a(real.address, "kubernetes.default.svc.cluster.local")
    assert (code, addresses) == (dns_query.NOERROR, ["10.0.0.1"])
    code, _ = dns_query.query_a(real.address, "nothing-here.default.svc.cluster.local")
    assert code == dns_query.NXDOMAIN
    # A name outside the cluster domain is refused: it never reaches the host's resolver.
    code, addresses = dns_query.query_a(real.address, "pypi.org")
    assert (code, addresses) == (dns_query.REFUSED, [])


def test_a_pod_runs_in_a_container_on_the_bridge_with_the_cluster_resolver(
    real_cluster: handle.Cluster, real_namespace: str
) -> None:
    namespace = real_namespace
    real = _real(real_cluster)
    real_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sandbox"},
            "spec": {
                "containers": [
                    {"name": "pause", "image": config.SANDBOX_IMAGE, "imagePullPolicy": "Never"}
                ],
                "terminationGracePeriodSeconds": 0,
            },
        },
        namespace=namespace,
    )
    pod = real_cluster.wait_until(
        lambda: (
            (p := real_cluster.get("pod", "sandbox", namespace))["status"].get("phase") == "Running"
            and p
        ),
        timeout=60,
        what="the pod Running on the real node",
    )
    assert pod["spec"]["nodeName"] == config.NODE_NAME
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(config.POD_CIDR)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix(
        "containerd://"
    )
    assert container_id in node.ctr(real, "containers", "ls", "-q").stdout.split()
    sandboxes = real.layout.path("containerd_root") / "io.containerd.grpc.v1.cri" / "sandboxes"
    resolvers = [
        p.read_text() for p in sandboxes.glob("*/resolv.conf") if namespace in p.read_text()
    ]
    assert resolvers, f"no sandbox resolv.conf for {namespace} under {sandboxes}"
    assert f"nameserver {real.address}" in resolvers[0]
    assert f"search {namespace}.svc.cluster.local" in resolvers[0]


def test_the_metrics_api_reads_the_real_kubelet(real_cluster: handle.Cluster) -> None:
    raw = real_cluster.kubectl(
        "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{config.NODE_NAME}"
    ).stdout
    usage = json.loads(raw)["usage"]
    assert usage["memory"].endswith("Ki") and int(usage["memory"].removesuffix("Ki")) > 0
    assert "cpu" in usage


def test_down_leaves_the_machine_as_up_found_it(real_cluster: handle.Cluster) -> None:
    """Runs last in this file: the node is taken down, checked, and brought up again for the
    tests that follow (images loaded before are gone with containerd's root)."""
    real = _real(real_cluster)
    directory = real_cluster.state.directory
    assert node.down(directory)
    assert node.leftovers(real) == []
    assert not Path(real.layout.path("containerd_root")).exists()
    real_cluster.real_node = node.up(real_cluster.state, tie_to_parent=True)
