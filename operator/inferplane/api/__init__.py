# SPDX-License-Identifier: Apache-2.0
"""The InferenceModel API (``inferplane.io/v1alpha1``): pydantic models, and the CRD from them."""
