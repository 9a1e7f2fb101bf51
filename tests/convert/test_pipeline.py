# SPDX-License-Identifier: Apache-2.0
"""Real conversions on the CPU: MindSpore export, ONNX Runtime, parity, accuracy, bad inputs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tests import models

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts.key import sha256_file
from inferplane.artifacts.manifest import ArtifactManifest
from inferplane.convert import export, pipeline, progress, termination
from inferplane.devices import ArtifactFormat

X = TensorSpec.parse("x:-1,1,32,32:FP32")
CKPT = ArtifactFormat.MINDSPORE_CHECKPOINT


def request(source: Path, store: Path, code_path: Path, **changes: object) -> pipeline.Request:
    fields: dict[str, object] = {
        "source": str(source),
        "source_format": CKPT,
        "target": ArtifactFormat.ONNX,
        "store": str(store),
        "network": "network:lenet5",
        "inputs": (X,),
        "code_path": code_path,
    }
    return pipeline.Request(**{**fields, **changes})  # type: ignore[arg-type]


def reference_outputs(checkpoint: Path, code: Path, x: np.ndarray) -> np.ndarray:
    """LeNet5 run by MindSpore directly, independently of the pipeline's own runners."""
    factory = export.load_factory("network:lenet5", extra_path=code)
    net = export.build(
        factory, export.load_checkpoint(checkpoint), checkpoint=checkpoint, entry="network:lenet5"
    )
    return export.network_runner(net)([x])[0]


def store_is_empty(store: Path) -> bool:
    return not store.exists() or [p.name for p in store.iterdir() if p.name != ".tmp"] == []


@pytest.mark.parametrize("target", [ArtifactFormat.ONNX, ArtifactFormat.MINDIR])
def test_checkpoint_converts_with_parity(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path, target: ArtifactFormat
) -> None:
    result = pipeline.convert(
        request(lenet_checkpoint, tmp_path / "store", lenet_code, target=target)
    )
    m = result.manifest
    assert not result.cached
    assert m.verification.verified, m.verification
    assert m.verification.batch_sizes == [1, 8]
    assert m.verification.max_abs_error is not None and m.verification.max_abs_error < 1e-5
    assert m.inputs == [X]
    assert [(o.name, o.shape) for o in m.outputs] == [("output", [-1, 10])]
    assert result.directory == tmp_path / "store" / m.key
    assert ArtifactManifest.read(result.directory) == m
    # Independent check: the artifact, run by its own runtime, matches MindSpore.
    x = np.random.default_rng(7).standard_normal((5, 1, 32, 32)).astype(np.float32)
    expected = reference_outputs(lenet_checkpoint, lenet_code, x)
    entry = result.directory / m.entrypoint
    if target is ArtifactFormat.ONNX:
        session = ort.InferenceSession(str(entry), providers=["CPUExecutionProvider"])
        got = session.run(None, {"x": x})[0]
    else:
        got = export.mindir_runner(entry)([x])[0]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_accuracy_on_the_digits_matches(
    tmp_path: Path, trained_lenet: Path, lenet_code: Path
) -> None:
    result = pipeline.convert(
        request(
            trained_lenet / "lenet.ckpt",
            tmp_path / "store",
            lenet_code,
            validation=str(trained_lenet / "digits-val.npz"),
        )
    )
    acc = result.manifest.accuracy
    assert acc is not None and acc.samples == 360
    assert acc.reference > 0.8, "two epochs on the digits reach well above chance"
    assert acc.converted == pytest.approx(acc.reference, abs=1 / 360)
    # Recompute with ONNX Runtime directly, outside the pipeline.
    data = np.load(trained_lenet / "digits-val.npz")
    session = ort.InferenceSession(str(result.directory / "model.onnx"))
    logits = session.run(None, {"x": data["x"]})[0]
    assert float((logits.argmax(axis=1) == data["y"]).mean()) == pytest.approx(acc.converted)


