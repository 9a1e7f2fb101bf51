# SPDX-License-Identifier: Apache-2.0
"""The data plane: a thin Open Inference Protocol (KServe V2) server over one backend."""
