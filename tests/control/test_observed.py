# SPDX-License-Identifier: Apache-2.0
"""Observed state from raw API objects, and conversion results from termination messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inferplane.api import v1alpha1
from inferplane.control import observed
from inferplane.control.observed import JobPhase


def _job(name: str, condition: str | None = None, message: str = "") -> dict[str, Any]:
    conditions = (
        [
            {
                "type": condition,
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": message,
            }
        ]
        if condition
        else []
    )
    return {
        "metadata": {"name": name, "ownerReferences": [{"uid": "u"}]},
        "status": {"conditions": conditions},
    }


def _pod(job: str, message: str, finished: str) -> dict[str, Any]:
    terminated = {"exitCode": 1, "message": message, "finishedAt": finished}
    return {
        "metadata": {"labels": {"job-name": job}},
        "status": {"containerStatuses": [{"name": "convert", "state": {"terminated": terminated}}]},
    }


def test_job_phases_and_the_last_attempts_message() -> None:
    seen = observed.from_objects(
        jobs=[
            _job("a"),
            _job("b", "Complete"),
            _job("c", "Failed", "Job has reached the specified backoff limit"),
        ],
        pods=[
            _pod("c", "first try", "2026-11-26T01:00:00Z"),
            _pod("c", "second try\n", "2026-11-26T01:05:00Z"),
            _pod("b", '{"key": "onnx-cpu-1"}', "2026-11-26T01:00:00Z"),
        ],
    )
    assert [seen.jobs[n].phase for n in "abc"] == [
        JobPhase.RUNNING,
        JobPhase.SUCCEEDED,
        JobPhase.FAILED,
    ]
    assert seen.jobs["c"].message == "second try"


def test_failed_job_without_pod_message_uses_the_job_condition() -> None:
    seen = observed.from_objects(jobs=[_job("d", "Failed", "deadline exceeded")])
    assert seen.jobs["d"].message == "BackoffLimitExceeded: deadline exceeded"


@pytest.mark.parametrize(
    ("message", "key", "verified"),
    [
        (
            '{"key": "k1", "sha256": "ab", '
            '"verification": {"verified": true, "maxAbsError": 1e-7}}',
            "k1",
            True,
        ),
        ('{"key": "k2"}', "k2", None),
        ("not json", None, None),
        ('{"no": "key"}', None, None),
        ("", None, None),
    ],
)
def test_parse_result(message: str, key: str | None, verified: bool | None) -> None:
    result = observed.parse_result(message)
    assert (result.key if result else None) == key
    if verified is not None:
        assert result is not None and result.verification is not None
        assert result.verification.verified is verified


def test_parse_result_accepts_a_full_artifact_manifest() -> None:
    manifest = {
        "key": "onnx-cpu-abc",
        "model": "lenet",
        "source": {"uri": "x.ckpt", "format": "mindspore-checkpoint", "sha256": "0" * 64},
        "target": {"format": "onnx", "device_class": "cpu"},
        "files": [{"path": "model.onnx", "sha256": "1" * 64, "size": 10}],
        "entrypoint": "model.onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}],
        "verification": {"verified": True, "max_abs_error": 2e-8},
        "accuracy": {
            "dataset": "v.npz",
            "samples": 10,
            "reference": 0.9,
            "converted": 0.9,
            "max_drop": 0.01,
        },
    }
    result = observed.parse_result(json.dumps(manifest))
    assert result is not None and result.sha256 == "1" * 64
    assert result.verification is not None and result.verification.max_abs_error == 2e-8
    assert result.verification.accuracy == 0.9


def test_deployment_rollout_state() -> None:
    def deployment(
        generation: int, seen: int, replicas: int, updated: int, ready: int
    ) -> dict[str, Any]:
        return {
            "metadata": {
                "name": "p",
                "generation": generation,
                "annotations": {"inferplane.io/artifact-key": "k"},
            },
            "spec": {"replicas": 2},
            "status": {
                "observedGeneration": seen,
                "replicas": replicas,
                "updatedReplicas": updated,
                "readyReplicas": ready,
            },
        }

    done = observed.from_objects(deployments=[deployment(2, 2, 2, 2, 2)]).pools["p"]
    assert done.up_to_date and done.key == "k" and done.ready_replicas == 2
    rolling = observed.from_objects(deployments=[deployment(2, 2, 3, 1, 2)]).pools["p"]
    assert not rolling.up_to_date
    stale = observed.from_objects(deployments=[deployment(3, 2, 2, 2, 2)]).pools["p"]
    assert not stale.up_to_date


def test_allocations_name_each_ready_pods_device_from_its_claim() -> None:
    """The pod names its claim in status.resourceClaimStatuses; the claim's allocation names
    the device. Pods not ready, or whose claim is not allocated yet, are left out."""

    def pod(name: str, ready: str, claim: str | None) -> dict[str, Any]:
        status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": ready}]}
        if claim:
            status["resourceClaimStatuses"] = [{"name": "device", "resourceClaimName": claim}]
        return {
            "metadata": {"name": name, "namespace": "ml", "labels": {"inferplane.io/pool": "p"}},
            "spec": {"nodeName": "kwok-t4-dra-0"},
            "status": status,
        }

    allocated = {
        "metadata": {"name": "a-device-x", "namespace": "ml"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "device", "driver": "gpu.nvidia.com",
                         "pool": "kwok-t4-dra-0", "device": "gpu-1"}
                    ]
                }
            }
        },
    }  # fmt: skip
    pending = {"metadata": {"name": "c-device-z", "namespace": "ml"}, "status": {}}
    found = observed.allocations(
        pods=[pod("b", "False", "b-device-y"), pod("a", "True", "a-device-x"),
              pod("c", "True", "c-device-z"), pod("d", "True", None)],
        claims=[allocated, pending], pool_label="inferplane.io/pool", claim_name="device",
    )  # fmt: skip
    assert found == {
        "p": (
            v1alpha1.AllocatedDevice(
                pod="a", node="kwok-t4-dra-0", driver="gpu.nvidia.com", pool="kwok-t4-dra-0",
                device="gpu-1",
            ),
        )
    }  # fmt: skip
