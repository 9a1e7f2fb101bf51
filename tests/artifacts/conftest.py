# SPDX-License-Identifier: Apache-2.0
"""A real S3-compatible server (moto's server mode) on a loopback port, for the session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from tests.loopback import start_moto


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc, endpoint = start_moto(log)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS variables pointing at the loopback server, set for this test."""
    env = {
        "AWS_ACCESS_KEY_ID": "inferplane-test",
        "AWS_SECRET_ACCESS_KEY": "inferplane-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("INFERPLANE_S3_ENDPOINT", raising=False)
    return {**os.environ, **env}


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A fresh bucket for one test."""
    from inferplane.artifacts import store

    name = f"t-{uuid.uuid4().hex[:12]}"
    store.s3_client().create_bucket(Bucket=name)
    return name
