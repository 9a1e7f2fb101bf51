# SPDX-License-Identifier: Apache-2.0
"""Kubernetes manifests as plain dicts: conversion Jobs, server Deployments, Services, HPAs, KEDA
ScaledObjects, PDBs.

Pure and keyword-only: every input is an argument, nothing reads the environment or the API.
Every pod runs under the ``restricted`` Pod Security Standard (non-root, no privilege escalation,
all capabilities dropped, RuntimeDefault seccomp, read-only root filesystem with an emptyDir /tmp).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferplane.api import v1alpha1
from inferplane.control import naming
from inferplane.control.inventory import DraOffer, Taint
from inferplane.control.settings import OperatorSettings
from inferplane.devices import ArtifactFormat, BackendName, DeviceClass

Manifest = dict[str, Any]

MODELS_DIR = "/models"
WORK_DIR = "/work"
"""A conversion Job's shared directories: ``source`` (fetch writes), ``out`` (convert writes)."""
STEP_RESOURCES: Manifest = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "2Gi"},
}
"""Resources of a conversion Job's fetch and publish steps (copies and digests, no model)."""
NETWORK_DIR = "/network"
NETWORK_CODE_DIR = "/code"
"""Where an image named by spec.source.image keeps the network's Python code."""
TERMINATION_LOG = "/dev/termination-log"
RUN_AS = 65532
INFLIGHT_METRIC = "inferplane_in_flight_requests"
"""The server's gauge of requests in flight (serving/metrics.py), for HPA pods metrics and KEDA's
Prometheus triggers."""
KEDA_API_VERSION = "keda.sh/v1alpha1"
SERVER_DRAIN_S = 5
"""After SIGTERM the server still accepts this long (ready 503) while endpoints move away."""
SERVER_GRACEFUL_S = 20
"""Then it waits this long for requests in flight."""
SERVER_GRACE_S = SERVER_DRAIN_S + SERVER_GRACEFUL_S + 5
"""The pod's terminationGracePeriodSeconds: the drain, the wait, and a margin to exit."""
HOSTNAME_LABEL = "kubernetes.io/hostname"
CLAIM_NAME = "device"
"""The name of the device claim in a pod (``spec.resourceClaims``) and of the request in it."""
CLAIM_TEMPLATE_API = "resource.k8s.io/v1"

FETCH_PROGRAM = (
    "import sys, pathlib; from inferplane.artifacts import store; "
    "print(store.open_store(sys.argv[1]).fetch(sys.argv[2], pathlib.Path(sys.argv[3])))"
)
"""The init container's program: fetch one artifact from the store into the models volume."""


@dataclass(frozen=True)
class Placement:
    """Where a pod may run: the device resource, node labels and taints of its pool, and what
    the settings add for its class (runtimeClass, tolerations)."""

    device_class: DeviceClass
    resource: str | None = None
    selector: Mapping[str, str] | None = None
    taints: Sequence[Taint] = ()
    runtime_class: str | None = None
    tolerations: Sequence[Mapping[str, Any]] = ()
    any_of: Mapping[str, Sequence[str]] | None = None
    """Node labels whose value must be one of these."""
    claim_template: str | None = None
    """DRA: the ResourceClaimTemplate the pod's device claim comes from (then no resource)."""
    avoid_nodes: Sequence[str] = ()
    """Nodes a cpu pod keeps off: those offering accelerators through DRA, which carry no
    label to avoid."""

    @classmethod
    def of_class(
        cls,
        device_class: DeviceClass,
        settings: OperatorSettings,
        *,
        resource: str | None = None,
        selector: Mapping[str, str] | None = None,
        taints: Sequence[Taint] = (),
        any_of: Mapping[str, Sequence[str]] | None = None,
        claim_template: str | None = None,
        avoid_nodes: Sequence[str] = (),
    ) -> Placement:
        """A placement with the class's runtimeClass and tolerations from the settings."""
        device = settings.devices[device_class]
        return cls(
            device_class, None if claim_template else resource, selector, taints,
            device.runtime_class_name or None, device.tolerations, any_of, claim_template,
            avoid_nodes,
        )  # fmt: skip


