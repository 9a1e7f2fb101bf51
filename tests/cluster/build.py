# SPDX-License-Identifier: Apache-2.0
"""Build the cluster's binaries from upstream Go modules, once, into a cache outside the clone.

Each component lands in ``$INFERPLANE_CACHE/bin/<component>-<version>/``: it is built in a
temporary folder and renamed into place, so a folder that exists is complete. A file lock makes
concurrent builds (two test sessions, two helpers) wait for each other instead of racing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cluster import versions


class BuildError(RuntimeError):
    """A binary could not be built; the message names the component and the go log."""


def cache_root() -> Path:
    return Path(os.environ.get("INFERPLANE_CACHE", Path.home() / ".cache" / "inferplane"))


def bin_dir() -> Path:
    return cache_root() / "bin"


def component_dir(component: versions.Component) -> Path:
    return bin_dir() / f"{component.name}-{component.version}"


def binary_path(name: str) -> Path:
    """Where the cached binary ``name`` (``kubectl``, ``helm``, ...) lives, built or not."""
    return component_dir(versions.COMPONENT_OF[name]) / name


def is_built(component: versions.Component) -> bool:
    folder = component_dir(component)
    return all((folder / b).is_file() for b in component.binaries)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOFLAGS"] = "-trimpath -buildvcs=false"
    env["GOTOOLCHAIN"] = "local"
    return env


def _build_component(component: versions.Component, log: Path) -> float:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the test cluster is built from Go modules: install Go 1.26 or newer")
    final = component_dir(component)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ldflags = " ".join(("-s", "-w", *component.ldflags))
    tags = [f"-tags={','.join(component.tags)}"] if component.tags else []
    jobs = os.environ.get("INFERPLANE_GO_JOBS", "2")
    start = time.monotonic()
    for binary, package in zip(component.binaries, component.packages, strict=True):
        if component.module_dir is None:
            argv = [go, "install", "-p", jobs, *tags, f"-ldflags={ldflags}", package]
            env = {**_go_env(), "GOBIN": str(tmp)}
            cwd = None
        else:
            out = tmp / binary
            argv = [go, "build", "-p", jobs, *tags, f"-ldflags={ldflags}", "-o", str(out), package]
            env = _go_env()
            cwd = component.module_dir
        with log.open("a") as out_log:
            out_log.write(f"$ {' '.join(argv)}\n")
            out_log.flush()
            result = subprocess.run(argv, cwd=cwd, env=env, stdout=out_log, stderr=out_log)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"building {binary} {component.version} failed: see {log}")
    tmp.rename(final)
    return time.monotonic() - start


def ensure_built(
    components: tuple[versions.Component, ...] = versions.COMPONENTS,
    *,
    echo: bool = False,
) -> dict[str, float]:
    """Build every missing component; return the seconds each build took (0 for cached ones)."""
    timings: dict[str, float] = {}
    log = bin_dir() / "build.log"
    with locked(bin_dir() / ".build.lock"):
        for component in components:
            label = f"{component.name}-{component.version}"
            if is_built(component):
                timings[label] = 0.0
                continue
            if echo:
                print(f"building {label} (log: {log})", file=sys.stderr, flush=True)
            seconds = _build_component(component, log)
            timings[label] = seconds
            with log.open("a") as out_log:
                out_log.write(f"built {label} in {seconds:.0f} s\n")
            if echo:
                print(f"built {label} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return timings


def module_source(module: str, version: str) -> Path:
    """The source tree of a Go module at ``version``, downloaded into Go's module cache (from
    the Go module proxy, once): KEDA's CRDs come from there, exactly as released."""
    go = shutil.which("go")
    if go is None:
        raise BuildError(f"{module} comes from the Go module proxy: install Go 1.26 or newer")
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        cwd=versions.GO_DIR,
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    if result.returncode != 0 or "Dir" not in info:
        raise BuildError(f"go mod download {module}@{version} failed: {result.stderr or info}")
    return Path(info["Dir"])


def keda_crds() -> Path:
    """KEDA's CRDs (``config/crd/bases``) of the version the cluster's KEDA is built from."""
    return module_source("github.com/kedacore/keda/v2", versions.KEDA) / "config" / "crd" / "bases"
