# SPDX-License-Identifier: Apache-2.0
"""Conversion: MindSpore export, ATC, TensorRT and converter_lite, verified against a reference."""
