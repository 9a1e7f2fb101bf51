# SPDX-License-Identifier: Apache-2.0
"""The control plane: inventory, planner and builders (pure), kube I/O and the kopf handlers."""
