# SPDX-License-Identifier: Apache-2.0
"""Names, labels and owner references of everything the operator creates (pure).

Kubernetes names are DNS labels (at most 63 characters, lowercase alphanumerics and '-', starting
with a letter for Services); label values at most 63 characters. Long or odd inputs are made safe
by truncating and appending a short hash of the full text, so distinct inputs stay distinct and
the same input always gives the same name (a restarted operator finds what it made).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from inferplane.api import v1alpha1
from inferplane.devices import DeviceClass

MANAGED_BY = "inferplane"
FIELD_MANAGER = "inferplane-operator"
MODEL_LABEL = "inferplane.io/model"
MODEL_UID_LABEL = "inferplane.io/model-uid"
"""The owning model's uid: what selectors match on (a name can be reused; a uid never)."""
CLASS_LABEL = "inferplane.io/device-class"
PRODUCT_LABEL = "inferplane.io/product"
POOL_LABEL = "inferplane.io/pool"
COMPONENT_LABEL = "app.kubernetes.io/component"
KEY_ANNOTATION = "inferplane.io/artifact-key"
ARTIFACT_ANNOTATION = "inferplane.io/artifact"
TARGET_ANNOTATION = "inferplane.io/target"
RETRY_ANNOTATION = "inferplane.io/retry"
"""On an InferenceModel: a new value retries its failed conversions."""
HANDOVER_MANAGER = "inferplane-handover"
"""Field manager that holds a Deployment's replicas while an autoscaler takes them over."""
SERVER = "server"
CONVERSION = "conversion"

_INVALID = re.compile(r"[^a-z0-9-]+")


def digest(text: str, length: int = 8) -> str:
    """A short stable hex digest of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_label(*parts: str, max_length: int = 63) -> str:
    """Join ``parts`` into a DNS-1035 label: lowercase, '-' separated, starting with a letter.

    Too long (or changed by cleaning) → truncated with an 8-character hash of the original.
    """
    raw = "-".join(p for p in parts if p)
    clean = _INVALID.sub("-", raw.lower()).strip("-")
    clean = re.sub(r"-{2,}", "-", clean)
    if not clean or not clean[0].isalpha():
        clean = f"im-{clean}".rstrip("-")
    if clean == raw.lower() and len(clean) <= max_length:
        return clean
    suffix = digest(raw)
    head = clean[: max_length - len(suffix) - 1].rstrip("-")
    return f"{head}-{suffix}"


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    if clean == text and len(clean) <= 63:
        return clean
    head = clean[:54].strip("-_.")
    return f"{head}-{digest(text)}" if head else digest(text)


def pool_name(model: str, device_class: DeviceClass, product: str | None) -> str:
    """Deployment / per-pool Service / HPA / PDB name of one server pool.

    ``<model>-<class>[-<product>]-<hash>``, the hash over the three parts: the model name is
    free text, so without it model ``lenet``'s cpu pool and model ``lenet-cpu``'s Service (or
    the pools of ``lenet-cpu`` and ``lenet-cpu-cpu``) would share a name. Kept to 52
    characters: ReplicaSet and Pod names add suffixes to a Deployment's name.
    """
    suffix = digest("\0".join((model, device_class.value, product or "")))
    head = dns_label(model, device_class.value, product or "", max_length=52 - len(suffix) - 1)
    return f"{head}-{suffix}"


def model_service_name(model: str) -> str:
    """The Service spanning every pool of a model: the model's own name when that is a valid
    Service name (a pool name always ends in a hash of its parts, so it cannot be one by chance;
    a model named like another's pool on purpose meets an object it does not own: reported,
    never taken over)."""
    return dns_label(model, max_length=63)


def job_name(conversion_id: str, device_class: DeviceClass, product: str | None) -> str:
    """A conversion Job's name: from the conversion's identity (source + target options), not
    from the model, so a restart or a second model with the same source finds the same Job."""
    return dns_label("convert", device_class.value, product or "", conversion_id, max_length=63)


def model_labels(model: str, uid: str) -> dict[str, str]:
    """Labels on everything made for one model."""
    return {
        "app.kubernetes.io/name": "inferplane",
        "app.kubernetes.io/instance": label_value(model),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "inferplane",
        MODEL_LABEL: label_value(model),
        MODEL_UID_LABEL: label_value(uid),
    }


def server_selector(uid: str) -> dict[str, str]:
    """Selects every server pod of a model (the model-wide Service, status.selector): by uid,
    never by name, so no other model's pods (nor a deleted namesake's) can match."""
    return {MODEL_UID_LABEL: label_value(uid), COMPONENT_LABEL: SERVER}


def pool_labels(
    model: str, uid: str, pool: str, device_class: DeviceClass, product: str | None
) -> dict[str, str]:
    labels = {
        **model_labels(model, uid),
        COMPONENT_LABEL: SERVER,
        POOL_LABEL: pool,
        CLASS_LABEL: device_class.value,
    }
    if product:
        labels[PRODUCT_LABEL] = label_value(product)
    return labels


def pool_selector(uid: str, pool: str) -> dict[str, str]:
    """Selects the server pods of one pool (Deployment, per-pool Service, PDB)."""
    return {**server_selector(uid), POOL_LABEL: pool}


def conversion_labels(device_class: DeviceClass, product: str | None) -> dict[str, str]:
    """Labels on conversion Jobs and their pods (shared across models: no model label)."""
    labels = {
        "app.kubernetes.io/name": "inferplane",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "inferplane",
        COMPONENT_LABEL: CONVERSION,
        CLASS_LABEL: device_class.value,
    }
    if product:
        labels[PRODUCT_LABEL] = label_value(product)
    return labels


def selector_string(labels: Mapping[str, str]) -> str:
    """``a=b,c=d``, the form of status.selector and ``kubectl -l``."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owner_reference(model: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to an InferenceModel body: its children go when it goes."""
    meta = model["metadata"]
    return {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": v1alpha1.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }
