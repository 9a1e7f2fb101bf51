# SPDX-License-Identifier: Apache-2.0
"""inferplane: device-aware conversion, verification and serving of MindSpore models."""

__version__ = "0.1.0"
__all__ = ["__version__"]
