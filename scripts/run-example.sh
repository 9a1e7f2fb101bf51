#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job, end to end on this machine: train the LeNet5 example on the bundled digits if
# examples/lenet/out/ is missing (under a minute on a CPU), then `inferplane run` its manifest:
# detect devices, plan, convert, verify, serve over V2 until Ctrl-C.
#   scripts/run-example.sh                 serve on 127.0.0.1:8080
#   scripts/run-example.sh --port 9000     extra arguments go to `inferplane run`
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source scripts/env.sh
set -euo pipefail
EXAMPLE=examples/lenet
if [ ! -f "$EXAMPLE/out/lenet.ckpt" ] || [ ! -f "$EXAMPLE/out/digits-val.npz" ]; then
    echo "inferplane: training the example (examples/lenet/train.py)" >&2
    python "$EXAMPLE/train.py"
fi
exec inferplane run "$EXAMPLE/inferencemodel.yaml" "$@"
