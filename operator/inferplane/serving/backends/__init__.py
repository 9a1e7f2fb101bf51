# SPDX-License-Identifier: Apache-2.0
"""Serving backends: one small interface (``base.Backend``), one module per runtime."""
