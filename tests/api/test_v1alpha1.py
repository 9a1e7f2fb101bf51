# SPDX-License-Identifier: Apache-2.0
"""The InferenceModel models: valid manifests load, bad ones fail naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.api import bad_manifests

from inferplane import errors
from inferplane.api import v1alpha1
from inferplane.api.v1alpha1 import InferenceModel
from inferplane.devices import PREFERENCE, ArtifactFormat, DeviceClass

LENET = """
apiVersion: inferplane.io/v1alpha1
kind: InferenceModel
metadata:
  name: lenet
spec:
  source:
    uri: file://out/lenet.ckpt
    format: mindspore-checkpoint
    network: network:lenet5
    inputs:
      - {name: x, datatype: FP32, shape: [-1, 1, 32, 32]}
  devices: [auto]
  deviceOptions:
    nvidia: {precision: fp16, products: [A100-SXM4-40GB], resources: {limits: {nvidia.com/gpu: 1}}}
  replicas: {min: 1, max: 4, metric: inflight, target: 16}
  batching: {maxBatchSize: 8, maxDelayMs: 2}
  verification:
    samples: 8
    validation: file://out/digits-val.npz
    maxAccuracyDrop: 0.01
"""


def test_the_agreed_shape_loads_with_snake_case_names() -> None:
    model = InferenceModel.from_yaml(LENET)
    spec = model.spec
    assert model.metadata.name == "lenet"
    assert spec.source.format is ArtifactFormat.MINDSPORE_CHECKPOINT
    assert spec.source.inputs[0].shape == [-1, 1, 32, 32]
    assert spec.device_options.get(DeviceClass.NVIDIA).products == ["A100-SXM4-40GB"]
    assert spec.device_options.get(DeviceClass.CPU).precision is None
    assert spec.replicas.effective_target == 16
    assert spec.batching.max_batch_size == 8
    assert spec.verification.max_accuracy_drop == 0.01
    assert spec.auto and spec.device_classes() == list(PREFERENCE)


def test_wire_form_round_trips() -> None:
    model = InferenceModel.from_yaml(LENET)
    wire = model.to_wire()
    assert wire["spec"]["deviceOptions"]["nvidia"]["precision"] == "fp16"
    assert wire["spec"]["batching"] == {"maxBatchSize": 8, "maxDelayMs": 2.0}
    assert InferenceModel.from_dict(wire) == model


def test_defaults_of_a_minimal_onnx_model() -> None:
    spec = v1alpha1.validate_spec({"source": {"uri": "s3://models/m.onnx", "format": "onnx"}})
    assert spec.devices == ["auto"]
    assert spec.replicas.min == spec.replicas.max == 1
    assert spec.replicas.effective_target == 70
    assert spec.batching.max_batch_size == 1
    assert spec.verification.samples == 8


def test_explicit_preference_keeps_its_order() -> None:
    spec = v1alpha1.validate_spec(
        {"source": {"uri": "m.onnx", "format": "onnx"}, "devices": ["ascend910", "cpu"]}
    )
    assert spec.device_classes() == [DeviceClass.ASCEND910, DeviceClass.CPU]
    assert not spec.auto


@pytest.mark.parametrize("case", bad_manifests.load(), ids=lambda c: c.name)
def test_bad_manifest_is_rejected_naming_the_field(case: bad_manifests.BadManifest) -> None:
    with pytest.raises(errors.SpecError) as caught:
        InferenceModel.from_dict(case.manifest, origin=case.name)
    text = str(caught.value)
    assert text.startswith(f"{case.name}: ")
    assert f"{case.field}:" in text or f"{case.field}." in text or f"{case.field}[" in text, text
    assert case.message in text


def test_table_has_at_least_fifteen_cases() -> None:
    assert len({c.name for c in bad_manifests.load()}) >= 15


def test_the_base_of_the_table_is_valid() -> None:
    v1alpha1.validate_spec(bad_manifests.base_spec())


def test_load_reads_a_file_and_names_it(tmp_path: Path) -> None:
    good = tmp_path / "lenet.yaml"
    good.write_text(LENET)
    assert InferenceModel.load(good).metadata.name == "lenet"
    bad = tmp_path / "bad.yaml"
    bad.write_text(LENET.replace("network: network:lenet5", "network: lenet5"))
    with pytest.raises(errors.SpecError, match=r"bad\.yaml: spec\.source\.network"):
        InferenceModel.load(bad)
    with pytest.raises(errors.SpecError, match="cannot read"):
        InferenceModel.load(tmp_path / "absent.yaml")


def test_multi_document_file_must_hold_one_model() -> None:
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
    assert InferenceModel.from_yaml(other + "---" + LENET).metadata.name == "lenet"
    with pytest.raises(errors.SpecError, match="expected one InferenceModel document, found 2"):
        InferenceModel.from_yaml(LENET + "---" + LENET)


@pytest.mark.parametrize(
    "text",
    ["{not: yaml: at all", "- a list", "apiVersion: inferplane.io/v1\nkind: InferenceModel"],
)
def test_not_a_manifest(text: str) -> None:
    with pytest.raises(errors.SpecError, match=r"^manifest: "):
        InferenceModel.from_yaml(text)


def test_every_rule_has_its_python_twin_reporting_the_same_message() -> None:
    """The CEL rules and the Python checks share a message; each Python check must be able to
    fail (a rule that is always true would be a rule the local mode never enforces)."""
    failing = {c.message for c in bad_manifests.load() if c.message}
    for rule in v1alpha1.RULES:
        assert any(rule.message.startswith(m) or m in rule.message for m in failing), rule.message
