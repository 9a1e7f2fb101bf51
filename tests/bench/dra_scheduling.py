# SPDX-License-Identifier: Apache-2.0
"""Scheduling throughput with DRA claims beside device-plugin requests, on one test cluster.

    python -m tests.bench.dra_scheduling [--pods 200] [--runs 3]

One cluster (tests/cluster) has as many GPUs offered by the device plugin (``nvidia.com/gpu``
on A100 and T4 nodes) as offered through DRA (ResourceSlices of ``gpu.nvidia.com`` on nodes
without the extended resource). Each run creates a Deployment of ``--pods`` replicas, one GPU
each — through the device plugin (a ``nvidia.com/gpu`` limit), or through DRA (a
ResourceClaimTemplate: the resource-claim controller makes a claim per pod, the scheduler's DRA
plugin allocates a device) — and times creation → every replica Ready (kwok runs the pods), then
deletes it and waits until its pods (and claims) are gone. The two kinds alternate, so both see
the same cluster and machine load; the ratio of their medians is what to read.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cluster import build, control_plane, handle
from tests.cluster.profile import A100, T4, Profile

NAMESPACE = "bench-dra"
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _profile(pods: int) -> Profile:
    """Enough GPUs of each kind for ``pods`` pods (an A100 node has 8, a T4 node 4)."""
    per_product = -(-pods // (A100.count + T4.count))
    return Profile(cpu=1, nvidia=per_product, ascend910=0, ascend310=0, nvidia_dra=per_product)


def _deployment(name: str, replicas: int, *, dra: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": "bench/gpu:1"}
    pod: dict[str, Any] = {"containers": [container]}
    if dra:
        container["resources"] = {"claims": [{"name": "gpu"}]}
        pod["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]
    else:
        container["resources"] = {"limits": {"nvidia.com/gpu": 1}}
        pod["tolerations"] = [TOLERATION]
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


CLAIM_TEMPLATE = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "ResourceClaimTemplate",
    "metadata": {"name": "one-gpu", "namespace": NAMESPACE},
    "spec": {
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpu",
                        "exactly": {
                            "deviceClassName": "gpu.nvidia.com",
                            "allocationMode": "ExactCount",
                            "count": 1,
                        },
                    }
                ]
            }
        }
    },
}


def _run(cluster: handle.Cluster, pods: int, *, dra: bool) -> float:
    name = "dra" if dra else "plugin"
    started = time.monotonic()
    cluster.apply(_deployment(name, pods, dra=dra))
    cluster.kubectl(
        "wait", "-n", NAMESPACE, f"deployment/{name}", "--timeout=900s",
        f"--for=jsonpath={{.status.readyReplicas}}={pods}",
        timeout=960,
    )  # fmt: skip
    seconds = time.monotonic() - started
    placed = cluster.get("pods", namespace=NAMESPACE)
    wrong = [
        p["metadata"]["name"] for p in placed if ("-dra-" in p["spec"].get("nodeName", "")) != dra
    ]
    if wrong:
        raise SystemExit(f"{len(wrong)} {name} pods on the other kind of node: {wrong[:3]}")
    cluster.kubectl("delete", "-n", NAMESPACE, f"deployment/{name}", "--wait=true", timeout=600)
    handle.wait_until(
        lambda: (
            not cluster.get("pods", namespace=NAMESPACE)
            and not cluster.get("resourceclaims", namespace=NAMESPACE)
        ),
        timeout=600,
        interval=1.0,
        what="the run's pods and claims to be gone",
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    build.ensure_built(echo=True)
    (build.cache_root() / "cluster").mkdir(parents=True, exist_ok=True)
    profile = _profile(args.pods)
    print(f"machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores; {profile}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    directory = Path(tempfile.mkdtemp(prefix="bench-dra-", dir=build.cache_root() / "cluster"))
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        state, _ = control_plane.up(directory, profile, tie_to_parent=True, timeout=600)
        cluster = handle.Cluster(state)
        cluster.kubectl("create", "namespace", NAMESPACE)
        handle.wait_until(
            lambda: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", "-n", NAMESPACE, check=False
                ).returncode
                == 0
            ),
            what="the namespace's default ServiceAccount",
        )
        cluster.apply(CLAIM_TEMPLATE)
        for run in range(args.runs):
            for dra in (run % 2 == 1, run % 2 == 0):  # alternate which kind goes first
                seconds = _run(cluster, args.pods, dra=dra)
                times[dra].append(seconds)
                print(f"run {run + 1}: {'DRA' if dra else 'device plugin'} {seconds:.1f} s")
    finally:
        control_plane.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
        control_plane.lock_file(directory).unlink(missing_ok=True)
    plugin, dra = statistics.median(times[False]), statistics.median(times[True])
    print()
    print(f"| {args.pods} GPU pods, creation → all Ready | median s | runs |")
    print("| --- | --- | --- |")
    print(f"| device plugin (`nvidia.com/gpu`) | {plugin:.1f} | "
          f"{', '.join(f'{t:.1f}' for t in times[False])} |")  # fmt: skip
    print(f"| DRA (ResourceClaimTemplate, `gpu.nvidia.com`) | {dra:.1f} | "
          f"{', '.join(f'{t:.1f}' for t in times[True])} |")  # fmt: skip
    print(f"\nDRA / device plugin: {dra / plugin:.2f}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
