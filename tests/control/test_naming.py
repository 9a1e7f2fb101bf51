# SPDX-License-Identifier: Apache-2.0
"""Names and labels are valid Kubernetes names, stable, and distinct for distinct inputs."""

from __future__ import annotations

import re

import pytest

from inferplane.control import naming
from inferplane.devices import DeviceClass

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("lenet", "cpu"), "lenet-cpu"),
        (("lenet", "nvidia", "A100-SXM4-40GB"), "lenet-nvidia-a100-sxm4-40gb"),
        (("my.model", "nvidia", "Tesla T4"), None),
        (("1st", "cpu"), None),
        (("x" * 80, "ascend310", "Ascend310P3"), None),
    ],
)
def test_dns_label(parts: tuple[str, ...], expected: str | None) -> None:
    name = naming.dns_label(*parts, max_length=52)
    assert DNS_1035.match(name) and len(name) <= 52, name
    if expected is not None:
        assert name == expected
    else:
        assert name.endswith(naming.digest("-".join(parts)))
    assert naming.dns_label(*parts, max_length=52) == name


def test_long_names_that_share_a_prefix_stay_distinct() -> None:
    a = naming.pool_name("m" * 60 + "a", DeviceClass.CPU, None)
    b = naming.pool_name("m" * 60 + "b", DeviceClass.CPU, None)
    assert a != b and len(a) <= 52 and len(b) <= 52


@pytest.mark.parametrize("text", ["lenet", "A100 SXM4 (40GB)", "-x-", "y" * 100, "a.b_c"])
def test_label_value(text: str) -> None:
    value = naming.label_value(text)
    assert LABEL_VALUE.match(value) and len(value) <= 63, value


def test_job_name_depends_on_the_conversion_not_the_model() -> None:
    name = naming.job_name("0123456789abcdef", DeviceClass.NVIDIA, "A100-SXM4-40GB")
    assert name == "convert-nvidia-a100-sxm4-40gb-0123456789abcdef"
    assert DNS_1035.match(name)


def test_labels_and_selectors() -> None:
    pool = naming.pool_name("lenet", DeviceClass.CPU, None)
    labels = naming.pool_labels("lenet", "uid-1", pool, DeviceClass.CPU, None)
    assert labels["app.kubernetes.io/managed-by"] == "inferplane"
    assert labels["app.kubernetes.io/instance"] == "lenet"
    assert naming.pool_selector("uid-1", pool).items() <= labels.items()
    assert naming.server_selector("uid-1").items() <= labels.items()
    assert naming.selector_string({"b": "2", "a": "1"}) == "a=1,b=2"


def test_selectors_use_the_uid_never_the_name() -> None:
    """A model recreated under the same name, or another model whose name starts the same,
    selects none of the other's pods."""
    pool = naming.pool_name("lenet", DeviceClass.CPU, None)
    old = naming.pool_labels("lenet", "uid-old", pool, DeviceClass.CPU, None)
    selector = naming.pool_selector("uid-new", pool)
    assert not selector.items() <= old.items()
    assert not naming.server_selector("uid-new").items() <= old.items()
    assert "inferplane.io/model" not in naming.server_selector("uid-new")


ADVERSARIAL = [
    "lenet", "lenet-cpu", "lenet-cpu-cpu", "lenet-nvidia", "lenet-nvidia-t4", "lenet.cpu",
    "a" * 253, "a" * 252 + "b", ("ab." * 84)[:253].strip("."), "1st",
]  # fmt: skip
TARGETS = [
    (DeviceClass.CPU, None), (DeviceClass.NVIDIA, "T4"), (DeviceClass.NVIDIA, "t4"),
    (DeviceClass.NVIDIA, "A100-SXM4-40GB"), (DeviceClass.ASCEND310, "Ascend310P3"),
    (DeviceClass.ASCEND910, None), (DeviceClass.EDGE, None),
]  # fmt: skip


def test_no_two_children_share_a_name_whatever_the_model_names() -> None:
    """Every Service (model-wide and per pool) and every pool object of models named to collide
    (``lenet`` / ``lenet-cpu`` / ``lenet-cpu-cpu``, 253 characters, dots) is distinct."""
    services: dict[str, tuple[str, ...]] = {}
    pools: dict[str, tuple[str, ...]] = {}
    for model in ADVERSARIAL:
        name = naming.model_service_name(model)
        assert DNS_1035.match(name) and len(name) <= 63, name
        assert services.setdefault(name, (model,)) == (model,), name
        for device_class, product in TARGETS:
            pool = naming.pool_name(model, device_class, product)
            assert DNS_1035.match(pool) and len(pool) <= 52, pool
            assert LABEL_VALUE.match(pool), pool
            owner = (model, device_class.value, product or "")
            assert pools.setdefault(pool, owner) == owner, pool
            assert services.setdefault(pool, owner) == owner, pool
    assert len(pools) == len(ADVERSARIAL) * len(TARGETS)


def test_pool_names_stay_readable() -> None:
    name = naming.pool_name("lenet", DeviceClass.NVIDIA, "A100-SXM4-40GB")
    assert name.startswith("lenet-nvidia-a100-sxm4-40gb-") and len(name) == 28 + 8


def test_owner_reference() -> None:
    ref = naming.owner_reference({"metadata": {"name": "lenet", "uid": "u-1"}}, controller=False)
    assert ref == {
        "apiVersion": "inferplane.io/v1alpha1",
        "kind": "InferenceModel",
        "name": "lenet",
        "uid": "u-1",
        "controller": False,
        "blockOwnerDeletion": True,
    }
