# SPDX-License-Identifier: Apache-2.0
"""The real node's configuration carries the settings this machine needs (shared/FACTS.md), and
the pause image archive is a valid OCI layout: checked without root or a cluster."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
import tomllib
from pathlib import Path

from tests.cluster import components, machine, oci
from tests.cluster import node_config as config


def test_containerd_keeps_everything_under_the_node_and_restricts_oom_adj(tmp_path: Path) -> None:
    layout = config.Layout(tmp_path)
    data = tomllib.loads(config.containerd_config(layout))
    assert data["root"].startswith(str(tmp_path)) and data["state"].startswith(str(tmp_path))
    assert data["grpc"]["address"] == str(layout.path("socket"))
    cri = data["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == config.SANDBOX_IMAGE
    assert cri["cni"]["conf_dir"] == str(layout.path("cni_conf"))
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False


def test_pod_network_clashes_with_nothing(tmp_path: Path) -> None:
    pods = ipaddress.ip_network(config.POD_CIDR)
    for other in (components.SERVICE_CIDR, "10.128.0.0/9", "127.0.0.0/8"):
        assert not pods.overlaps(ipaddress.ip_network(other)), other
    address = machine.host_address()
    if address:
        assert ipaddress.ip_address(address) not in pods
    bridge = config.cni_conflist(config.Layout(tmp_path))["plugins"][0]
    assert bridge["bridge"] == config.BRIDGE and len(config.BRIDGE) <= 15
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_kubelet_runs_on_this_kind_of_machine(tmp_path: Path) -> None:
    layout = config.Layout(tmp_path)
    kubelet = config.kubelet_config(
        layout, address="192.0.2.2", port=1, healthz_port=2, pki=tmp_path / "pki"
    )
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["failCgroupV1"] is False and kubelet["failSwapOn"] is False
    assert kubelet["clusterDNS"] == ["192.0.2.2"]
    assert kubelet["resolvConf"] == str(layout.path("resolv_conf"))
    assert kubelet["imageGCHighThresholdPercent"] == 100
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    for key in ("podLogsDir", "volumePluginDir"):
        assert kubelet[key].startswith(str(tmp_path))
    argv = config.kubelet_argv("/k", layout, kubeconfig=tmp_path / "k", address="192.0.2.2")
    assert "--node-ip=192.0.2.2" in argv and f"--root-dir={layout.path('kubelet_root')}" in argv
    assert config.resolv_conf("192.0.2.2").startswith("nameserver 192.0.2.2\n")


def test_cluster_dns_serves_the_cluster_domain_only(tmp_path: Path) -> None:
    corefile = config.corefile(address="192.0.2.2", ready_port=1, kubeconfig=tmp_path / "k")
    assert corefile.startswith(f"{config.CLUSTER_DOMAIN}:53 {{")
    assert "forward" not in corefile and "bind 192.0.2.2" in corefile
    main = (Path(__file__).parent / "go" / "coredns" / "main.go").read_text()
    assert "plugin/forward" not in main and "plugin/kubernetes" in main


def test_kube_proxy_leaves_conntrack_settings_alone(tmp_path: Path) -> None:
    proxy = config.kube_proxy_config(kubeconfig=tmp_path / "k", healthz_port=1, metrics_port=2)
    assert proxy["mode"] == "nftables"
    assert proxy["conntrack"]["maxPerCore"] == 0
    assert proxy["conntrack"]["tcpEstablishedTimeout"] == "0s"


def test_the_node_identity_gets_the_node_role() -> None:
    objects = config.cluster_objects(address="192.0.2.2", metrics_port=4443)
    bindings = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRoleBinding"}
    node = bindings["inferplane:node"]
    assert node["roleRef"]["name"] == "system:node"
    assert node["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
    ]
    service = next(o for o in objects if o["kind"] == "APIService")
    assert service["spec"]["service"]["name"] == "metrics-server"


def test_an_image_archive_is_a_valid_oci_layout() -> None:
    data = oci.image(
        {"pause": (b"\x7fELF-not-really", 0o755)},
        name="example.test/pause:1",
        entrypoint=["/pause"],
        user="65535:65535",
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, blob in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(blob).hexdigest() == name.rsplit("/", 1)[1]
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "example.test/pause:1"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].removeprefix('sha256:')}"])
    config_blob = files[f"blobs/sha256/{manifest['config']['digest'].removeprefix('sha256:')}"]
    assert json.loads(config_blob)["config"]["Entrypoint"] == ["/pause"]
    (layer,) = manifest["layers"]
    layer_blob = files[f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}"]
    with tarfile.open(fileobj=io.BytesIO(layer_blob)) as tar:
        member = tar.getmember("pause")
        assert member.mode == 0o755
        assert tar.extractfile(member).read() == b"\x7fELF-not-really"  # type: ignore[union-attr]


def test_new_nft_tables_are_told_apart_from_existing_ones() -> None:
    ruleset = "table ip filter {\n\tchain INPUT {\n\t}\n}\ntable ip6 kube-proxy {\n}\n"
    assert machine._tables(ruleset) == {"ip filter", "ip6 kube-proxy"}


def test_a_layer_on_top_of_an_archive_keeps_the_base(tmp_path: Path) -> None:
    base = tmp_path / "base.tar"
    base.write_bytes(
        oci.image({"bin/cp": (b"cp", 0o755)}, name="base:1", entrypoint=["/bin/cp"], user="0")
    )
    out = tmp_path / "code.tar"
    oci.layered(base, {"code/network.py": (b"x = 1\n", 0o644)}, name="code:1", out=out)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        (entry,) = oci._read_json(tar, "index.json")["manifests"]
        manifest = oci._read_json(tar, f"blobs/sha256/{entry['digest'][7:]}")
        config = oci._read_json(tar, f"blobs/sha256/{manifest['config']['digest'][7:]}")
    assert entry["annotations"]["io.containerd.image.name"] == "code:1"
    assert len(manifest["layers"]) == len(config["rootfs"]["diff_ids"]) == 2
    assert all(f"blobs/sha256/{layer['digest'][7:]}" in names for layer in manifest["layers"])
    assert config["config"]["Entrypoint"] == ["/bin/cp"]
