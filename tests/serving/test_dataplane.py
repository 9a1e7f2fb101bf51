# SPDX-License-Identifier: Apache-2.0
"""The data plane's signature check, without a server."""

from __future__ import annotations

import pytest

from inferplane.serving.dataplane import _fits


@pytest.mark.parametrize(
    ("shape", "model", "fits"),
    [
        ((3, 64), (-1, 64), True),
        ((3, 32), (-1, 64), False),
        ((64,), (-1, 64), False),
        ((1, 64), (1, 64), True),
        ((2, 64), (1, 64), False),
        ((2, 5, 7), (-1, -1, 7), True),
        ((2, 5, 6), (-1, -1, 7), False),
        ((2, 5, 7), (2, -1, -1), True),
        ((3, 5, 7), (2, -1, -1), False),
        ((), (), True),
        ((0, 64), (-1, 64), True),
    ],
)
def test_fits(shape: tuple[int, ...], model: tuple[int, ...], fits: bool) -> None:
    assert _fits(shape, model) is fits
