# SPDX-License-Identifier: Apache-2.0
"""``metric: inflight`` under real load, on the real node.

Everything real: server pods from the cpu image in containers on the real kubelet node,
Prometheus (built from its module) scraping them through their ``prometheus.io/*`` annotations,
KEDA's operator and metrics API server (built from KEDA's module) registered through the API
server's aggregation layer, the kube-controller-manager's HPA controller following KEDA's HPA,
and closed-loop clients sending V2 requests through the model's Service (ClusterIP, kube-proxy).
The operator runs on the host against the cluster (as the kwok integration tests run it); the
artifact is converted beforehand by the real ``inferplane convert`` (the conversion Job's fetch,
convert and publish stages, run here) under the key the operator assigns, into a store the pods
mount (a hostPath PersistentVolume), so no conversion Job runs.

The fallback: the same model with the operator's ``keda`` setting off and no custom-metrics API
scales on CPU (metrics-server's real readings of the containers), and its status says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests import images
from tests.cluster import autoscaling, handle, node
from tests.e2e import operator_process as op
from tests.models import mlp_onnx

from inferplane.api import v1alpha1
from inferplane.control import naming
from inferplane.devices import DeviceClass

ROOT = Path(__file__).resolve().parents[2]
MODEL = "busy"
POOL = naming.pool_name(MODEL, DeviceClass.CPU, None)
SIZES = (512, 2048, 2048, 10)
"""Big enough that a request of ROWS rows keeps the server busy for tens of milliseconds: the
requests in flight are then the server's, not the clients' or the network's."""
ROWS = 32
CLIENTS = 16
REPLICAS = {"min": 1, "max": 3, "metric": "inflight", "target": 4}
SCALE_UP_S = 240
"""The stated bound: from the load's start to the third pod Ready (Prometheus scrapes every 2 s,
the HPA controller syncs every 15 s, a pod starts in seconds; the rest is this busy machine)."""
SCALE_DOWN_S = 240
SCALE_DOWN_WINDOW_S = 20
CLAIM = "artifacts"


