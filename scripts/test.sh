#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite, from a fresh machine: system packages, the Python environment, the
# Kubernetes binaries (built from upstream Go modules, cached), then lint, types, import
# contracts, unit tests and integration tests against a real control plane.
#   scripts/test.sh                 everything
#   scripts/test.sh -m "not integration"   unit tests only (extra args go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
set -euo pipefail

echo "== lint, types, import contracts" >&2
ruff check operator tests examples
ruff format --check operator tests examples
mypy
lint-imports

echo "== Kubernetes binaries, Prometheus and KEDA (cached under ${INFERPLANE_CACHE})" >&2
python -m tests.cluster build --autoscaling

echo "== pytest" >&2
status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "inferplane: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