def pod_security_context() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pvc_claim(uri: str | None) -> str | None:
    if uri and uri.startswith("pvc://"):
        return urllib.parse.urlparse(uri).netloc
    return None


def store_location(store: str, key: str) -> str:
    """The URI of an artifact in the store (``<store>/<key>``)."""
    return f"{store.rstrip('/')}/{key}"


def artifact_path(*, store: str, key: str, pvc_root: str) -> str:
    """Where the server finds the artifact directory inside its pod."""
    claim = _pvc_claim(store)
    if claim is not None:
        rest = urllib.parse.urlparse(store).path.strip("/")
        return "/".join(p for p in (pvc_root.rstrip("/"), claim, rest, key) if p)
    if store.startswith("s3://"):
        return f"{MODELS_DIR}/{key}"
    local = store[len("file://") :] if store.startswith("file://") else store
    return f"{local.rstrip('/')}/{key}"


def _volumes(claims: Sequence[str], *, pvc_root: str) -> tuple[list[Manifest], list[Manifest]]:
    """Volumes and mounts: a writable /tmp and each PVC the pod reads or writes."""
    volumes: list[Manifest] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[Manifest] = [{"name": "tmp", "mountPath": "/tmp"}]
    for claim in dict.fromkeys(claims):
        volumes.append(
            {"name": naming.dns_label("pvc", claim), "persistentVolumeClaim": {"claimName": claim}}
        )
    return volumes, mounts + _claim_mounts(claims, pvc_root=pvc_root, read_only=False)


def _claim_mounts(claims: Sequence[str], *, pvc_root: str, read_only: bool) -> list[Manifest]:
    """Mounts of PVCs (volumes named by ``_volumes``) at ``<pvc_root>/<claim>``."""
    mounts: list[Manifest] = []
    for claim in dict.fromkeys(claims):
        mount: Manifest = {
            "name": naming.dns_label("pvc", claim),
            "mountPath": f"{pvc_root.rstrip('/')}/{claim}",
        }
        if read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return mounts


def _store_env(settings: OperatorSettings) -> tuple[list[Manifest], list[Manifest]]:
    env = [{"name": "INFERPLANE_PVC_ROOT", "value": settings.pvc_root}]
    if settings.s3_endpoint:
        env.append({"name": "INFERPLANE_S3_ENDPOINT", "value": settings.s3_endpoint})
    env_from = [{"secretRef": {"name": settings.store_secret}}] if settings.store_secret else []
    return env, env_from


def _schedule(placement: Placement, *, keep_off: Sequence[str]) -> Manifest:
    """nodeSelector, tolerations, affinity and runtimeClassName of a pod spec; ``keep_off``:
    keys of labels whose nodes the pod must not run on."""
    spec: Manifest = {}
    if placement.selector:
        spec["nodeSelector"] = dict(placement.selector)
    tolerations = [t.toleration() for t in placement.taints]
    tolerations += [dict(t) for t in placement.tolerations if t not in tolerations]
    if tolerations:
        spec["tolerations"] = tolerations
    if placement.runtime_class:
        spec["runtimeClassName"] = placement.runtime_class
    expressions: list[Manifest] = [
        {"key": k, "operator": "In", "values": list(v)}
        for k, v in sorted((placement.any_of or {}).items())
    ]
    expressions += [{"key": k, "operator": "DoesNotExist"} for k in keep_off]
    if placement.avoid_nodes and placement.device_class is DeviceClass.CPU:
        expressions.append(
            {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": list(placement.avoid_nodes)}
        )
    if expressions:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": expressions}]
                }
            }
        }
    if placement.claim_template:
        spec["resourceClaims"] = [
            {"name": CLAIM_NAME, "resourceClaimTemplateName": placement.claim_template}
        ]
    return spec


