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


_KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")

COMPONENTS: tuple[Component, ...] = (
    Component(
        name="etcd",
        version=ETCD,
        binaries=("etcd",),
        packages=(".",),
        module_dir=GO_DIR / "etcd",
    ),
    Component(
        name="kubernetes",
        version=KUBERNETES,
        binaries=_KUBE_BINARIES,
        packages=tuple(f"k8s.io/kubernetes/cmd/{b}" for b in _KUBE_BINARIES),
        module_dir=GO_DIR / "kubernetes",
        ldflags=_kubernetes_ldflags(),
    ),
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

COMPONENT_OF: dict[str, Component] = {b: c for c in COMPONENTS for b in c.binaries}
"""Binary name → the component that builds it."""
