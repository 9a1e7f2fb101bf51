# SPDX-License-Identifier: Apache-2.0
"""The pod sandbox ("pause") image, made from source: nothing can be pulled here.

``build/pause/linux/pause.c`` of the pinned k8s.io/kubernetes module is compiled statically with
gcc (as Kubernetes' own build does), and written as a one-layer OCI image archive that
``ctr images import`` reads, named as containerd's ``sandbox_image``. Cached by version under
``$INFERPLANE_CACHE/bin/pause-<version>/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.cluster import build, oci, versions
from tests.cluster.node_config import SANDBOX_IMAGE

ARCHIVE = "pause.oci.tar"
_PAUSE_C = Path("build", "pause", "linux", "pause.c")


def directory() -> Path:
    return build.bin_dir() / f"pause-{versions.KUBERNETES}"


def ensure_built() -> Path:
    """The cached OCI archive of the pause image; compiled on first use."""
    final = directory()
    if (final / ARCHIVE).is_file():
        return final / ARCHIVE
    with build.locked(build.bin_dir() / ".pause.lock"):
        if (final / ARCHIVE).is_file():
            return final / ARCHIVE
        gcc = shutil.which("gcc")
        if gcc is None:
            raise build.BuildError(
                "the pause image is compiled with gcc: install gcc and libc6-dev"
            )
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        binary = tmp / "pause"
        argv = [
            gcc,
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f'-DVERSION="{versions.KUBERNETES}"',
            "-o",
            str(binary),
            str(build.module_source("k8s.io/kubernetes", versions.KUBERNETES) / _PAUSE_C),
        ]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise build.BuildError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        subprocess.run(["strip", str(binary)], check=False)
        (tmp / ARCHIVE).write_bytes(
            oci.image(
                {"pause": (binary.read_bytes(), 0o755)},
                name=SANDBOX_IMAGE,
                entrypoint=["/pause"],
                user="65535:65535",
            )
        )
        tmp.rename(final)
    return final / ARCHIVE