def _cel_string(text: str) -> str:
    """A CEL string literal (JSON's escaping is valid CEL for these characters)."""
    return json.dumps(text)


def device_selectors(offer: DraOffer, *, min_memory: str | int | None = None) -> list[str]:
    """CEL expressions selecting the pool's devices: the product (every spelling the pool's
    devices give it) and, if asked, a least memory capacity."""
    expressions = []
    if offer.product_attribute and offer.product_values:
        domain, name = offer.product_attribute.split("/", 1)
        attribute = f"device.attributes[{_cel_string(domain)}].{name}"
        values = ", ".join(_cel_string(v) for v in offer.product_values)
        expressions.append(f"has({attribute}) && {attribute} in [{values}]")
    if min_memory is not None and offer.memory_capacity:
        domain, name = offer.memory_capacity.split("/", 1)
        capacity = f"device.capacity[{_cel_string(domain)}].{name}"
        least = f"quantity({_cel_string(str(min_memory))})"
        expressions.append(f"has({capacity}) && {capacity}.compareTo({least}) >= 0")
    return expressions


def claim_template_spec(offer: DraOffer, *, min_memory: str | int | None = None) -> Manifest:
    """The ResourceClaim a pod of the pool gets: exactly one device of the driver's
    DeviceClass, of the pool's product (resource.k8s.io/v1: the request's ``exactly``)."""
    request: Manifest = {
        "deviceClassName": offer.device_class_name,
        "allocationMode": "ExactCount",
        "count": 1,
    }
    selectors = device_selectors(offer, min_memory=min_memory)
    if selectors:
        request["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    return {"devices": {"requests": [{"name": CLAIM_NAME, "exactly": request}]}}


def claim_template_name(base: str, spec: Mapping[str, Any]) -> str:
    """A ResourceClaimTemplate's name: its spec is immutable, so a changed spec (a new product
    spelling, another memory floor) is a new template, named by a digest of it."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return naming.dns_label(base, naming.digest(text), max_length=63)


def claim_template(
    *,
    name: str,
    namespace: str,
    owners: Sequence[Manifest],
    labels: Mapping[str, str],
    spec: Manifest,
) -> Manifest:
    """A ResourceClaimTemplate (resource.k8s.io/v1); the claims made from it carry ``labels``,
    so the operator finds a pool's claims by them."""
    return {
        "apiVersion": CLAIM_TEMPLATE_API,
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": list(owners),
        },
        "spec": {"metadata": {"labels": dict(labels)}, "spec": spec},
    }


def resources(
    *,
    base: Mapping[str, Any],
    device_resource: str | None,
    override: v1alpha1.ResourceRequirements | None = None,
    claim: bool = False,
) -> Manifest:
    """Container resources: defaults, one device of the pool's resource (or, with ``claim``,
    the pod's DRA device claim), then the override."""
    out: Manifest = {k: dict(v) for k, v in base.items()}
    if device_resource:
        for part in ("requests", "limits"):
            out.setdefault(part, {})[device_resource] = 1
    if claim:
        out["claims"] = [{"name": CLAIM_NAME}]
    if override is not None:
        for part in ("requests", "limits"):
            extra = getattr(override, part)
            if extra:
                out.setdefault(part, {}).update(extra)
    return out


