# SPDX-License-Identifier: Apache-2.0
"""The pod sandbox ("pause") image, made from source: nothing can be pulled here.

``build/pause/linux/pause.c`` of the pinned k8s.io/kubernetes module is compiled statically with
gcc (as Kubernetes' own build does), and written as a one-layer OCI image archive that
``ctr images import`` reads, named as containerd's ``sandbox_image``. Cached by version under
``$INFERPLANE_CACHE/bin/pause-<version>/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.cluster import build, versions
from tests.cluster.node_config import SANDBOX_IMAGE

ARCHIVE = "pause.oci.tar"


def directory() -> Path:
    return build.bin_dir() / f"pause-{versions.KUBERNETES}"


def _module_source() -> Path:
    """``pause.c`` in the module cache (downloaded by ``go mod download`` if missing)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{versions.KUBERNETES}"],
        cwd=versions.GO_DIR / "kubernetes",
        capture_output=True,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    if result.returncode != 0:
        raise build.BuildError(f"go mod download k8s.io/kubernetes failed: {result.stderr}")
    return Path(json.loads(result.stdout)["Dir"]) / "build" / "pause" / "linux" / "pause.c"


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def oci_archive(binary: bytes, name: str) -> bytes:
    """A one-layer OCI image layout (as a tar) holding ``/pause``, named ``name``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size = len(binary)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(binary))
    layer_bytes = layer.getvalue()
    blobs: dict[str, bytes] = {}
    layer_desc = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        **_blob(blobs, layer_bytes),
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(blobs, json.dumps(config).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(blobs, json.dumps(manifest).encode()),
        "annotations": {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name,
        },
    }
    index = {"schemaVersion": 2, "manifests": [manifest_desc]}
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index).encode(),
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in blobs.items()},
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


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
            str(_module_source()),
        ]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise build.BuildError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
        subprocess.run(["strip", str(binary)], check=False)
        (tmp / ARCHIVE).write_bytes(oci_archive(binary.read_bytes(), SANDBOX_IMAGE))
        tmp.rename(final)
    return final / ARCHIVE
