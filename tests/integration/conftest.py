# SPDX-License-Identifier: Apache-2.0
"""Fixtures for tests against the real test cluster (``tests/cluster``). Every test collected
under ``tests/integration/`` is marked ``integration`` automatically.

Fixtures (names are stable; other test modules rely on them):

``cluster`` (session) -> ``tests.cluster.handle.Cluster``
    Brings a cluster up once for the session (profile ``SESSION_PROFILE``) in a fresh state
    directory and tears it down at the end, also after failures; its processes die with the test
    process even if that is killed. With ``INFERPLANE_KUBECONFIG=<dir>/kubeconfig`` set (a cluster
    from ``python -m tests.cluster up``), that cluster is reused and left running.
    ``.kubeconfig`` (Path), ``.server`` (URL), ``.nodes`` (``Profile``: ``.nodes``,
    ``.of_class("nvidia")``, ``.of_product(A100)``), ``.env`` (KUBECONFIG + binaries on PATH),
    ``.bin("helm")`` (Path), ``.kubectl(*args, check=True, input=None)`` (CompletedProcess;
    raises ``KubectlError`` with stderr), ``.apply(dict_or_yaml, namespace=None)``,
    ``.get(kind, name="", namespace=None)`` (parsed JSON), ``.wait_until(fn, timeout=60,
    what=...)``, ``.hold_release(namespace, pod, result, message="")``.
``real_cluster`` (session) -> ``tests.cluster.handle.Cluster`` with ``.real_node``
    A second cluster whose only node is a real kubelet node of this machine
    (``tests.cluster.node``: containerd, runc, CNI bridge, kube-proxy, CoreDNS, metrics-server),
    so every CPU pod runs in a real container. ``.real_node`` is the ``NodeState`` (``.address``,
    ``node.load_images(state, archives)``). Skips, printing why, where the machine cannot run
    one (not root); its teardown fails when ``down`` left anything on the machine. With
    ``INFERPLANE_REAL_KUBECONFIG`` set (``python -m tests.cluster up --real-node --cpu 0 ...``)
    that cluster is reused and left running.
``real_namespace`` (function) -> str
    The same as ``namespace``, in ``real_cluster``.
``namespace`` (function) -> str
    A fresh namespace (its ``default`` ServiceAccount exists), deleted after the test.
``wait_until`` -> ``tests.cluster.handle.wait_until``
    ``wait_until(fn, timeout=60, interval=0.2, what="...")``: polls until ``fn()`` is truthy,
    returns that value, raises ``TimeoutError`` naming ``what``.
``crd`` (module) / ``operator`` (function) -> ``tests.e2e.operator_process.Operator``
    The CRD installed; the operator running as a process (standalone, file:// store).
``hold_release`` -> ``Cluster.hold_release``
    ``hold_release(namespace, pod, "succeeded" | "failed", message="")`` ends a pod labelled
    ``kwok.inferplane.io/hold: "true"`` (docs/testing.md, "Holding a pod").
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.cluster import build, control_plane, handle, node
from tests.cluster.profile import Profile
from tests.e2e import operator_process as op

SESSION_PROFILE = Profile(cpu=2, nvidia=1, ascend910=1, ascend310=1)
"""Small on purpose (6 nodes: 2 CPU, 1 A100, 1 T4, 1 Ascend 910B, 1 Ascend 310P): starts fast."""
REAL_PROFILE = Profile(cpu=0, nvidia=0, ascend910=0, ascend310=0)
"""No kwok node beside the real one: every pod the scheduler places lands in a container."""

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[handle.Cluster]:
    reuse = os.environ.get("INFERPLANE_KUBECONFIG")
    if reuse:
        state = control_plane.State.load(Path(reuse).resolve().parent)
        if state is None or not control_plane.healthy(state):
            pytest.fail(
                f"INFERPLANE_KUBECONFIG={reuse}: no healthy cluster from "
                "`python -m tests.cluster up` there"
            )
        yield handle.Cluster(state)
        return
    directory = build.cache_root() / "cluster" / f"pytest-{os.getpid()}"
    state, _ = control_plane.up(directory, SESSION_PROFILE, tie_to_parent=True)
    try:
        yield handle.Cluster(state)
    finally:
        control_plane.down(directory)
        if request.session.testsfailed:
            print(f"\ntest cluster logs kept in {directory / 'logs'}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
            control_plane.lock_file(directory).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[handle.Cluster]:
    reason = node.cannot_run()
    if reason:
        print(f"\nreal-node tests skipped: {reason}", file=sys.stderr)
        pytest.skip(f"no real node on this machine: {reason}")
    reuse = os.environ.get("INFERPLANE_REAL_KUBECONFIG")
    if reuse:
        state = control_plane.State.load(Path(reuse).resolve().parent)
        real = node.NodeState.load(Path(reuse).resolve().parent)
        if state is None or real is None or not control_plane.healthy(state):
            pytest.fail(f"INFERPLANE_REAL_KUBECONFIG={reuse}: no healthy cluster with a real node")
        yield handle.Cluster(state, real)
        return
    directory = build.cache_root() / "cluster" / f"pytest-{os.getpid()}-real"
    state, _ = control_plane.up(directory, REAL_PROFILE, tie_to_parent=True)
    real = None
    try:
        real = node.up(state, tie_to_parent=True)
        yield handle.Cluster(state, real)
    finally:
        control_plane.down(directory)
        left = node.leftovers(real) if real is not None else []
        if request.session.testsfailed or left:
            print(f"\nreal-node cluster logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
            control_plane.lock_file(directory).unlink(missing_ok=True)
    if left:
        pytest.fail("the real node's down left things on the machine:\n" + "\n".join(left))


@pytest.fixture
def namespace(cluster: handle.Cluster) -> Iterator[str]:
    with cluster.temporary_namespace() as name:
        yield name


@pytest.fixture
def real_namespace(real_cluster: handle.Cluster) -> Iterator[str]:
    """A fresh namespace in ``real_cluster``, deleted after the test."""
    with real_cluster.temporary_namespace() as name:
        yield name


@pytest.fixture(scope="module")
def crd(cluster: handle.Cluster) -> None:
    """The InferenceModel CRD, installed (server-side) from crds/."""
    op.install_crd(cluster)


@pytest.fixture
def operator(cluster: handle.Cluster, crd: None, tmp_path: Path) -> Iterator[op.Operator]:
    """``inferplane operator --standalone`` as a process, with a file:// store in tmp_path."""
    process = op.Operator(
        cluster, store=f"file://{tmp_path / 'store'}", log=tmp_path / "operator.log"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    return handle.wait_until


@pytest.fixture
def hold_release(cluster: handle.Cluster) -> Callable[[str, str, str, str], None]:
    return cluster.hold_release