def convert_args(
    *,
    spec: v1alpha1.InferenceModelSpec,
    model: str,
    target_format: ArtifactFormat,
    device_class: DeviceClass,
    product: str | None,
    precision: str,
    batch: tuple[int, int, int] | None,
    tool: str,
) -> list[str]:
    """``inferplane convert`` argv for one target, every stage alike (see the convert command in
    cli.py); ``tool``: the conversion image, named in the key as the converting tool."""
    source = spec.source
    args = ["inferplane", "convert", "--source", source.uri, "--format", source.format.value]
    if source.network:
        args += ["--network", source.network]
    for tensor in source.inputs:
        args += ["--input", str(tensor)]
    args += ["--to", target_format.value, "--device", device_class.value]
    if product:
        args += ["--device-spec", product]
    args += ["--precision", precision]
    if batch:
        args += ["--batch", ",".join(map(str, batch))]
    if source.format is ArtifactFormat.MINDSPORE_CHECKPOINT:
        args += ["--code-id", source.image or ""]
    args += ["--tool-id", tool, "--name", model]
    if source.sha256:
        args += ["--sha256", source.sha256]
    check = spec.verification
    args += ["--samples", str(check.samples)]
    if check.atol is not None:
        args += ["--atol", repr(check.atol)]
    if check.rtol is not None:
        args += ["--rtol", repr(check.rtol)]
    if check.validation:
        args += ["--validation", check.validation]
        args += ["--max-accuracy-drop", repr(check.max_accuracy_drop)]
    return [*args, "--work", WORK_DIR]


def _network_code(image: str | None, settings: OperatorSettings) -> list[Manifest]:
    """Init container copying the network's code out of spec.source.image (user code: it holds
    nothing but the network volume)."""
    if not image:
        return []
    return [
        {
            "name": "network-code",
            "image": image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["cp", "-R", f"{NETWORK_CODE_DIR}/.", NETWORK_DIR],
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": "network", "mountPath": NETWORK_DIR}],
        }
    ]


