# SPDX-License-Identifier: Apache-2.0
"""inferplane installed as a user installs it, on the real node: shared by
``test_real_node_e2e.py`` and the benchmark ``tests/bench/real_node.py``.

``installed(cluster, tmp)`` loads the locally built images (``tests.images``) into the node's
containerd (the network's code ships as an image too, one layer ``/code/network.py`` on top of
the cpu image, as a user would ship it), puts LeNet's checkpoints on a hostPath
PersistentVolume and on S3 (moto's server on the machine's own address, which pods reach over
the bridge), and ``helm install``s the chart with pull policy Never. ``Load`` is a closed loop
of V2 requests through a Service.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tests import loopback, models
from tests.cluster import handle, node, oci

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "inferplane"
RELEASE = "ip"
CODE_IMAGE = "inferplane.test/lenet-code:1"
INPUT = "x"
SOURCE_BUCKET = "sources"
SOURCE_SECRET = "source-s3"
"""The Secret with the S3 source's credentials, given to the conversion's fetch step only."""
S3_SOURCE = f"s3://{SOURCE_BUCKET}/models/lenet.ckpt"


class Product:
    """What the module's fixture installed: the release's namespace, the store's folder, and
    the checkpoint put on S3 (its local copy, for MindSpore's reference answers)."""

    def __init__(
        self, cluster: handle.Cluster, namespace: str, store: Path, s3_checkpoint: Path
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.store = store
        self.s3_checkpoint = s3_checkpoint

    def model(self, name: str, checkpoint: str, **spec: Any) -> dict[str, Any]:
        """LeNet's InferenceModel, one server pod unless ``replicas`` says otherwise (an HPA
        scaling the pool to 3 under load filled the 2-CPU node: a rollout's surge pod, with
        maxUnavailable 0, could never be scheduled); ``checkpoint``: a file in the volume's
        ``models/`` folder, or a whole URI."""
        uri = checkpoint if "://" in checkpoint else f"pvc://store/models/{checkpoint}"
        return {
            "apiVersion": "inferplane.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "source": {
                    "uri": uri,
                    "format": "mindspore-checkpoint",
                    "network": models.LENET_NETWORK,
                    "image": CODE_IMAGE,
                    "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
                },
                "devices": ["cpu"],
                "replicas": {"min": 1, "max": 1},
                "verification": {"samples": 4},
                **spec,
            },
        }

    def get(self, kind: str, name: str = "") -> Any:
        return self.cluster.get(kind, name, self.namespace)

    def wait_ready(self, name: str, *, generation: int = 1, timeout: float = 600) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            body = self.get("inferencemodel", name)
            status = body.get("status", {})
            if status.get("phase") == "Failed":
                raise AssertionError(f"{name} failed: {json.dumps(status)[:3000]}")
            done = status.get("phase") == "Ready" and status.get("observedGeneration") == generation
            return body if done else None

        return handle.wait_until(ready, timeout=timeout, interval=0.5, what=f"{name} Ready")

    def service_url(self, name: str) -> str:
        service = self.get("service", name)
        return f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def cannot_build() -> str | None:
    """Why the runtime images cannot be built on this machine, or None."""
    from tests import images

    reason = images.missing_reason()
    return f"runtime images cannot be built here: {reason}" if reason else None


def image_archives(tmp: Path) -> list[Path]:
    """The operator, cpu and mindspore archives (built when missing) and the network's code."""
    from tests import images

    built = images.ensure(["operator", "cpu", "mindspore"])
    code = tmp / "lenet-code.oci.tar"
    network = (models.LENET_DIR / "network.py").read_bytes()
    oci.layered(
        built["cpu"].archive, {"code/network.py": (network, 0o644)}, name=CODE_IMAGE, out=code
    )
    return [*(b.archive for b in built.values()), code]


