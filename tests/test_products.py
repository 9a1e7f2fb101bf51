# SPDX-License-Identifier: Apache-2.0
"""One spelling per product, whichever part of a cluster spelled it."""

from __future__ import annotations

import pytest

from inferplane import products


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),  # NVML, nvidia-smi, DRA productName
        ("NVIDIA-A100-SXM4-40GB", "A100-SXM4-40GB"),  # GPU feature discovery, current
        ("A100-SXM4-40GB", "A100-SXM4-40GB"),  # GFD, older; our docs
        ("NVIDIA-A100-SXM4-40GB-SHARED", "A100-SXM4-40GB"),  # GFD, time-slicing renamed
        ("  NVIDIA   A100-SXM4-40GB ", "A100-SXM4-40GB"),
        ("Tesla T4", "T4"),
        ("Tesla-T4", "T4"),
        ("T4", "T4"),
        ("Tesla-T4-SHARED", "T4"),
        ("NVIDIA H100 80GB HBM3", "H100-80GB-HBM3"),
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB-HBM3"),
        ("NVIDIA GeForce RTX 4090", "GeForce-RTX-4090"),
        ("NVIDIA L40S", "L40S"),
        ("910B3", "Ascend910B3"),  # npu-smi, node.kubernetes.io/npu.chip.name
        ("Ascend910B3", "Ascend910B3"),  # ATC --soc_version
        ("ascend910b3", "Ascend910B3"),
        ("Ascend 310P3", "Ascend310P3"),
        ("310P3", "Ascend310P3"),
        ("Ascend910B", "Ascend910B"),  # Ascend DRA driver deviceType
        ("huawei-Ascend910", "Ascend910"),  # the accelerator label
        ("910PremiumA", "Ascend910PremiumA"),
    ],
)
def test_every_spelling_has_one_canonical_form(spelling: str, canonical: str) -> None:
    assert products.canonical(spelling) == canonical
    assert products.canonical(canonical) == canonical  # idempotent


def test_same_compares_spellings_and_not_products() -> None:
    assert products.same("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb")
    assert products.same("310P3", "Ascend310P3")
    assert not products.same("A100-SXM4-40GB", "A100-SXM4-80GB")
    assert not products.same("Ascend310P3", "Ascend310P1")
    assert not products.same("T4", "Tesla")  # a brand word alone stays a name


def test_ascend_and_gpu_names_are_told_apart() -> None:
    assert products.is_ascend("310P3") and products.is_ascend("huawei-Ascend910")
    assert not products.is_ascend("A100-SXM4-40GB") and not products.is_ascend("T4")
