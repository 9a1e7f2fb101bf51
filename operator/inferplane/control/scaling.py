# SPDX-License-Identifier: Apache-2.0
"""Which autoscaler drives a model's pools, from the spec and what the cluster serves (pure).

``metric: cpu`` is an autoscaling/v2 HorizontalPodAutoscaler on CPU utilisation everywhere.
``metric: inflight`` needs the requests in flight of each pod, which Kubernetes itself does not
measure; in order of preference (``OperatorSettings.inflight_autoscaler`` swaps the first two):

1. a KEDA ``ScaledObject`` with a Prometheus trigger (KEDA makes and owns the HPA), when the
   cluster serves ``keda.sh/v1alpha1`` ScaledObjects and the operator may manage them;
2. an HPA on the pods metric ``inferplane_in_flight_requests``, when an adapter serves the
   ``custom.metrics.k8s.io`` API (prometheus-adapter and the like);
3. neither: an HPA on CPU utilisation (70 %), and the model says why
   (``ScalingSignalUnavailable``), since an HPA on a metric no one serves never scales at all.

What the cluster serves is discovered by the shell (``handlers``) and passed in as ``Apis``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from inferplane.api import v1alpha1


@dataclass(frozen=True)
class Apis:
    """The autoscaling APIs the cluster serves (discovered by the shell)."""

    keda: bool = False
    """``keda.sh/v1alpha1`` ScaledObjects are served and the operator may manage them."""
    custom_metrics: bool = False
    """An adapter serves ``custom.metrics.k8s.io`` (pods metrics for an HPA)."""


NO_APIS = Apis()
"""A cluster serving neither (kwok clusters without KEDA, plain unit tests)."""


class Autoscaler(enum.StrEnum):
    """What scales one pool."""

    NONE = "none"
    """min == max: a fixed count, no autoscaler."""
    HPA = "hpa"
    """An autoscaling/v2 HorizontalPodAutoscaler of the operator's own."""
    KEDA = "keda"
    """A KEDA ScaledObject (KEDA creates and owns the HPA)."""


class Preference(enum.StrEnum):
    """Which autoscaler ``metric: inflight`` uses when the cluster serves both."""

    KEDA = "keda"
    HPA = "hpa"


@dataclass(frozen=True)
class Scaling:
    """The decision for every pool of one model."""

    autoscaler: Autoscaler
    replicas: v1alpha1.Replicas
    """The bounds and the metric the autoscaler follows (the CPU fallback's, when it applies)."""
    unavailable: str | None = None
    """Why the requested signal cannot be followed (the CPU fallback applies); None: it can."""

    @property
    def signal(self) -> str:
        """How the pools scale, in words (the condition's message)."""
        if self.autoscaler is Autoscaler.KEDA:
            return "a KEDA ScaledObject on inferplane_in_flight_requests (Prometheus trigger)"
        if self.replicas.metric is v1alpha1.ScalingMetric.INFLIGHT:
            return "an HPA on the pods metric inferplane_in_flight_requests (custom.metrics.k8s.io)"
        return f"an HPA on CPU utilisation ({self.replicas.effective_target} % of the request)"


def decide(replicas: v1alpha1.Replicas, apis: Apis, prefer: Preference) -> Scaling:
    """The autoscaler for ``replicas`` on a cluster serving ``apis``."""
    if replicas.min == replicas.max:
        return Scaling(Autoscaler.NONE, replicas)
    if replicas.metric is v1alpha1.ScalingMetric.CPU:
        return Scaling(Autoscaler.HPA, replicas)
    if apis.keda and (prefer is Preference.KEDA or not apis.custom_metrics):
        return Scaling(Autoscaler.KEDA, replicas)
    if apis.custom_metrics:
        return Scaling(Autoscaler.HPA, replicas)
    cpu = replicas.model_copy(update={"metric": v1alpha1.ScalingMetric.CPU, "target": None})
    why = (
        "metric inflight needs KEDA (ScaledObjects served, and the operator's keda setting on) "
        "or an adapter serving custom.metrics.k8s.io; the cluster has neither"
    )
    return Scaling(Autoscaler.HPA, cpu, why)