def test_parity_beyond_tolerance_fails_with_numbers(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    req = request(lenet_checkpoint, tmp_path / "store", lenet_code, atol=0.0, rtol=0.0)
    with pytest.raises(errors.ConversionError, match=r"max abs error \d.*atol 0, rtol 0"):
        pipeline.convert(req)
    assert store_is_empty(tmp_path / "store")


def test_checkpoint_of_another_network_fails_clearly(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "mlp_net.py").write_text(
        "import mindspore.nn as nn\n"
        "def mlp():\n"
        "    return nn.SequentialCell(nn.Flatten(), nn.Dense(1024, 10))\n"
    )
    req = request(lenet_checkpoint, tmp_path / "store", tmp_path / "code", network="mlp_net:mlp")
    with pytest.raises(errors.ConversionError) as info:
        pipeline.convert(req)
    message = str(info.value)
    assert str(lenet_checkpoint) in message and "does not match network 'mlp_net:mlp'" in message
    assert store_is_empty(tmp_path / "store")


def test_truncated_checkpoint_fails_clearly(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(lenet_checkpoint.read_bytes()[:50_000])
    with pytest.raises(errors.ConversionError, match=f"checkpoint {cut}: cannot be read"):
        pipeline.convert(request(cut, tmp_path / "store", lenet_code))
    assert store_is_empty(tmp_path / "store")


def test_onnx_file_that_is_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07 definitely not a protobuf of a model" * 10)
    req = pipeline.Request(
        source=str(bad),
        source_format=ArtifactFormat.ONNX,
        target=ArtifactFormat.ONNX,
        store=str(tmp_path / "store"),
    )
    with pytest.raises(errors.ConversionError, match=f"{bad}: not a valid ONNX model"):
        pipeline.convert(req)
    assert store_is_empty(tmp_path / "store")


def test_onnx_source_is_verified_and_cached(tmp_path: Path) -> None:
    model = models.mlp_onnx(tmp_path / "mlp.onnx")
    req = pipeline.Request(
        source=str(model),
        source_format=ArtifactFormat.ONNX,
        target=ArtifactFormat.ONNX,
        store=f"file://{tmp_path / 'store'}",
        name="mlp",
    )
    first = pipeline.convert(req)
    assert first.manifest.verification.verified and first.manifest.model == "mlp"
    assert first.manifest.inputs == [TensorSpec.parse("x:-1,64:FP32")]
    second = pipeline.convert(req, reporter=progress.Silent())
    assert second.cached and second.manifest == first.manifest
    assert "fetch source" in second.timings and "verify parity" not in second.timings


def test_store_hit_imports_no_mindspore(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    """A second conversion of the same checkpoint returns from the store, MindSpore untouched."""
    store = tmp_path / "store"
    pipeline.convert(request(lenet_checkpoint, store, lenet_code))
    code = (
        "import sys; from inferplane.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'mindspore' not in sys.modules, 'mindspore was imported'\n"
    )
    argv = [
        sys.executable, "-c", code, "convert", "--source", str(lenet_checkpoint),
        "--format", "mindspore-checkpoint", "--network", "network:lenet5",
        "--input", str(X), "--to", "onnx", "--store", str(store), "--json",
    ]  # fmt: skip
    path = os.pathsep.join([str(lenet_code), *sys.path])  # this checkout's inferplane too
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "store hit" in done.stderr
    assert ArtifactManifest.model_validate_json(done.stdout).verification.verified


def test_archive_source_brings_its_network_code(tmp_path: Path, lenet_checkpoint: Path) -> None:
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(lenet_checkpoint, arcname="weights/lenet.ckpt")
        code = (models.LENET_DIR / "network.py").read_bytes()
        info = tarfile.TarInfo("bundled_net.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
    req = pipeline.Request(
        source=f"file://{archive}",
        source_format=CKPT,
        target=ArtifactFormat.ONNX,
        store=str(tmp_path / "store"),
        network="bundled_net:lenet5",
        inputs=(X,),
    )
    result = pipeline.convert(req)
    assert result.manifest.verification.verified
    assert result.manifest.model == "lenet"
    assert result.manifest.source.sha256 == sha256_file(archive)


def test_missing_network_module_is_a_spec_error(tmp_path: Path, lenet_checkpoint: Path) -> None:
    req = request(lenet_checkpoint, tmp_path / "store", tmp_path, network="nowhere_net:build")
    with pytest.raises(errors.SpecError, match=r"module 'nowhere_net' is not on the path"):
        pipeline.convert(req)


def test_cli_plain_progress_and_one_line_errors(tmp_path: Path) -> None:
    model = models.mlp_onnx(tmp_path / "mlp.onnx")
    base = [sys.executable, "-m", "inferplane", "convert", "--format", "onnx", "--to", "onnx"]
    done = subprocess.run(
        [*base, "--source", str(model), "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "inferplane: verify parity: done in" in done.stderr
    assert "\x1b[" not in done.stderr, "no terminal codes when stderr is not a TTY"
    missing = subprocess.run(
        [*base, "--source", str(tmp_path / "nope.onnx"), "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert f"inferplane: error: source {tmp_path / 'nope.onnx'}: no such file" in missing.stderr


def test_mindir_source_is_verified(tmp_path: Path, lenet_mindir: Path) -> None:
    req = pipeline.Request(
        source=str(lenet_mindir),
        source_format=ArtifactFormat.MINDIR,
        target=ArtifactFormat.MINDIR,
        store=str(tmp_path / "store"),
        inputs=(X,),
    )
    m = pipeline.convert(req).manifest
    assert m.verification.verified and m.verification.reference == "mindir-source"
    assert m.verification.max_abs_error == 0.0
    with pytest.raises(errors.SpecError, match="input signature"):
        pipeline.convert(pipeline.Request(**{**req.__dict__, "inputs": ()}))


@pytest.mark.parametrize(
    ("target", "needs"),
    [
        (ArtifactFormat.OM, "Ascend ACL runtime"),
        (ArtifactFormat.TENSORRT, "TensorRT runtime"),
        (ArtifactFormat.MS, "MindSpore Lite runtime"),
    ],
)
def test_absent_runtime_is_recorded_without_numbers(target: ArtifactFormat, needs: str) -> None:
    req = pipeline.Request(
        source="m.onnx", source_format=ArtifactFormat.ONNX, target=target, store="s"
    )
    v = pipeline.unverified(req, reference_name="onnx-source")
    assert v.verified is False and needs in v.reason
    assert v.max_abs_error is None and v.max_rel_error is None and v.samples == 0


def test_fixed_batch_model_parity_and_padded_accuracy(tmp_path: Path) -> None:
    """A model with a fixed batch of 2 (y = 2x): parity at its batch, accuracy in padded chunks."""
    model = models.fixed_batch_onnx(tmp_path / "fixed.onnx")
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x, y=x.argmax(axis=1))
    req = pipeline.Request(
        source=str(model),
        source_format=ArtifactFormat.ONNX,
        target=ArtifactFormat.ONNX,
        store=str(tmp_path / "store"),
        validation=str(tmp_path / "val.npz"),
    )
    m = pipeline.convert(req).manifest
    assert m.verification.verified and m.verification.batch_sizes == [2]
    assert m.accuracy is not None and m.accuracy.samples == 5
    assert m.accuracy.reference == m.accuracy.converted == 1.0


CONVERT_ONNX = [sys.executable, "-m", "inferplane", "convert", "--format", "onnx", "--to", "onnx"]


def test_result_reaches_the_termination_log(tmp_path: Path) -> None:
    """In a Job pod the converter writes its result where the operator reads it back."""
    from inferplane.control import observed

    model = models.mlp_onnx(tmp_path / "mlp.onnx")
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [*CONVERT_ONNX, "--source", str(model), "--store", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INFERPLANE_TERMINATION_LOG": str(log)},
    )
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert len(text.encode()) <= termination.LIMIT
    manifest = ArtifactManifest.model_validate_json(text)
    artifact = observed.parse_result(text)
    assert artifact is not None and artifact.key == manifest.key
    assert artifact.verification is not None and artifact.verification.verified


def test_large_result_is_summarised_for_the_termination_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest over Kubernetes' 4 KiB limit is cut down to the key and the verification."""
    from inferplane.control import observed

    model = models.mlp_onnx(tmp_path / "mlp.onnx")
    req = pipeline.Request(
        source=str(model),
        source_format=ArtifactFormat.ONNX,
        target=ArtifactFormat.ONNX,
        store=str(tmp_path / "store"),
        name="m" * 5000,
    )
    manifest = pipeline.convert(req, reporter=progress.Silent()).manifest
    log = tmp_path / "termination-log"
    monkeypatch.setenv("INFERPLANE_TERMINATION_LOG", str(log))
    termination.report(manifest.model_dump(mode="json"))
    text = log.read_text()
    assert len(text.encode()) <= termination.LIMIT
    artifact = observed.parse_result(text)
    assert artifact is not None and artifact.key == manifest.key
    assert artifact.verification is not None
    assert artifact.verification.max_abs_error == manifest.verification.max_abs_error


def test_converter_and_operator_agree_on_a_checkpoints_key(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    """Given the operator's names for the code and the tool (``--code-id``, ``--tool-id``), the
    converter computes the key the operator's planner assigns from the spec (source sha256 +
    target options + the checkpoint's network, signature and image + the conversion image) when
    artifacts are shared across namespaces."""
    from inferplane.api import v1alpha1
    from inferplane.control import planner
    from inferplane.control.inventory import DevicePool, Inventory
    from inferplane.control.settings import OperatorSettings
    from inferplane.devices import DeviceClass

    settings = OperatorSettings(share_artifacts=True)  # else the operator's key is namespaced
    tool = settings.conversion_image(ArtifactFormat.ONNX)
    result = pipeline.convert(
        request(lenet_checkpoint, tmp_path / "store", lenet_code, code="", tool=tool),
        reporter=progress.Silent(),
    )
    spec = v1alpha1.validate_spec(
        {
            "source": {
                "uri": "s3://models/lenet.ckpt",
                "format": "mindspore-checkpoint",
                "network": "network:lenet5",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, 32, 32]}],
                "sha256": sha256_file(lenet_checkpoint),
            },
            "devices": ["cpu"],
        }
    )
    cpu = Inventory.from_pools([DevicePool(DeviceClass.CPU, allocatable=4000, nodes=("n",))])
    (target,) = planner.choose_targets(spec, cpu)
    options = planner.cluster_options(spec, target, settings)
    key = planner.assigned_key(spec, options, namespace="ml", settings=settings)
    assert key == result.manifest.key
    assert result.manifest.target.network == "network:lenet5"
    assert result.manifest.target.inputs == ("x:-1,1,32,32:FP32",)


def test_new_network_code_under_the_same_name_converts_again(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    """The key covers the network module's files: a fixed forward pass under the same
    ``network:lenet5`` is a new artifact, not the stale one."""
    store = tmp_path / "store"
    old, new = tmp_path / "old", tmp_path / "new"
    for directory in (old, new):
        directory.mkdir()
        (directory / "network.py").write_bytes((lenet_code / "network.py").read_bytes())
    with (new / "network.py").open("a") as handle:
        handle.write("\n# the forward pass, fixed\n")
    first = pipeline.convert(request(lenet_checkpoint, store, old))
    assert pipeline.convert(request(lenet_checkpoint, store, old)).cached
    changed = pipeline.convert(request(lenet_checkpoint, store, new))
    assert not changed.cached and changed.manifest.key != first.manifest.key
    assert changed.manifest.target.code != first.manifest.target.code
    assert first.manifest.target.code is not None and first.manifest.target.code.startswith(
        "sha256:"
    )


def test_another_converting_tool_converts_again(
    tmp_path: Path, lenet_checkpoint: Path, lenet_code: Path
) -> None:
    """The key covers the tool: this machine's MindSpore by default, or the conversion image the
    operator names (``--tool-id``)."""
    store = tmp_path / "store"
    here = pipeline.convert(request(lenet_checkpoint, store, lenet_code))
    assert f"mindspore=={export.version()}" in (here.manifest.target.tool or "")
    image = pipeline.convert(
        request(lenet_checkpoint, store, lenet_code, tool="registry.example/mindspore:2")
    )
    assert not image.cached and image.manifest.key != here.manifest.key
    assert image.manifest.target.tool == "registry.example/mindspore:2"
