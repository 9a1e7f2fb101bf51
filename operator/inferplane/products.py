# SPDX-License-Identifier: Apache-2.0
"""One spelling of every device product: GPU models and Ascend SoC versions.

The same GPU is spelled differently by each part of a cluster:

- NVML, ``nvidia-smi --query-gpu=name`` and DRA's ``productName`` (``gpu.nvidia.com``, read
  from NVML): ``NVIDIA A100-SXM4-40GB``, ``Tesla T4``;
- GPU feature discovery's ``nvidia.com/gpu.product``, current releases: ``NVIDIA-A100-SXM4-40GB``,
  ``Tesla-T4``; older releases and our docs: ``A100-SXM4-40GB``, ``T4``;
- GFD renaming a time-sliced GPU (``renameByDefault``): ``NVIDIA-A100-SXM4-40GB-SHARED``;

and an Ascend chip by every Ascend tool:

- ``npu-smi info`` (its Name column) and ``node.kubernetes.io/npu.chip.name``: ``910B3``, ``310P3``;
- ATC's ``--soc_version`` (the canonical form): ``Ascend910B3``, ``Ascend310P3``;
- the Ascend DRA driver's ``deviceType`` (the generation only) and the ``accelerator`` label:
  ``Ascend910B``, ``huawei-Ascend910``.

``canonical`` maps each to one name — the GPU model with no vendor or brand word and dashes for
spaces (``A100-SXM4-40GB``, ``T4``), the SoC version as ATC names it (``Ascend910B3``) — which the
inventory's pools, ``spec.deviceOptions.<class>.products``, the artifact key and the status all
use. ``same`` compares two spellings (case aside). Standard library only: the artifact key uses it.
"""

from __future__ import annotations

import re

BRAND_WORDS = ("nvidia", "tesla")
"""Words NVML and GFD put before the model (``NVIDIA A100...``, ``Tesla T4``), dropped."""
SUFFIXES = ("-SHARED",)
"""What GPU feature discovery appends to a product it renames for time-slicing or MPS."""
ASCEND = re.compile(r"^(?:huawei[-_ ]?)?(?:ascend[-_ ]?)?(?P<chip>[0-9]{3}[A-Za-z0-9]*)$", re.I)
"""An Ascend chip in any spelling: ``910B3``, ``Ascend910B3``, ``Ascend 310P3``,
``huawei-Ascend910``."""
SHORT_CHIP = re.compile(r"^[0-9]{3}[A-Za-z]?[0-9]*$")
"""Chips spelled with one series letter (``910b3`` → ``910B3``); longer names keep their case
(``910PremiumA``)."""


def is_ascend(name: str) -> bool:
    """Whether ``name`` spells an Ascend chip (rather than a GPU model)."""
    return ASCEND.match(name.strip()) is not None


def canonical(name: str) -> str:
    """The one spelling of a product name (see the module's table); unknown forms pass through
    with whitespace runs turned into dashes."""
    text = name.strip()
    ascend = ASCEND.match(text)
    if ascend:
        chip = ascend.group("chip")
        return f"Ascend{chip.upper() if SHORT_CHIP.match(chip) else chip}"
    words = text.replace("_", " ").split()
    if len(words) == 1:
        words = text.split("-")
    while len(words) > 1 and words[0].lower() in BRAND_WORDS:
        words = words[1:]
    product = "-".join(words)
    for suffix in SUFFIXES:
        if product.upper().endswith(suffix) and len(product) > len(suffix):
            product = product[: -len(suffix)]
    return product


def same(one: str, other: str) -> bool:
    """Whether two spellings name the same product."""
    return canonical(one).lower() == canonical(other).lower()
