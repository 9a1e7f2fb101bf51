# SPDX-License-Identifier: Apache-2.0
"""A real Kubernetes control plane for tests, built from upstream Go modules, with kwok nodes.

``python -m tests.cluster build|up|down|status`` (see ``docs/testing.md``). Modules:
``versions`` (pins), ``build`` (Go builds into the cache), ``pki`` (certificates),
``profile`` (the simulated nodes), ``components`` (command lines and configuration),
``processes`` (PIDs and logs), ``control_plane`` (up/down), ``handle`` (what tests hold).
"""