@dataclass
class Load:
    """Closed-loop clients: each sends a request, waits for the answer, sends the next, on a new
    connection each time (so kube-proxy spreads them over the pool's pods as they come)."""

    host: str
    path: str
    body: bytes
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _stop: list[threading.Event] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, stop: threading.Event) -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection(self.host, 80, timeout=60)
            try:
                conn.request("POST", self.path, self.body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                text = response.read()
                with self._lock:
                    if response.status == 200:
                        self.ok += 1
                    else:
                        self._fail(f"{response.status} {text[:200]!r}")
            except OSError as exc:
                with self._lock:
                    self._fail(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    def _fail(self, what: str) -> None:
        self.failures.append(f"at {time.monotonic() - self.started:.1f} s: {what}")

    def resize(self, clients: int) -> None:
        """Run exactly ``clients`` clients (each finishes its request before it stops)."""
        while len(self._stop) > clients:
            self._stop.pop().set()
            self._threads.pop().join(timeout=120)
        while len(self._stop) < clients:
            stop = threading.Event()
            thread = threading.Thread(target=self._client, args=(stop,), daemon=True)
            self._stop.append(stop)
            self._threads.append(thread)
            thread.start()


def _real(cluster: handle.Cluster) -> node.NodeState:
    assert cluster.real_node is not None
    return cluster.real_node


@pytest.fixture(scope="module")
def cpu_image(real_cluster: handle.Cluster) -> str:
    reason = images.missing_reason()
    if reason:
        pytest.skip(f"runtime images not built: {reason}")
    built = images.ensure(["cpu"])["cpu"]
    node.load_images(_real(real_cluster), [built.archive])
    return built.reference


@pytest.fixture(scope="module")
def stack(
    real_cluster: handle.Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[autoscaling.Stack]:
    directory = tmp_path_factory.mktemp("autoscaling")
    with autoscaling.running(real_cluster, directory, _real(real_cluster).address) as stack:
        yield stack


@pytest.fixture
def store(
    real_cluster: handle.Cluster, real_namespace: str, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A pvc:// store the host's operator and the pods share: a hostPath PersistentVolume
    bound to the claim ``artifacts`` of the test namespace. Returns (store URI, PVC root)."""
    root = tmp_path / "pvc"
    (root / CLAIM).mkdir(parents=True)
    volume = f"{real_namespace}-{CLAIM}"
    real_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany", "ReadWriteMany"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(root / CLAIM), "type": "Directory"},
                "claimRef": {"namespace": real_namespace, "name": CLAIM},
            },
        }
    )
    real_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace=real_namespace,
    )
    try:
        yield f"pvc://{CLAIM}/models", root
    finally:
        real_cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)


def _spec(source: Path) -> v1alpha1.InferenceModelSpec:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return v1alpha1.validate_spec(
        {
            "source": {"uri": source.as_uri(), "format": "onnx", "sha256": digest},
            "devices": ["cpu"],
            "replicas": REPLICAS,
            "deviceOptions": {
                "cpu": {
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"memory": "1Gi"},
                    }
                }
            },
        }
    )


@contextlib.contextmanager
def _operator(scene: Scene, **env: str) -> Iterator[op.Operator]:
    """The operator for the scene's namespace, the model's artifact published beforehand where
    the operator will look for it."""
    cluster, namespace, spec, pvc_root = scene.cluster, scene.namespace, scene.spec, scene.pvc_root
    tmp_path = scene.tmp_path
    op.install_crd(cluster)
    process = op.Operator(
        cluster,
        store=scene.store,
        log=tmp_path / "operator.log",
        INFERPLANE_PVC_ROOT=str(pvc_root),
        INFERPLANE_IMAGE_CPU=scene.image,
        INFERPLANE_IMAGE_PULL_POLICY="Never",
        INFERPLANE_SCALE_DOWN_WINDOW_S=str(SCALE_DOWN_WINDOW_S),
        **env,
    )
    op.publish_converted(
        spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        scene.source, namespace, tmp_path / "work", process.environment(),
    )  # fmt: skip
    subprocess.run(["chmod", "-R", "a+rX", str(pvc_root)], check=True)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _body() -> bytes:
    x = np.random.default_rng(0).standard_normal((ROWS, SIZES[0])).astype(np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def _pods(cluster: handle.Cluster, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.get("pods", namespace=namespace)
        if (p["metadata"].get("labels") or {}).get(naming.POOL_LABEL) == POOL
    ]


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _pool_state(cluster: handle.Cluster, namespace: str) -> list[str]:
    """What a failure needs beside it: each pod's readiness, restarts and start, and the events."""
    pods = []
    for pod in _pods(cluster, namespace):
        containers = pod.get("status", {}).get("containerStatuses") or []
        restarts = sum(c.get("restartCount", 0) for c in containers)
        pods.append(
            f"{pod['metadata']['name']} ready={_ready(pod)} restarts={restarts} "
            f"created={pod['metadata']['creationTimestamp']}"
        )
    events = [
        f"{e.get('lastTimestamp') or e.get('eventTime')} {e['involvedObject']['name']} "
        f"{e['reason']}: {e.get('message', '')[:160]}"
        for e in cluster.get("events", namespace=namespace)
    ]
    return pods + events


def _served(pod: dict[str, Any]) -> float:
    """The pod's successful inferences, from its own /metrics (the host reaches pod IPs)."""
    url = f"http://{pod['status']['podIP']}:8080/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("inferplane_requests_total{") and 'outcome="success"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _prometheus(stack: autoscaling.Stack, query: str) -> list[dict[str, Any]]:
    url = f"{stack.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _ready_model(cluster: handle.Cluster, namespace: str, spec: v1alpha1.InferenceModelSpec) -> str:
    """Create the model, wait until it serves; returns its Service's ClusterIP."""
    manifest = {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": v1alpha1.KIND,
        "metadata": {"name": MODEL},
        "spec": spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    cluster.apply(manifest, namespace=namespace)
    op.wait_phase(cluster, namespace, MODEL, "Ready", timeout=300)
    service = cluster.get("service", naming.model_service_name(MODEL), namespace=namespace)
    ip: str = service["spec"]["clusterIP"]
    # Ready says the pods are; kube-proxy programs the Service's endpoints a moment later, and
    # until then a connection to the ClusterIP is refused (no endpoints: reject). The load
    # starts once the Service routes.
    handle.wait_until(
        lambda: _routes(ip), timeout=60, interval=0.5, what=f"the Service {ip} to route"
    )
    return ip


def _routes(ip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}/v2/health/ready", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Scene:
    """A test's namespace on the real cluster, with the model's artifact already in the store."""

    cluster: handle.Cluster
    namespace: str
    spec: v1alpha1.InferenceModelSpec
    source: Path
    store: str
    pvc_root: Path
    image: str
    tmp_path: Path

    def operator(self, **env: str) -> contextlib.AbstractContextManager[op.Operator]:
        """The operator for this namespace only: a cluster shared with another session (one
        reused through INFERPLANE_REAL_KUBECONFIG) may hold models that are not ours."""
        env["INFERPLANE_NAMESPACES"] = json.dumps([self.namespace])
        return _operator(self, **env)


@pytest.fixture
def scene(
    real_cluster: handle.Cluster,
    real_namespace: str,
    cpu_image: str,
    store: tuple[str, Path],
    tmp_path: Path,
) -> Scene:
    source = mlp_onnx(tmp_path / "busy.onnx", SIZES)
    return Scene(real_cluster, real_namespace, _spec(source), source, *store, cpu_image, tmp_path)


def test_keda_scales_on_requests_in_flight_under_real_load(
    scene: Scene, stack: autoscaling.Stack
) -> None:
    real_cluster, namespace, spec = scene.cluster, scene.namespace, scene.spec
    with scene.operator(INFERPLANE_KEDA="true", INFERPLANE_PROMETHEUS_ADDRESS=stack.prometheus_url):
        ip = _ready_model(real_cluster, namespace, spec)
        scaled = real_cluster.get("scaledobject", POOL, namespace=namespace)
        assert scaled["spec"]["triggers"][0]["metadata"]["threshold"] == "4"
        hpas = handle.wait_until(
            lambda: real_cluster.get("hpa", namespace=namespace), timeout=60, what="KEDA's HPA"
        )
        assert [h["metadata"]["name"] for h in hpas] == [f"keda-hpa-{POOL}"]  # KEDA's, not ours
        query = scaled["spec"]["triggers"][0]["metadata"]["query"]
        handle.wait_until(
            lambda: _prometheus(stack, query),
            timeout=60,
            interval=2,
            what=f"Prometheus to scrape the pod (log {stack.directory})",
        )
        load = Load(ip, f"/v2/models/{MODEL}/infer", _body())
        started = time.monotonic()
        load.resize(CLIENTS)
        try:
            three = handle.wait_until(
                lambda: (lambda ready: ready if len(ready) == 3 else None)(
                    [p for p in _pods(real_cluster, namespace) if _ready(p)]
                ),
                timeout=SCALE_UP_S,
                interval=1,
                what=f"three Ready pods within {SCALE_UP_S} s of the load's start",
            )
            to_third = time.monotonic() - started
            before = {p["metadata"]["name"]: _served(p) for p in three}
            time.sleep(30)
            after = {p["metadata"]["name"]: _served(p) for p in three}
            grown = {name: after[name] - before[name] for name in before}
            peak = _prometheus(stack, query)
            load.resize(1)  # a trickle: the pool must shrink under it, losing nothing
            down_started = time.monotonic()
            handle.wait_until(
                lambda: (
                    len(_pods(real_cluster, namespace)) == 1
                    and real_cluster.get("deployment", POOL, namespace=namespace)["spec"][
                        "replicas"
                    ]
                    == 1
                ),
                timeout=SCALE_DOWN_S,
                interval=1,
                what=f"the pool back to one pod within {SCALE_DOWN_S} s",
            )
            to_one = time.monotonic() - down_started
        finally:
            load.resize(0)
        print(
            f"\nautoscaling: third pod Ready {to_third:.0f} s after the load's start; "
            f"requests per pod in 30 s at 3 pods: {sorted(grown.values())}; "
            f"in flight (pool sum) {peak[0]['value'][1] if peak else '?'}; back to one pod "
            f"{to_one:.0f} s after the load fell to 1 client; {load.ok} requests, "
            f"{len(load.failures)} failed; load average {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
        )
        assert all(n > 0 for n in grown.values()), grown  # every pod serves: the load spreads
        assert load.failures == [], (load.failures[:10], _pool_state(real_cluster, namespace))
        model = op.get_model(real_cluster, namespace, MODEL)
        signal = [
            c for c in model["status"]["conditions"] if c["type"] == "ScalingSignalUnavailable"
        ]
        assert signal and signal[0]["status"] == "False" and signal[0]["reason"] == "ScaledObject"


def test_without_keda_or_custom_metrics_it_scales_on_cpu_and_says_why(scene: Scene) -> None:
    real_cluster, namespace, spec = scene.cluster, scene.namespace, scene.spec
    assert (
        real_cluster.kubectl(
            "get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2", check=False
        ).returncode
        != 0
    )
    with scene.operator(INFERPLANE_KEDA="false"):
        ip = _ready_model(real_cluster, namespace, spec)
        model = op.get_model(real_cluster, namespace, MODEL)
        (signal,) = [
            c for c in model["status"]["conditions"] if c["type"] == "ScalingSignalUnavailable"
        ]
        assert (signal["status"], signal["reason"]) == ("True", "NoMetricsAPI")
        assert "CPU utilisation (70 %" in signal["message"]
        hpa = real_cluster.get("hpa", POOL, namespace=namespace)
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        events = [
            e
            for e in real_cluster.get("events", namespace=namespace)
            if e["reason"] == "ScalingSignalUnavailable"
        ]
        assert events and events[0]["type"] == "Warning"
        load = Load(ip, f"/v2/models/{MODEL}/infer", _body())
        load.resize(CLIENTS)
        try:
            handle.wait_until(
                lambda: len([p for p in _pods(real_cluster, namespace) if _ready(p)]) >= 2,
                timeout=SCALE_UP_S,
                interval=2,
                what="the CPU HPA to add a pod under load",
            )
        finally:
            load.resize(0)
        assert load.failures == [], (load.failures[:10], _pool_state(real_cluster, namespace))
