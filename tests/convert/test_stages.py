# SPDX-License-Identifier: Apache-2.0
"""A conversion split into the stages of a conversion Job, each its own ``inferplane convert``
process sharing one work directory: ``fetch`` (inferplane's code, source credentials),
``convert`` (runs the network's code, no store, no credentials), ``publish`` (inferplane's code,
the store). Real MindSpore export and ONNX Runtime parity, as in the one-process pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inferplane import errors
from inferplane.artifacts.manifest import ArtifactManifest
from inferplane.convert import pipeline, progress
from inferplane.devices import ArtifactFormat

CONVERT = [
    "--format", "mindspore-checkpoint", "--network", "network:lenet5",
    "--input", "x:-1,1,32,32:FP32", "--to", "onnx", "--samples", "4",
]  # fmt: skip


def _stage(
    stage: str, work: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "inferplane",
        "convert",
        *args,
        "--stage",
        stage,
        "--work",
        str(work),
    ]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


def _bare_env(**extra: str) -> dict[str, str]:
    """The environment without any store credential (what the convert step gets)."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INFERPLANE_S3"))}
    return {**kept, **extra}


def test_the_stages_convert_and_publish_what_one_process_does(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    store, work = tmp_path / "store", tmp_path / "work"
    source = ["--source", f"file://{lenet_checkpoint}", *CONVERT]
    path = os.pathsep.join(sys.path)
    fetched = _stage("fetch", work, *source, env=_bare_env(PYTHONPATH=path))
    assert fetched.returncode == 0, fetched.stderr
    record = json.loads((work / "source" / pipeline.FETCHED).read_text())
    assert (work / "source" / record["model"]).is_file()  # a copy: convert sees only this
    # The network's code only here, and no store given (nor could it be used).
    code_path = os.pathsep.join([str(lenet_code), path])
    converted = _stage("convert", work, *source, env=_bare_env(PYTHONPATH=code_path))
    assert converted.returncode == 0, converted.stderr
    assert not store.exists()
    assert (work / "out" / "artifact" / "model.onnx").is_file()
    published = _stage(
        "publish",
        work,
        *source,
        "--store",
        str(store),
        "--json",
        env=_bare_env(PYTHONPATH=code_path),
    )
    assert published.returncode == 0, published.stderr
    manifest = ArtifactManifest.model_validate_json(published.stdout)
    assert manifest.verification.verified and manifest.verification.max_abs_error is not None
    assert manifest.source.sha256 == record["sha256"]
    # The same key, file names and parity result as the one-process pipeline.
    one = pipeline.convert(
        pipeline.Request(
            source=f"file://{lenet_checkpoint}", source_format=ArtifactFormat.MINDSPORE_CHECKPOINT,
            target=ArtifactFormat.ONNX, store=str(tmp_path / "other"), network="network:lenet5",
            inputs=(manifest.inputs[0],), samples=4, code_path=lenet_code,
        ),
        reporter=progress.Silent(),
    )  # fmt: skip
    assert one.manifest.key == manifest.key
    assert [f.path for f in one.manifest.files] == [f.path for f in manifest.files]
    assert ArtifactManifest.read(store / manifest.key).files == manifest.files
    # The export is not byte-for-byte stable across processes; the models compute the same.
    x = np.random.default_rng(3).standard_normal((4, 1, 32, 32)).astype(np.float32)
    outputs = [
        ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]
        for d in (store / manifest.key, one.directory)
        if d is not None
    ]
    assert len(outputs) == 2
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6, rtol=0)


def test_publish_writes_only_the_key_it_is_given(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    """The operator passes the key; whatever the convert step writes cannot change it: claims
    naming a key are refused, the digests are the publisher's own."""
    store, work = tmp_path / "store", tmp_path / "work"
    source = ["--source", str(lenet_checkpoint), *CONVERT]
    env = _bare_env(PYTHONPATH=os.pathsep.join([str(lenet_code), *sys.path]))
    for stage in ("fetch", "convert"):
        assert _stage(stage, work, *source, env=env).returncode == 0
    claims_file = work / "out" / pipeline.CLAIMS
    claims = json.loads(claims_file.read_text())
    claims_file.write_text(json.dumps({**claims, "key": "team-b.onnx-cpu-victim"}))
    refused = _stage(
        "publish", work, *source, "--store", str(store), "--key", "ml.onnx-cpu-1", env=env
    )
    assert refused.returncode != 0 and "claims.json" in refused.stderr
    assert not store.exists()
    claims_file.write_text(json.dumps(claims))
    done = _stage(
        "publish", work, *source, "--store", str(store), "--key", "ml.onnx-cpu-1", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in store.iterdir() if p.name != ".tmp") == ["ml.onnx-cpu-1"]
    assert ArtifactManifest.model_validate_json(done.stdout).key == "ml.onnx-cpu-1"


def test_publish_refuses_links_in_the_converted_output(tmp_path: Path) -> None:
    """A link the convert step left (to the publisher's environment, a credential file, the
    store) is never published."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"onnx")
    secret = tmp_path / "credentials"
    secret.write_text("AWS_SECRET_ACCESS_KEY=...")
    (out / "extra.bin").symlink_to(secret)
    with pytest.raises(errors.ConversionError, match=r"extra\.bin: not a regular file"):
        pipeline._regular_files(out)


def test_a_stage_needs_its_work_directory_and_publish_its_store(
    tmp_path: Path, lenet_checkpoint: Path
) -> None:
    source = ["--source", str(lenet_checkpoint), *CONVERT]
    argv = [sys.executable, "-m", "inferplane", "convert", *source, "--stage", "fetch"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "--stage fetch needs --work" in done.stderr
    done = _stage("publish", tmp_path, *source, env=_bare_env())
    assert done.returncode != 0 and "--stage publish needs --store" in done.stderr
    done = _stage("convert", tmp_path / "empty", *source, env=_bare_env())
    assert done.returncode != 0 and "no fetched source" in done.stderr
