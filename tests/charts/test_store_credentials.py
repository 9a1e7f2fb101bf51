# SPDX-License-Identifier: Apache-2.0
"""The store credentials' path through the chart's design, at its far end: the converter.

The chart hands a conversion pod the store's Secret as environment (``envFrom.secretRef``;
``tests/integration/test_chart.py`` checks the pods and the operator's log). Here the real
``inferplane convert`` runs with planted credentials against a real S3-compatible server (moto),
once succeeding and once failing, and neither its output nor what it stores may contain them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
from tests import models
from tests.artifacts import conftest as s3_server

s3_endpoint = s3_server.s3_endpoint  # the loopback moto_server fixture, reused

PLANTED_ID = "AKIAPLANTED7Q3Z"
PLANTED_SECRET = "planted/secret+9f0b61c2d4"


def convert_env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INFERPLANE_"))}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": PLANTED_ID,
        "AWS_SECRET_ACCESS_KEY": PLANTED_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "INFERPLANE_S3_ENDPOINT": endpoint,
    }


def convert(source: Path, store: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "inferplane", "convert", "--source", str(source),
            "--format", "onnx", "--to", "onnx", "--store", store, "--samples", "2", "--json",
        ],
        capture_output=True, text=True, timeout=120, env=convert_env(endpoint),
    )  # fmt: skip


def test_converter_never_shows_the_store_credentials(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = f"creds-{uuid.uuid4().hex[:8]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=PLANTED_ID,
        aws_secret_access_key=PLANTED_SECRET,
    )
    client.create_bucket(Bucket=bucket)
    source = models.mlp_onnx(tmp_path / "mlp.onnx")

    ok = convert(source, f"s3://{bucket}/artifacts", s3_endpoint)
    assert ok.returncode == 0, ok.stderr
    assert '"sha256"' in ok.stdout  # the manifest was printed
    stored = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert any(o["Key"].endswith("inferplane.json") for o in stored), stored

    failed = convert(source, f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/a", s3_endpoint)
    assert failed.returncode != 0
    assert "inferplane: error:" in failed.stderr  # one clear line, no traceback
    assert "Traceback" not in failed.stderr

    for run in (ok, failed):
        for secret in (PLANTED_ID, PLANTED_SECRET):
            assert secret not in run.stdout and secret not in run.stderr
    for item in stored:
        body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        assert PLANTED_ID.encode() not in body and PLANTED_SECRET.encode() not in body
