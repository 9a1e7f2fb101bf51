# SPDX-License-Identifier: Apache-2.0
"""Pinned versions of every binary the test cluster runs, in one place.

A binary is cached under ``$INFERPLANE_CACHE/bin/<component>-<version>/<name>``: change a version
here (and in the matching ``go/*/go.mod``) and the next ``build`` makes it anew, beside the old one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"

KUBERNETES = "v1.36.1"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
HELM = "v3.22.0"
PROMETHEUS = "v0.316.0"
"""Prometheus 3.16's Go module version (github.com/prometheus/prometheus tags v0.3xx.y)."""
KEDA = "v2.21.0"
"""The newest KEDA whose go.mod asks for Go 1.26 (v2.21.1 asks for 1.27.4)."""
COREDNS = "v1.15.0"
METRICS_SERVER = "v0.9.0"


@dataclasses.dataclass(frozen=True)
class Component:
    """One cached set of binaries, built by one ``go`` invocation per binary."""

    name: str
    version: str
    binaries: tuple[str, ...]
    packages: tuple[str, ...]
    """Go package per binary, in the order of ``binaries``."""
    module_dir: Path | None = None
    """Our go.mod that pins the dependencies; ``None`` means ``go install pkg@version``."""
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    """Go build tags."""


def _kubernetes_ldflags() -> tuple[str, ...]:
    """The version stamps Kubernetes' own build sets (hack/lib/version.sh).

    Without them the API server reports ``v0.0.0-master``, which breaks helm's ``kubeVersion``
    checks and the server's compatibility-version logic.
    """
    major, minor = KUBERNETES.removeprefix("v").split(".")[:2]
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={KUBERNETES}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return tuple(flags)


def _kubernetes(name: str, binaries: tuple[str, ...]) -> Component:
    """Commands of k8s.io/kubernetes, built from ``go/kubernetes/go.mod`` with version stamps."""
    return Component(
        name=name,
        version=KUBERNETES,
        binaries=binaries,
        packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in binaries),
        module_dir=GO_DIR / "kubernetes",
        ldflags=_kubernetes_ldflags(),
    )


_KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
_NODE_BINARIES = ("kubelet", "kube-proxy")

CONTROL_PLANE: tuple[Component, ...] = (
    Component(
        name="etcd",
        version=ETCD,
        binaries=("etcd",),
        packages=(".",),
        module_dir=GO_DIR / "etcd",
    ),
    _kubernetes("kubernetes", _KUBE_BINARIES),
    Component(
        name="kwok",
        version=KWOK,
        binaries=("kwok",),
        packages=(f"sigs.k8s.io/kwok/cmd/kwok@{KWOK}",),
    ),
    Component(
        name="helm",
        version=HELM,
        binaries=("helm",),
        packages=(f"helm.sh/helm/v3/cmd/helm@{HELM}",),
    ),
)
"""What ``up`` needs for a cluster of kwok nodes."""

REAL_NODE: tuple[Component, ...] = (
    # Same go.mod, same version stamps as the control plane; a folder of its own so that
    # adding the node binaries did not invalidate the cached control plane.
    _kubernetes("kubernetes-node", _NODE_BINARIES),
    Component(
        name="coredns",
        version=COREDNS,
        binaries=("coredns",),
        packages=(".",),
        module_dir=GO_DIR / "coredns",
    ),
    Component(
        name="metrics-server",
        version=METRICS_SERVER,
        binaries=("metrics-server",),
        packages=(f"sigs.k8s.io/metrics-server/cmd/metrics-server@{METRICS_SERVER}",),
    ),
)
"""What ``up --real-node`` adds: kubelet and kube-proxy from the control plane's go.mod, the
cluster DNS (CoreDNS with our plugin set, ``go/coredns``) and metrics-server for the HPA."""

COMPONENTS: tuple[Component, ...] = CONTROL_PLANE + REAL_NODE

AUTOSCALING: tuple[Component, ...] = (
    Component(
        name="prometheus",
        version=PROMETHEUS,
        binaries=("prometheus",),
        packages=(f"github.com/prometheus/prometheus/cmd/prometheus@{PROMETHEUS}",),
        # Only the kubernetes service discovery (plus file and http, always in); the web UI's
        # assets stay out (no builtinassets tag: the UI is not needed, the API is).
        tags=("remove_all_sd", "enable_kubernetes_sd"),
    ),
    Component(
        name="keda",
        version=KEDA,
        binaries=("keda-operator", "keda-adapter"),
        packages=(
            "github.com/kedacore/keda/v2/cmd/operator",
            "github.com/kedacore/keda/v2/cmd/adapter",
        ),
        module_dir=GO_DIR / "keda",
    ),
)
"""Built only for the autoscaling tests on the real node (``build --autoscaling``)."""

COMPONENT_OF: dict[str, Component] = {b: c for c in (*COMPONENTS, *AUTOSCALING) for b in c.binaries}
"""Binary name → the component that builds it."""