def job(
    *,
    name: str,
    namespace: str,
    owners: Sequence[Manifest],
    spec: v1alpha1.InferenceModelSpec,
    model: str,
    target_format: ArtifactFormat,
    placement: Placement,
    product: str | None,
    precision: str,
    batch: tuple[int, int, int] | None,
    key: str,
    settings: OperatorSettings,
) -> Manifest:
    """A conversion Job, split so that no container running user code holds a credential:

    1. ``network-code`` (only with ``spec.source.image``, the user's image): copies the network's
       code into the ``network`` volume.
    2. ``fetch`` (inferplane's code; the source's read credentials; source PVCs read-only): the
       source, validation set and sample inputs into the ``source`` volume, with their digest.
    3. ``convert`` (runs the network's code: no Secret, no store, no service-account token;
       ``source`` and ``network`` read-only): converts and verifies into the ``out`` volume.
    4. ``publish`` (inferplane's code; the store's credentials): computes the files' digests and
       publishes under ``key``, the key the operator assigned, passed here and never reported
       back: the operator reads the result from the store itself.

    A failure's last log lines become the termination message (FallbackToLogsOnError), surfaced
    in the status. TensorRT engines are built on a node of the GPU product they target, with one
    GPU (the convert step holds it).
    """
    labels = naming.conversion_labels(placement.device_class, product)
    source_claims = [
        c for c in map(_pvc_claim, (spec.source.uri, spec.verification.validation)) if c
    ]
    store_claims = [c for c in (_pvc_claim(settings.store),) if c]
    volumes, _ = _volumes([*source_claims, *store_claims], pvc_root=settings.pvc_root)
    volumes += [{"name": "source", "emptyDir": {}}, {"name": "out", "emptyDir": {}}]
    tmp = {"name": "tmp", "mountPath": "/tmp"}
    store_env, store_secret = _store_env(settings)
    argv = convert_args(
        spec=spec,
        model=model,
        target_format=target_format,
        device_class=placement.device_class,
        product=product,
        precision=precision,
        batch=batch,
        tool=settings.conversion_image(target_format),
    )
    image = settings.conversion_image(target_format)
    on_device = target_format is ArtifactFormat.TENSORRT

    def step(name: str, stage: str, mounts: list[Manifest], **extra: Any) -> Manifest:
        return {
            "name": name,
            "image": image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": [*argv, "--stage", stage, *extra.pop("args", [])],
            "env": [
                {"name": "INFERPLANE_TERMINATION_LOG", "value": TERMINATION_LOG},
                *extra.pop("env", []),
            ],
            "resources": extra.pop(
                "resources", {part: dict(values) for part, values in STEP_RESOURCES.items()}
            ),
            "securityContext": container_security_context(),
            "terminationMessagePath": TERMINATION_LOG,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [tmp, *mounts],
            **extra,
        }

    source_secret = settings.source_secret or settings.store_secret
    fetch = step(
        "fetch",
        "fetch",
        [
            {"name": "source", "mountPath": f"{WORK_DIR}/source"},
            *_claim_mounts(source_claims, pvc_root=settings.pvc_root, read_only=True),
        ],
        env=store_env,
    )
    if source_secret:
        fetch["envFrom"] = [{"secretRef": {"name": source_secret}}]
    network = _network_code(spec.source.image, settings)
    convert_mounts: list[Manifest] = [
        {"name": "source", "mountPath": f"{WORK_DIR}/source", "readOnly": True},
        {"name": "out", "mountPath": f"{WORK_DIR}/out"},
    ]
    convert_env: list[Manifest] = []
    if network:
        volumes.append({"name": "network", "emptyDir": {}})
        convert_mounts.append({"name": "network", "mountPath": NETWORK_DIR, "readOnly": True})
        convert_env.append({"name": "PYTHONPATH", "value": NETWORK_DIR})
    convert = step(
        "convert",
        "convert",
        convert_mounts,
        env=convert_env,
        resources=resources(
            base=settings.conversion_resources,
            device_resource=placement.resource if on_device else None,
            claim=on_device and placement.claim_template is not None,
        ),
    )
    publish = step(
        "publish",
        "publish",
        [
            {"name": "source", "mountPath": f"{WORK_DIR}/source", "readOnly": True},
            {"name": "out", "mountPath": f"{WORK_DIR}/out"},
            *_claim_mounts(store_claims, pvc_root=settings.pvc_root, read_only=False),
        ],
        args=["--store", settings.store, "--key", key, "--json"],
        env=store_env,
    )
    if store_secret:
        publish["envFrom"] = store_secret
    pod_spec: Manifest = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(),
        "initContainers": [*network, fetch, convert],
        "containers": [publish],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if on_device:
        pod_spec.update(
            _schedule(placement, keep_off=settings.avoided_labels(placement.device_class))
        )
    else:
        off_device = Placement(DeviceClass.CPU, avoid_nodes=placement.avoid_nodes)
        pod_spec.update(_schedule(off_device, keep_off=settings.avoided_labels(DeviceClass.CPU)))
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {naming.KEY_ANNOTATION: key},
            "ownerReferences": list(owners),
        },
        "spec": {
            "backoffLimit": settings.job_backoff_limit,
            "activeDeadlineSeconds": settings.job_deadline_s,
            "ttlSecondsAfterFinished": settings.job_ttl_s,
            "template": {
                "metadata": {"labels": {**labels, **settings.conversion_labels}},
                "spec": pod_spec,
            },
        },
    }


def serve_args(
    *,
    directory: str,
    model: str,
    backend: BackendName,
    device_class: DeviceClass,
    batching: v1alpha1.Batching,
    port: int,
) -> list[str]:
    """``inferplane serve`` argv for one pool (see the serve command in cli.py)."""
    return [
        "inferplane", "serve", directory,
        "--name", model,
        "--host", "0.0.0.0",
        "--port", str(port),
        "--backend", backend.value,
        "--device", device_class.value,
        "--max-batch-size", str(batching.max_batch_size),
        "--max-queue-delay-ms", repr(batching.max_delay_ms),
        "--drain-s", str(SERVER_DRAIN_S),
        "--graceful-timeout-s", str(SERVER_GRACEFUL_S),
        "--log-level", "info",
    ]  # fmt: skip


