# SPDX-License-Identifier: Apache-2.0
"""``metric: inflight`` on the real API server: the CPU fallback and its condition where the
cluster serves no signal, KEDA's own CRD (from the KEDA module the real-node tests build) accepting
the operator's ScaledObject, and switches between the autoscalers.

Then KEDA itself (operator and metrics API server, built from its module) takes the ScaledObject
and serves its metric through the aggregation layer; kwok's pods have no metrics, so scaling
under real load is on the real node (tests/integration/test_autoscaling_real_node.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.cluster import autoscaling, build, handle, machine
from tests.e2e import operator_process as op

from inferplane.api import v1alpha1
from inferplane.control import builders, naming
from inferplane.devices import DeviceClass

SCALED_OBJECTS = "scaledobjects.keda.sh"
INFLIGHT = {"min": 1, "max": 3, "metric": "inflight", "target": 4}
PROMETHEUS = "http://prometheus.monitoring.svc:9090"
HPA = "autoscaling"
POOL = naming.pool_name("busy", DeviceClass.CPU, None)


@pytest.fixture(scope="module")
def crd(cluster: handle.Cluster) -> None:
    op.install_crd(cluster)


def _keda_crd(cluster: handle.Cluster, *, present: bool) -> None:
    if present:
        path = build.keda_crds() / "keda.sh_scaledobjects.yaml"
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        cluster.wait_established(SCALED_OBJECTS)
    else:
        cluster.kubectl("delete", "crd", SCALED_OBJECTS, "--ignore-not-found", "--wait=true")


def _operator(cluster: handle.Cluster, tmp_path: Path, prometheus: str = PROMETHEUS) -> op.Operator:
    return op.Operator(
        cluster,
        store=f"file://{tmp_path / 'store'}",
        log=tmp_path / "operator.log",
        INFERPLANE_KEDA="true",
        INFERPLANE_PROMETHEUS_ADDRESS=prometheus,
    )


def _release(cluster: handle.Cluster, namespace: str) -> None:
    (pod,) = handle.wait_until(
        lambda: op.held_pods(cluster, namespace), timeout=60, what="the held conversion pod"
    )
    op.release_with_result(cluster, namespace, pod)


def _signal(cluster: handle.Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    status = op.get_model(cluster, namespace, name).get("status") or {}
    found = [c for c in status.get("conditions", []) if c["type"] == "ScalingSignalUnavailable"]
    return found[0] if found else None


def _autoscalers(cluster: handle.Cluster, namespace: str) -> list[str]:
    out = cluster.kubectl("get", "hpa,scaledobjects", "-n", namespace, "-o", "name", check=False)
    return sorted(out.stdout.split())


def test_fallback_to_cpu_then_keda_then_back_to_cpu(
    cluster: handle.Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    _keda_crd(cluster, present=False)
    operator = _operator(cluster, tmp_path)
    operator.start()
    try:
        cluster.apply(op.model("busy", devices=["cpu"], replicas=INFLIGHT), namespace=namespace)
        _release(cluster, namespace)
        op.wait_phase(cluster, namespace, "busy", "Ready", timeout=60)
        hpa = cluster.get("hpa", POOL, namespace=namespace)
        assert hpa["spec"]["metrics"] == [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70},
                },
            }
        ]
        signal = _signal(cluster, namespace, "busy")
        assert signal is not None
        assert (signal["status"], signal["reason"]) == ("True", "NoMetricsAPI")
        assert "custom.metrics.k8s.io" in signal["message"] and "CPU" in signal["message"]
        events = cluster.get("events", namespace=namespace)
        warnings = [e for e in events if e["reason"] == "ScalingSignalUnavailable"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
        assert warnings[0]["involvedObject"]["name"] == "busy"
    finally:
        operator.stop()

    _keda_crd(cluster, present=True)
    operator = _operator(cluster, tmp_path)
    operator.start()
    try:
        handle.wait_until(
            lambda: _autoscalers(cluster, namespace) == [f"scaledobject.keda.sh/{POOL}"],
            timeout=60,
            what="the ScaledObject to replace the HPA",
        )
        stored = cluster.get("scaledobject", POOL, namespace=namespace)
        model = op.get_model(cluster, namespace, "busy")
        expected = builders.scaled_object(
            name=POOL,
            namespace=namespace,
            owner={},
            labels={},
            replicas=v1alpha1.Replicas.model_validate(INFLIGHT),
            prometheus=PROMETHEUS,
        )
        # The API server pruned nothing: every field the operator sent is in KEDA's schema.
        for field in ("scaleTargetRef", "minReplicaCount", "maxReplicaCount", "triggers"):
            assert stored["spec"][field] == expected["spec"][field], field
        (owner,) = stored["metadata"]["ownerReferences"]
        assert owner["uid"] == model["metadata"]["uid"] and owner["controller"] is True
        signal = handle.wait_until(
            lambda: (lambda s: s if s and s["status"] == "False" else None)(
                _signal(cluster, namespace, "busy")
            ),
            timeout=30,
            what="the condition to turn False",
        )
        assert signal["reason"] == "ScaledObject"
        assert op.phase(cluster, namespace, "busy") == "Ready"

        cluster.kubectl(
            "patch", "inferencemodel", "busy", "-n", namespace, "--type=merge",
            "-p", json.dumps({"spec": {"replicas": {"metric": "cpu", "target": None}}}),
        )  # fmt: skip
        handle.wait_until(
            lambda: _autoscalers(cluster, namespace) == [f"horizontalpodautoscaler.{HPA}/{POOL}"],
            timeout=60,
            what="the HPA to replace the ScaledObject",
        )
        handle.wait_until(
            lambda: _signal(cluster, namespace, "busy") is None,
            timeout=30,
            what="the condition to go (metric cpu)",
        )
    finally:
        operator.stop()


def test_keda_s_schema_rejects_what_it_does_not_know(
    cluster: handle.Cluster, crd: None, namespace: str
) -> None:
    """The schema validation is real: a ScaledObject the schema forbids is refused, so the
    operator's being accepted above means something."""
    _keda_crd(cluster, present=True)
    good = builders.scaled_object(
        name="probe", namespace=namespace, owner={}, labels={},
        replicas=v1alpha1.Replicas.model_validate(INFLIGHT), prometheus=PROMETHEUS,
    )  # fmt: skip
    del good["metadata"]["ownerReferences"]
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(good), check=False
    )
    assert result.returncode == 0, result.stderr
    bad = json.loads(json.dumps(good))
    del bad["spec"]["triggers"][0]["type"]
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert result.returncode != 0 and "type" in result.stderr
    bad = json.loads(json.dumps(good))
    bad["spec"]["minReplicaCount"] = "one"
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert result.returncode != 0 and "minReplicaCount" in result.stderr


