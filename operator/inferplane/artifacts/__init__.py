# SPDX-License-Identifier: Apache-2.0
"""Artifacts: the manifest both planes share, the content-addressed store, safe unpacking."""
