# SPDX-License-Identifier: Apache-2.0
"""The operator's wiring that needs no cluster: the work queue, write avoidance, settings."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import kopf
import pytest
from tests.cluster import pki

from inferplane import errors
from inferplane.control import handlers, kube, planner
from inferplane.control.settings import OperatorSettings


def _runtime() -> handlers.Runtime:
    return handlers.Runtime(OperatorSettings(), kube.Kube(kube.Config("https://x", False)))


def test_queue_deduplicates_and_never_runs_a_model_twice_at_once() -> None:
    async def scenario() -> list[tuple[str, str]]:
        rt = _runtime()
        rt.enqueue("ns", "a")
        rt.enqueue("ns", "a")
        rt.enqueue("ns", "b")
        first = await rt.queue.get()
        rt.pending.discard(first)
        rt.active.add(first)
        rt.enqueue(*first)  # woken while running: remembered, not queued
        assert rt.queue.qsize() == 1 and first in rt.dirty
        return [first, await rt.queue.get()]

    assert asyncio.run(scenario()) == [("ns", "a"), ("ns", "b")]


def test_status_patch_sets_changed_keys_and_clears_removed_ones() -> None:
    old = {"phase": "Converting", "url": "u", "devices": "cpu", "replicas": 0}
    new = {"phase": "Ready", "url": "u", "replicas": 1}
    assert handlers._status_patch(old, new) == {"phase": "Ready", "replicas": 1, "devices": None}
    assert handlers._status_patch(new, new) == {}


def test_only_a_new_model_s_plain_deploying_status_waits_for_its_deployments() -> None:
    """The reconcile that created a new model's Deployments leaves a bare ``Deploying`` to the
    reconcile their watch events wake; anything else is written at once."""
    deploying = planner.Plan(
        apply=[], delete=[], status={"phase": "Deploying"}, events=[], targets=[]
    )
    assert handlers.first_report_waits({}, deploying, {"Deployment", "Service"})
    assert not handlers.first_report_waits({"phase": "Deploying"}, deploying, {"Deployment"})
    assert not handlers.first_report_waits({}, deploying, {"Service"})
    warned = dataclasses.replace(deploying, events=[planner.Event("Warning", "Fallback", "x")])
    assert not handlers.first_report_waits({}, warned, {"Deployment"})
    for phase in ("Converting", "Failed", "Ready"):
        other = dataclasses.replace(deploying, status={"phase": phase})
        assert not handlers.first_report_waits({}, other, {"Deployment"})


def test_applied_hash_is_stable_and_changes_with_the_manifest() -> None:
    manifest = {"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [80]}}
    first = handlers._with_hash({**manifest, "metadata": {"name": "s"}})
    again = handlers._with_hash(first)
    assert first["metadata"]["annotations"] == again["metadata"]["annotations"]
    changed = handlers._with_hash({**manifest, "metadata": {"name": "s"}, "spec": {"ports": [81]}})
    key = handlers.APPLIED_ANNOTATION
    assert changed["metadata"]["annotations"][key] != first["metadata"]["annotations"][key]


def test_bad_settings_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERPLANE_CONVERSION_LABELS", "{not json")
    with pytest.raises(errors.SpecError, match="INFERPLANE_"):
        handlers.load_settings()


@pytest.mark.parametrize(
    ("api_version", "kind", "namespace", "name", "path"),
    [
        ("v1", "Pod", "ml", "p", "/api/v1/namespaces/ml/pods/p"),
        ("v1", "Node", None, None, "/api/v1/nodes"),
        ("batch/v1", "Job", "ml", None, "/apis/batch/v1/namespaces/ml/jobs"),
        ("inferplane.io/v1alpha1", "InferenceModel", "ml", "m",
         "/apis/inferplane.io/v1alpha1/namespaces/ml/inferencemodels/m"),
    ],
)  # fmt: skip
def test_rest_paths(
    api_version: str, kind: str, namespace: str | None, name: str | None, path: str
) -> None:
    assert kube.path_of(api_version, kind, namespace=namespace, name=name) == path


def test_kubeconfig_with_a_token(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443/', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
    )
    loaded = kube.load_config(str(config), environ={})
    assert (loaded.server, loaded.authorization(), loaded.ssl) == (
        "https://127.0.0.1:6443",
        "Bearer abc",
        False,
    )
    info = handlers.connection_info(loaded)
    assert (info.server, info.scheme, info.token, info.insecure) == (
        "https://127.0.0.1:6443",
        "Bearer",
        "abc",
        True,
    )
    config.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    with pytest.raises(
        errors.KubeError, match=f"cannot log in to Kubernetes with kubeconfig {config}"
    ):
        kube.load_config(str(config), environ={})


def test_in_cluster_login_uses_the_service_host_and_rereads_the_token(tmp_path: Path) -> None:
    """``KUBERNETES_SERVICE_HOST``/``PORT`` (no DNS name), an IPv6 host in brackets, and the
    token file read again by the official client once its minute is up."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("first")
    pki.generate(tmp_path / "pki")
    (account / "ca.crt").write_bytes((tmp_path / "pki" / "ca.crt").read_bytes())
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    loaded = kube.load_config(environ=environ, service_account=account)
    assert loaded.server == "https://[fd00::1]:6443"
    assert loaded.authorization() == "bearer first"
    (account / "token").write_text("second")
    assert loaded.authorization() == "bearer first"  # cached for a minute, as client-go does
    assert loaded.reload is not None
    assert loaded.reload().authorization() == "bearer second"
    with pytest.raises(errors.KubeError, match="cannot log in to Kubernetes with kubeconfig"):
        kube.load_config(environ={"KUBECONFIG": str(tmp_path / "absent")})


def test_only_node_changes_that_move_pools_count() -> None:
    from tests.cluster.profile import Profile

    node = Profile(cpu=0, nvidia=1, ascend910=0, ascend310=0).nodes[0].manifest()
    beat = {
        **node,
        "status": {
            **node["status"],
            "conditions": [
                {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-11-26T02:00:00Z"}
            ],
        },
    }
    cordoned = {**node, "spec": {**node["spec"], "unschedulable": True}}
    flapped = {
        **node,
        "status": {
            **node["status"],
            "conditions": [
                {"type": "Ready", "status": "Unknown", "lastTransitionTime": "2026-11-26T02:00:00Z"}
            ],
        },
    }
    assert handlers._node_pool(node) == handlers._node_pool(beat)
    assert handlers._node_pool(cordoned) != handlers._node_pool(node)
    assert handlers._node_pool(flapped) != handlers._node_pool(node)
    assert handlers._node_pool(None) is None


def test_no_handler_needs_kopf_s_essence() -> None:
    """``NoEssence`` keeps no "last handled" state: right only while no handler detects changes
    (on.create/update/field/resume/delete) or spawns daemons and timers, which read it."""
    registry = kopf.get_default_registry()
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    assert len(list(registry._watching.get_all_handlers())) > 0
    storage = handlers.NoEssence()
    body = kopf.Body({"metadata": {"name": "m"}, "spec": {"a": 1}})
    assert storage.build(body=body) is None and storage.fetch(body=body) is None
