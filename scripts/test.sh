#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite, from a fresh machine: system packages, the Python environment, the
# Kubernetes binaries (built from upstream Go modules, cached), then lint, types, import
# contracts, unit tests and integration tests against a real control plane, then the server's
# tests again against the compiled request path (setup.py, mypyc), as the runtime images run it.
#   scripts/test.sh                 everything
#   scripts/test.sh -m "not integration"   unit tests only (extra args go to pytest; with
#                                   arguments, the compiled pass is left out)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
set -euo pipefail

echo "== lint, types, import contracts" >&2
ruff check operator tests examples setup.py
ruff format --check operator tests examples setup.py
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
if [ "$#" -eq 0 ]; then
    echo "== pytest tests/serving against the compiled request path (cached under ${INFERPLANE_CACHE}/compiled)" >&2
    compiled="$(python -m tests.compiled)"
    compiled_status=0
    PYTHONPATH="$compiled:$PWD" INFERPLANE_EXPECT_COMPILED=1 \
        python -m pytest -p no:cacheprovider tests/serving || compiled_status=$?
    if [ "$compiled_status" -eq 5 ]; then
        echo "inferplane: pytest collected no tests in tests/serving" >&2
        compiled_status=1
    fi
    [ "$status" -ne 0 ] || status=$compiled_status
fi
exit "$status"