def test_real_keda_takes_the_scaled_object_and_serves_its_metric(
    cluster: handle.Cluster, crd: None, namespace: str, tmp_path: Path
) -> None:
    """KEDA itself (operator and metrics API server, built from its module) on the API server:
    it takes the operator's ScaledObject, makes the one HPA of the pool, and the HPA controller
    reads the trigger's metric through the aggregation layer. No pod here has metrics (kwok), so
    the value is Prometheus' empty answer, 0; the real load is on the real node."""
    address = machine.host_address()
    if address is None:
        pytest.skip("the aggregation layer needs an address besides loopback")
    with autoscaling.running(cluster, tmp_path / "stack", address) as stack:
        operator = _operator(cluster, tmp_path, prometheus=stack.prometheus_url)
        operator.start()
        try:
            cluster.apply(op.model("busy", devices=["cpu"], replicas=INFLIGHT), namespace=namespace)
            _release(cluster, namespace)
            op.wait_phase(cluster, namespace, "busy", "Ready", timeout=60)
            hpa = handle.wait_until(
                lambda: cluster.get("hpa", namespace=namespace),
                timeout=60,
                what="KEDA's HPA",
            )
            assert [h["metadata"]["name"] for h in hpa] == [f"keda-hpa-{POOL}"]
            (metric,) = hpa[0]["spec"]["metrics"]
            assert metric["type"] == "External"
            assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "4"}

            def active() -> dict[str, Any] | None:
                status = cluster.get("hpa", f"keda-hpa-{POOL}", namespace=namespace)["status"]
                conditions = {c["type"]: c for c in status.get("conditions", [])}
                found = conditions.get("ScalingActive", {})
                return status if found.get("reason") == "ValidMetricFound" else None

            status = handle.wait_until(
                active, timeout=120, interval=2, what="the HPA to read KEDA's metric"
            )
            assert status["currentMetrics"][0]["external"]["current"]["averageValue"] == "0"
            scaled = cluster.get("scaledobject", POOL, namespace=namespace)
            ready = {c["type"]: c for c in scaled["status"]["conditions"]}["Ready"]
            assert ready["status"] == "True", ready
        finally:
            operator.stop()