def deployment(
    *,
    name: str,
    namespace: str,
    owner: Manifest,
    model: str,
    spec: v1alpha1.InferenceModelSpec,
    placement: Placement,
    product: str | None,
    backend: BackendName,
    key: str,
    settings: OperatorSettings,
) -> Manifest:
    """One server pool: ``inferplane serve`` on the artifact, on nodes of the pool's device.

    The artifact comes from the store: an init container fetches it for s3://, a pvc:// store is
    mounted read-only. A new artifact changes the pod template, so it rolls out with
    maxUnavailable 0: old pods go only when new ones are ready. Replicas are left to the HPA
    when the spec allows scaling (min < max; ``replicas_only`` hands them over). Labels and
    selector carry the owner's uid (``owner``), never a name prefix.
    """
    labels = naming.pool_labels(model, owner["uid"], name, placement.device_class, product)
    selector = naming.pool_selector(owner["uid"], name)
    directory = artifact_path(store=settings.store, key=key, pvc_root=settings.pvc_root)
    claim = _pvc_claim(settings.store)
    volumes, mounts = _volumes([claim] if claim else [], pvc_root=settings.pvc_root)
    if claim:
        for mount in mounts[1:]:
            mount["readOnly"] = True
    init: list[Manifest] = []
    if settings.store.startswith("s3://"):
        env, env_from = _store_env(settings)
        volumes.append({"name": "models", "emptyDir": {}})
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
        fetch: Manifest = {
            "name": "fetch-artifact",
            "image": settings.server_image(placement.device_class, backend),
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["python", "-c", FETCH_PROGRAM, settings.store, key, MODELS_DIR],
            "env": env,
            "securityContext": container_security_context(),
            "volumeMounts": [
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "models", "mountPath": MODELS_DIR},
            ],
        }
        if env_from:
            fetch["envFrom"] = env_from
        init.append(fetch)
    port = settings.server_port
    probe = {"httpGet": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 2}
    container: Manifest = {
        "name": "server",
        "image": settings.server_image(placement.device_class, backend),
        "imagePullPolicy": settings.image_pull_policy,
        "command": serve_args(
            directory=directory,
            model=model,
            backend=backend,
            device_class=placement.device_class,
            batching=spec.batching,
            port=port,
        ),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": resources(
            base=settings.devices[placement.device_class].resources,
            device_resource=placement.resource,
            override=spec.device_options.get(placement.device_class).resources,
            claim=placement.claim_template is not None,
        ),
        "readinessProbe": _probe(probe, "/v2/health/ready", failures=3),
        "livenessProbe": _probe(probe, "/v2/health/live", failures=3),
        "startupProbe": _probe({**probe, "periodSeconds": 5}, "/v2/health/live", failures=120),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    pod_spec: Manifest = {
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": SERVER_GRACE_S,
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        **_schedule(placement, keep_off=settings.avoided_labels(placement.device_class)),
    }
    if init:
        pod_spec["initContainers"] = init
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    deployment_spec: Manifest = {
        "selector": {"matchLabels": selector},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    naming.KEY_ANNOTATION: key,
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(port),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": pod_spec,
        },
    }
    if spec.replicas.min == spec.replicas.max:
        deployment_spec["replicas"] = spec.replicas.min
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {naming.KEY_ANNOTATION: key},
            "ownerReferences": [owner],
        },
        "spec": deployment_spec,
    }


