#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Source this file: it makes sure the system packages and the Python environment exist, then
# activates the environment. The venv lives outside the clone, keyed by pyproject.toml and the
# Python version, so a warm run reuses it and a cold one builds it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export INFERPLANE_CACHE="${INFERPLANE_CACHE:-$HOME/.cache/inferplane}"
mkdir -p "$INFERPLANE_CACHE"
PYTHON="${PYTHON:-python3}"

need_apt=()
for pkg in libgomp1 wrk; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    echo "inferplane: installing Debian packages: ${need_apt[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

# The key covers the Python version and the declared dependencies only: tool settings in
# pyproject.toml (ruff, mypy, pytest) can change without rebuilding the environment.
key="$("$PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import hashlib, json, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = {"deps": project["dependencies"], "extras": project.get("optional-dependencies", {})}
digest = hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:12]
print("py%d%d-%s" % (*sys.version_info[:2], digest))
PY
)"
VENV="$INFERPLANE_CACHE/venv-$key"
(
    flock 9
    if [ ! -f "$VENV/.complete" ]; then
        echo "inferplane: building the Python environment in $VENV (one time, a few minutes)" >&2
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/pip" install -q --upgrade pip >&2
        "$VENV/bin/pip" install -q -e "$ROOT[dev]" >&2
        touch "$VENV/.complete"
    fi
) 9>"$INFERPLANE_CACHE/.venv.lock"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# The venv is shared by every checkout on the machine (CI clones elsewhere): this checkout's
# sources come first on the path, ahead of the editable install that built the venv.
export PYTHONPATH="$ROOT/operator:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
set +euo pipefail