def store_volume(cluster: handle.Cluster, namespace: str, folder: Path) -> None:
    """A hostPath PersistentVolume (ReadWriteMany) bound to the claim ``store``."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{namespace}-store"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(folder), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": "store"},
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "store"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": f"{namespace}-store",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace=namespace,
    )


def helm(cluster: handle.Cluster, *args: str) -> str:
    result = subprocess.run(
        [str(cluster.bin("helm")), *args],
        capture_output=True,
        text=True,
        env=cluster.env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextlib.contextmanager
def s3_source(address: str, checkpoint: Path, log: Path) -> Iterator[str]:
    """moto's S3 server on the machine's own address (pods reach it over the bridge), holding
    ``checkpoint`` as ``s3://sources/models/lenet.ckpt``; yields its endpoint."""
    import boto3

    with log.open("w") as out:
        proc, endpoint = loopback.start_moto(out, host=address)
        try:
            client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="inferplane-test",
                aws_secret_access_key="inferplane-test",
            )
            client.create_bucket(Bucket=SOURCE_BUCKET)
            client.upload_file(str(checkpoint), SOURCE_BUCKET, "models/lenet.ckpt")
            yield endpoint
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextlib.contextmanager
def installed(real_cluster: handle.Cluster, tmp: Path) -> Iterator[Product]:
    """The images loaded into the node, the checkpoints on a hostPath volume and on S3, the
    chart installed (pull policy Never) in a fresh namespace; uninstalled and deleted after."""
    assert real_cluster.real_node is not None
    node.load_images(real_cluster.real_node, image_archives(tmp))
    store = tmp / "store"
    (store / "models").mkdir(parents=True)
    for seed, name in ((0, "lenet.ckpt"), (1, "lenet-v2.ckpt")):
        shutil.copy(models.lenet_checkpoint(tmp, seed=seed), store / "models" / name)
    shutil.chown(store, 65532, 65532)
    for path in store.rglob("*"):
        shutil.chown(path, 65532, 65532)
    s3_checkpoint = tmp / "s3" / "lenet.ckpt"
    s3_checkpoint.parent.mkdir()
    shutil.copy(models.lenet_checkpoint(tmp, seed=2), s3_checkpoint)
    address = real_cluster.real_node.address
    with (
        s3_source(address, s3_checkpoint, tmp / "moto.log") as endpoint,
        real_cluster.temporary_namespace("e2e") as namespace,
    ):
        store_volume(real_cluster, namespace, store)
        real_cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SOURCE_SECRET},
                "stringData": {
                    "AWS_ACCESS_KEY_ID": "inferplane-test",
                    "AWS_SECRET_ACCESS_KEY": "inferplane-test",
                    "AWS_REGION": "us-east-1",
                },
            },
            namespace=namespace,
        )
        helm(
            real_cluster,
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "operator.image.pullPolicy=Never",
            "--set",
            "images.pullPolicy=Never",
            "--set",
            "store.pvc.claimName=store",
            "--set",
            f"store.s3.endpoint={endpoint}",
            "--set",
            f"store.s3.sourceCredentialsSecret={SOURCE_SECRET}",
            "--set",
            "operator.replicas=1",
            "--set",
            "operator.peering.enabled=false",
            "--set",
            "autoscaling.scaleDownWindowSeconds=0",
            "--wait",
            "--timeout=5m",
        )
        try:
            yield Product(real_cluster, namespace, store, s3_checkpoint)
        finally:
            uninstall = ("uninstall", RELEASE, "--namespace", namespace, "--ignore-not-found")
            subprocess.run([str(real_cluster.bin("helm")), *uninstall], env=real_cluster.env)
            real_cluster.kubectl("delete", "pv", f"{namespace}-store", "--wait=false", check=False)


def infer(url: str, model: str, x: np.ndarray, *, binary: bool) -> np.ndarray:
    """One V2 request with Triton's client: JSON tensors, or the binary extension."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    request = httpclient.InferInput(INPUT, list(x.shape), "FP32")
    request.set_data_from_numpy(x, binary_data=binary)
    output = client.get_model_metadata(model)["outputs"][0]["name"]
    y = client.infer(model, [request]).as_numpy(output)
    assert y is not None
    return y


class Load:
    """A steady closed loop of V2 requests (``workers`` clients, a new connection each) through
    a Service; records every latency and every failure."""

    def __init__(self, url: str, model: str, *, workers: int = 4) -> None:
        x = np.random.default_rng(1).standard_normal((1, 1, 32, 32)).astype(np.float32)
        body = {"inputs": [{"name": INPUT, "datatype": "FP32", "shape": [1, 1, 32, 32]}]}
        body["inputs"][0]["data"] = x.ravel().tolist()
        self.body = json.dumps(body).encode()
        self.endpoint = f"http://{url}/v2/models/{model}/infer"
        self.workers = workers
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.futures: list[concurrent.futures.Future[None]] = []

    def _loop(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            request = urllib.request.Request(
                self.endpoint, data=self.body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                self.latencies.append(time.perf_counter() - start)
            except urllib.error.HTTPError as error:  # the server's own answer says why
                self.failures.append(f"{time.monotonic():.1f} {error.code}: {error.read()[:200]!r}")
            except Exception as error:  # every failure counts, whatever its kind
                self.failures.append(f"{time.monotonic():.1f} {type(error).__name__}: {error}")

    def __enter__(self) -> Load:
        self.futures = [self.pool.submit(self._loop) for _ in range(self.workers)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()

    def percentiles(self) -> tuple[float, float]:
        """p50 and p99 of the latencies, in seconds."""
        ordered = sorted(self.latencies)
        return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def server_pods(product: Product, model: str) -> list[dict[str, Any]]:
    return [
        p
        for p in product.get("pods")
        if p["metadata"]["labels"].get("inferplane.io/model") == model
        and p["metadata"]["labels"].get("app.kubernetes.io/component") == "server"
    ]
