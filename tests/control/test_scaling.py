# SPDX-License-Identifier: Apache-2.0
"""Autoscaling: which autoscaler each spec gets on each cluster, the KEDA ScaledObject and the
HPA it replaces, the CPU fallback's condition and Events, and switches between them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.cluster.profile import Profile

from inferplane.api import v1alpha1
from inferplane.control import builders, naming, planner, scaling
from inferplane.control.inventory import Inventory
from inferplane.control.observed import Artifact, Child, JobPhase, JobState, Observed, PoolState
from inferplane.control.settings import OperatorSettings
from inferplane.devices import DeviceClass

NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
SOURCE = {"uri": "s3://models/mlp.onnx", "format": "onnx", "sha256": "a" * 64}
CPU_ONLY = Inventory.from_nodes(
    n.manifest() for n in Profile(cpu=1, nvidia=0, ascend910=0, ascend310=0).nodes
)
SETTINGS = OperatorSettings(
    store="s3://store/artifacts", keda=True, prometheus_address="http://prom.monitoring:9090/"
)
MODEL = planner.Model("mlp", "ml", "uid-1", 2)
KEDA = scaling.Apis(keda=True)
CUSTOM = scaling.Apis(custom_metrics=True)
BOTH = scaling.Apis(keda=True, custom_metrics=True)
INFLIGHT = {"min": 1, "max": 3, "metric": "inflight", "target": 4}
POOL = naming.pool_name("mlp", DeviceClass.CPU, None)


def _replicas(**fields: Any) -> v1alpha1.Replicas:
    return v1alpha1.Replicas.model_validate(fields)


@pytest.mark.parametrize(
    ("replicas", "apis", "prefer", "autoscaler", "metric", "unavailable"),
    [
        ({"min": 2, "max": 2, "metric": "inflight"}, BOTH, "keda", "none", "inflight", False),
        ({"min": 1, "max": 3}, BOTH, "keda", "hpa", "cpu", False),
        ({"min": 1, "max": 3}, scaling.NO_APIS, "keda", "hpa", "cpu", False),
        (INFLIGHT, KEDA, "keda", "keda", "inflight", False),
        (INFLIGHT, KEDA, "hpa", "keda", "inflight", False),
        (INFLIGHT, BOTH, "keda", "keda", "inflight", False),
        (INFLIGHT, BOTH, "hpa", "hpa", "inflight", False),
        (INFLIGHT, CUSTOM, "keda", "hpa", "inflight", False),
        (INFLIGHT, scaling.NO_APIS, "keda", "hpa", "cpu", True),
    ],
)
def test_decide(
    replicas: dict[str, Any],
    apis: scaling.Apis,
    prefer: str,
    autoscaler: str,
    metric: str,
    unavailable: bool,
) -> None:
    decided = scaling.decide(_replicas(**replicas), apis, scaling.Preference(prefer))
    assert decided.autoscaler == autoscaler
    assert decided.replicas.metric == metric
    assert (decided.replicas.min, decided.replicas.max) == (replicas["min"], replicas["max"])
    assert (decided.unavailable is not None) == unavailable


def test_the_cpu_fallback_uses_the_cpu_default_target_not_the_inflight_one() -> None:
    decided = scaling.decide(_replicas(**INFLIGHT), scaling.NO_APIS, scaling.Preference.KEDA)
    hpa = builders.hpa(name="p", namespace="ml", owner={}, labels={}, replicas=decided.replicas)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_scaled_object() -> None:
    labels = {"app.kubernetes.io/name": "inferplane-server"}
    owner = {"kind": "InferenceModel", "name": "mlp", "uid": "uid-1"}
    scaled = builders.scaled_object(
        name="mlp-cpu", namespace="ml", owner=owner, labels=labels,
        replicas=_replicas(**INFLIGHT), prometheus="http://prom:9090",
    )  # fmt: skip
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["kind"] == "ScaledObject"
    assert scaled["metadata"] == {
        "name": "mlp-cpu", "namespace": "ml", "labels": labels, "ownerReferences": [owner],
    }  # fmt: skip
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mlp-cpu",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    assert "advanced" not in spec  # Kubernetes' own scale-down window unless the settings say
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "serverAddress": "http://prom:9090",
        "query": 'sum(inferplane_in_flight_requests{namespace="ml",'
        'pod=~"mlp-cpu-[a-z0-9]+-[a-z0-9]+"})',
        "threshold": "4",
    }
    windowed = builders.scaled_object(
        name="mlp-cpu", namespace="ml", owner=owner, labels=labels,
        replicas=_replicas(min=1, max=3, metric="inflight"), prometheus="http://prom:9090",
        scale_down_window_s=30,
    )  # fmt: skip
    assert windowed["spec"]["advanced"] == {
        "horizontalPodAutoscalerConfig": {
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}
        }
    }
    assert windowed["spec"]["triggers"][0]["metadata"]["threshold"] == "8"  # the default target


def test_the_query_counts_the_pool_s_pods_and_no_other() -> None:
    """PromQL's =~ is anchored like re.fullmatch: only the pool's own pods match."""
    query = builders.inflight_query(namespace="ml", deployment="mlp-cpu")
    pattern = re.search(r'pod=~"([^"]+)"', query)
    assert pattern is not None
    ours = ["mlp-cpu-7d9f8b6c4d-x2k9p", "mlp-cpu-5c8d7f9b-abcde"]
    others = ["mlp-cpu-t4-7d9f8b6c4d-x2k9p", "xmlp-cpu-7d9f8b6c4d-x2k9p", "mlp-cpu", "mlp-cp-1-2"]
    assert [p for p in ours + others if re.fullmatch(pattern.group(1), p)] == ours


def test_hpa_scale_down_window() -> None:
    hpa = builders.hpa(
        name="p", namespace="ml", owner={}, labels={}, replicas=_replicas(min=1, max=3),
        scale_down_window_s=0,
    )  # fmt: skip
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 0}}
    plain = builders.hpa(name="p", namespace="ml", owner={}, labels={}, replicas=_replicas())
    assert "behavior" not in plain["spec"]


def test_prometheus_address_must_be_an_http_url() -> None:
    assert SETTINGS.prometheus_address == "http://prom.monitoring:9090"
    for bad in ("prom:9090", "ftp://prom", "http://"):
        with pytest.raises(ValueError, match="prometheus_address must be an http"):
            OperatorSettings(prometheus_address=bad)


# --- the plan -------------------------------------------------------------------------------------


def _plan(
    replicas: dict[str, Any],
    apis: scaling.Apis,
    *,
    children: tuple[Child, ...] = (),
    previous: v1alpha1.InferenceModelStatus | None = None,
    settings: OperatorSettings = SETTINGS,
    pools: dict[str, PoolState] | None = None,
) -> planner.Plan:
    spec = v1alpha1.validate_spec({"source": SOURCE, "replicas": replicas})
    (target,) = planner.choose_targets(spec, CPU_ONLY)
    options = planner.cluster_options(spec, target, settings)
    key = planner.assigned_key(spec, options, namespace=MODEL.namespace, settings=settings)
    return planner.plan(
        model=MODEL,
        spec=spec,
        inventory=CPU_ONLY,
        observed=Observed(
            artifacts={key: Artifact(key, "b" * 64)}, children=children, pools=pools or {}
        ),
        previous=previous,
        settings=settings,
        now=NOW,
        apis=apis,
    )


def _autoscalers(plan: planner.Plan) -> list[dict[str, Any]]:
    return [m for m in plan.apply if m["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]


def _condition(plan: planner.Plan) -> dict[str, Any] | None:
    found = [c for c in plan.status["conditions"] if c["type"] == "ScalingSignalUnavailable"]
    return found[0] if found else None


def test_keda_makes_a_scaled_object_and_no_hpa_of_ours() -> None:
    plan = _plan(INFLIGHT, KEDA)
    (scaled,) = _autoscalers(plan)
    assert scaled["kind"] == "ScaledObject" and scaled["metadata"]["name"] == POOL
    assert (
        scaled["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom.monitoring:9090"
    )
    deployment = next(m for m in plan.apply if m["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]  # KEDA's HPA owns the count
    condition = _condition(plan)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "ScaledObject")
    assert "KEDA ScaledObject" in condition["message"]
    assert not [e for e in plan.events if e.reason.startswith("ScalingSignal")]


def test_custom_metrics_make_today_s_hpa_on_the_pods_metric() -> None:
    plan = _plan(INFLIGHT, CUSTOM)
    (hpa,) = _autoscalers(plan)
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "inferplane_in_flight_requests"
    condition = _condition(plan)
    assert condition is not None and condition["reason"] == "CustomMetrics"


def test_prefer_hpa_where_both_are_served() -> None:
    hpa_first = SETTINGS.model_copy(update={"inflight_autoscaler": scaling.Preference.HPA})
    plan = _plan(INFLIGHT, BOTH, settings=hpa_first)
    assert [m["kind"] for m in _autoscalers(plan)] == ["HorizontalPodAutoscaler"]
    assert [m["kind"] for m in _autoscalers(_plan(INFLIGHT, BOTH))] == ["ScaledObject"]


def test_neither_falls_back_to_cpu_with_a_condition_and_one_event() -> None:
    plan = _plan(INFLIGHT, scaling.NO_APIS)
    (hpa,) = _autoscalers(plan)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    condition = _condition(plan)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("True", "NoMetricsAPI")
    assert "neither" in condition["message"] and "CPU utilisation (70 %" in condition["message"]
    warnings = [e for e in plan.events if e.reason == "ScalingSignalUnavailable"]
    assert [e.type for e in warnings] == ["Warning"]
    previous = v1alpha1.InferenceModelStatus.model_validate(plan.status)
    again = _plan(INFLIGHT, scaling.NO_APIS, previous=previous)
    assert not [e for e in again.events if e.reason.startswith("ScalingSignal")]
    assert _condition(again) == condition  # unchanged: nothing to patch
    recovered = _plan(INFLIGHT, KEDA, previous=previous)
    assert [e.reason for e in recovered.events if e.reason.startswith("ScalingSignal")] == [
        "ScalingSignalAvailable"
    ]


def test_cpu_models_are_unchanged_and_carry_no_scaling_condition() -> None:
    for apis in (scaling.NO_APIS, KEDA, BOTH):
        plan = _plan({"min": 1, "max": 3}, apis)
        (hpa,) = _autoscalers(plan)
        assert hpa["kind"] == "HorizontalPodAutoscaler"
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert _condition(plan) is None
    fixed = _plan({"min": 2, "max": 2, "metric": "inflight"}, KEDA)
    assert _autoscalers(fixed) == [] and _condition(fixed) is None


@pytest.mark.parametrize(
    ("replicas", "apis", "stale"),
    [
        (INFLIGHT, KEDA, ("autoscaling/v2", "HorizontalPodAutoscaler", POOL)),
        ({"min": 1, "max": 3}, KEDA, ("keda.sh/v1alpha1", "ScaledObject", POOL)),
        (
            {"min": 3, "max": 3, "metric": "inflight"},
            KEDA,
            ("keda.sh/v1alpha1", "ScaledObject", POOL),
        ),
    ],
)
def test_switching_deletes_the_other_autoscaler(
    replicas: dict[str, Any], apis: scaling.Apis, stale: tuple[str, str, str]
) -> None:
    children = (
        Child("apps/v1", "Deployment", POOL),
        Child("autoscaling/v2", "HorizontalPodAutoscaler", POOL),
        Child("keda.sh/v1alpha1", "ScaledObject", POOL),
    )
    plan = _plan(replicas, apis, children=children)
    assert stale in plan.delete
    kept = {(m["kind"], m["metadata"]["name"]) for m in _autoscalers(plan)}
    assert not kept & {(stale[1], stale[2])}
    assert ("apps/v1", "Deployment", POOL) not in plan.delete


def test_a_failed_conversion_job_leaves_no_autoscaler() -> None:
    spec = v1alpha1.validate_spec({"source": {**SOURCE, "sha256": None}, "replicas": INFLIGHT})
    (job,) = planner.conversion_jobs(spec, planner.choose_targets(spec, CPU_ONLY), SETTINGS)
    plan = planner.plan(
        model=MODEL, spec=spec, inventory=CPU_ONLY,
        observed=Observed(jobs={job: JobState(job, JobPhase.FAILED, "boom")}),
        previous=None, settings=SETTINGS, now=NOW, apis=KEDA,
    )  # fmt: skip
    assert _autoscalers(plan) == []


def test_turning_to_keda_hands_the_replica_count_over_once() -> None:
    """From a fixed count to KEDA: a second field manager keeps what runs (never below the
    ready pods) until KEDA's HPA writes its own; once a ScaledObject exists, no more hand-over."""
    running = {POOL: PoolState(POOL, "k", 3, 3, 3, True, wanted=3)}
    children = (Child("apps/v1", "Deployment", POOL),)
    first = _plan(INFLIGHT, KEDA, children=children, pools=running)
    assert [m["spec"] for m in first.handover] == [{"replicas": 3}]
    deployment = next(m for m in first.apply if m["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]
    scaled = (*children, Child("keda.sh/v1alpha1", "ScaledObject", POOL))
    assert _plan(INFLIGHT, KEDA, children=scaled, pools=running).handover == []
    ours = (*children, Child("autoscaling/v2", "HorizontalPodAutoscaler", POOL))
    switching = _plan(INFLIGHT, KEDA, children=ours, pools=running)
    assert switching.handover == []  # an HPA holds the count until the ScaledObject's does
    assert ("autoscaling/v2", "HorizontalPodAutoscaler", POOL) in switching.delete