def replicas_only(*, name: str, namespace: str, replicas: int) -> Manifest:
    """A Deployment apply configuration holding nothing but ``spec.replicas``: applied with a
    manager of its own (``naming.HANDOVER_MANAGER``), it keeps the count when the operator's
    manager stops sending it, until the autoscaler writes its own (Kubernetes' documented way
    to transfer ownership of a field between managers)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas},
    }


def _probe(base: Manifest, path: str, *, failures: int) -> Manifest:
    return {**base, "httpGet": {**base["httpGet"], "path": path}, "failureThreshold": failures}


def service(
    *,
    name: str,
    namespace: str,
    owner: Manifest,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    port: int,
    headless: bool = False,
) -> Manifest:
    """A Service on port 80 (and the server's own port) in front of server pods: ClusterIP for
    the model, headless for one pool (DNS to its pods; no cluster IP spent per pool)."""
    spec: Manifest = {
        "type": "ClusterIP",
        "selector": dict(selector),
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "http-direct", "port": port, "targetPort": "http", "protocol": "TCP"},
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _child_metadata(name, namespace, labels, owner),
        "spec": spec,
    }


def _child_metadata(
    name: str, namespace: str, labels: Mapping[str, str], owner: Manifest
) -> Manifest:
    """The metadata of an object a model owns."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner],
    }


def _behavior(scale_down_window_s: int | None) -> Manifest:
    """HPA ``behavior`` with the scale-down stabilization window (None: Kubernetes' defaults)."""
    if scale_down_window_s is None:
        return {}
    return {"behavior": {"scaleDown": {"stabilizationWindowSeconds": scale_down_window_s}}}


def hpa(
    *,
    name: str,
    namespace: str,
    owner: Manifest,
    labels: Mapping[str, str],
    replicas: v1alpha1.Replicas,
    scale_down_window_s: int | None = None,
) -> Manifest:
    """An autoscaling/v2 HPA on CPU utilisation or on requests in flight per pod."""
    if replicas.metric is v1alpha1.ScalingMetric.CPU:
        metric: Manifest = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": replicas.effective_target},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": INFLIGHT_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(replicas.effective_target)},
            },
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _child_metadata(name, namespace, labels, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": replicas.min,
            "maxReplicas": replicas.max,
            "metrics": [metric],
            **_behavior(scale_down_window_s),
        },
    }


def inflight_query(*, namespace: str, deployment: str) -> str:
    """PromQL for the requests in flight of one pool, summed over its pods.

    Pods are matched by name: a Deployment's pods are ``<deployment>-<template hash>-<suffix>``,
    and PromQL regexes are anchored, so another pool's pods (``<deployment>-x-...``) never match.
    The ``namespace`` and ``pod`` labels are those the annotation scrape configuration in
    docs/install.md sets from the pod's metadata.
    """
    pods = f"{deployment}-[a-z0-9]+-[a-z0-9]+"
    return f'sum({INFLIGHT_METRIC}{{namespace="{namespace}",pod=~"{pods}"}})'


def scaled_object(
    *,
    name: str,
    namespace: str,
    owner: Manifest,
    labels: Mapping[str, str],
    replicas: v1alpha1.Replicas,
    prometheus: str,
    scale_down_window_s: int | None = None,
) -> Manifest:
    """A KEDA ScaledObject: the pool's requests in flight, averaged per pod, held at ``target``.

    The trigger's ``AverageValue`` metric type makes KEDA's HPA divide the query (the pool's
    sum) by the pool's pod count, so ``threshold`` is the target per pod, as for the HPA pods
    metric. KEDA creates the HPA itself (``keda-hpa-<name>``) and owns it.
    """
    behavior = _behavior(scale_down_window_s)
    advanced = {"advanced": {"horizontalPodAutoscalerConfig": behavior}} if behavior else {}
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": _child_metadata(name, namespace, labels, owner),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": replicas.min,
            "maxReplicaCount": replicas.max,
            **advanced,
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus,
                        "query": inflight_query(namespace=namespace, deployment=name),
                        "threshold": str(replicas.effective_target),
                    },
                }
            ],
        },
    }


def pdb(
    *,
    name: str,
    namespace: str,
    owner: Manifest,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
) -> Manifest:
    """At most one server pod of a pool voluntarily disrupted at a time (drains still proceed)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _child_metadata(name, namespace, labels, owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
    }
