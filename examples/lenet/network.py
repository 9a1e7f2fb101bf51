# SPDX-License-Identifier: Apache-2.0
"""LeNet5 for 1x32x32 images, 10 classes: the network code a checkpoint needs to become a graph.

``inferplane convert --network network:lenet5`` imports this module (``PYTHONPATH`` must hold
this directory) and calls ``lenet5()`` for a fresh, untrained network to load the weights into.
"""

from __future__ import annotations

import mindspore.nn as nn


class LeNet5(nn.Cell):
    """The classic LeNet5: two conv/pool stages, three dense layers."""

    def __init__(self, num_classes: int = 10, channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5, pad_mode="valid")
        self.conv2 = nn.Conv2d(6, 16, 5, pad_mode="valid")
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Dense(16 * 5 * 5, 120)
        self.fc2 = nn.Dense(120, 84)
        self.fc3 = nn.Dense(84, num_classes)

    def construct(self, x):  # type: ignore[no-untyped-def]
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.flatten(x)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        return self.fc3(x)


def lenet5() -> nn.Cell:
    """A fresh LeNet5 (each export needs its own instance: MindSpore caches compiled graphs)."""
    return LeNet5()
