# SPDX-License-Identifier: Apache-2.0
"""The command lines the control plane is started with."""

from __future__ import annotations

from pathlib import Path

from tests.cluster import components, control_plane

PORTS = {
    "etcd": 2001,
    "etcd-peer": 2002,
    "kube-apiserver": 2003,
    "kube-controller-manager": 2004,
    "kube-scheduler": 2005,
}


def _flags(name: str, directory: Path) -> dict[str, str]:
    argv = components.argv(name, f"/bin/{name}", directory, PORTS)
    assert argv[0] == f"/bin/{name}"
    return dict(arg.removeprefix("--").split("=", 1) for arg in argv[1:])


def test_every_process_listens_on_loopback_ports_of_its_own(tmp_path: Path) -> None:
    etcd = _flags("etcd", tmp_path)
    assert etcd["listen-client-urls"] == "http://127.0.0.1:2001"
    assert etcd["listen-peer-urls"] == "http://127.0.0.1:2002"
    api = _flags("kube-apiserver", tmp_path)
    assert api["etcd-servers"] == "http://127.0.0.1:2001"
    assert (api["bind-address"], api["secure-port"]) == ("127.0.0.1", "2003")
    for name, port in (("kube-controller-manager", "2004"), ("kube-scheduler", "2005")):
        flags = _flags(name, tmp_path)
        assert (flags["bind-address"], flags["secure-port"]) == ("127.0.0.1", port)
        assert flags["kubeconfig"] == str(tmp_path / f"{name}.kubeconfig")


def test_api_server_enforces_rbac_and_the_default_admission_plugins(tmp_path: Path) -> None:
    api = _flags("kube-apiserver", tmp_path)
    assert api["authorization-mode"] == "RBAC"
    assert "disable-admission-plugins" not in api
    assert "admission-control" not in api
    assert api["client-ca-file"] == str(tmp_path / "pki" / "ca.crt")
    assert api["service-account-signing-key-file"] == str(tmp_path / "pki" / "sa.key")


def test_kwok_manages_annotated_nodes_with_our_stages(tmp_path: Path) -> None:
    argv = components.argv("kwok", "/bin/kwok", tmp_path, PORTS)
    assert f"--config={components.STAGES}" in argv
    assert f"--config={tmp_path / 'kwok.yaml'}" in argv
    assert "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in argv
    options = components.KWOK_CONFIGURATION["options"]
    assert options["nodeLeaseParallelism"] > 0  # kwok refuses to start with 0


def test_the_controller_manager_tolerates_kwok_lease_renewals() -> None:
    """kwok renews a lease every quarter of its duration; the node lifecycle controller must wait
    longer than that before it calls a node NotReady."""
    kwok = components.argv("kwok", "/bin/kwok", Path("/x"), PORTS)
    lease = int(next(a for a in kwok if "lease-duration" in a).split("=")[1])
    kcm = components.argv("kube-controller-manager", "/bin/kcm", Path("/x"), PORTS)
    grace = next(a for a in kcm if "node-monitor-grace-period" in a).split("=")[1]
    assert int(grace.removesuffix("s")) > lease / 4 * 2
    assert control_plane.ORDER[0] == "etcd" and control_plane.ORDER[-1] == "kwok"
