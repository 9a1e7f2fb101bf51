# SPDX-License-Identifier: Apache-2.0
"""OCI image archives (``oci-archive`` tars that ``ctr images import`` reads), written by hand:
a one-layer image from a few files (the pause image), or one more layer on top of an existing
archive (a model's network code on the cpu image). Nothing here needs a container engine."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar of ``path -> (content, mode)``; folders on the way are added (mode 0755)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({str(p) for f in files for p in Path(f).parents if str(p) != "."})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _descriptor(media_type: str, data: bytes, blobs: dict[str, bytes]) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[f"blobs/sha256/{digest.removeprefix('sha256:')}"] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _write(
    out: BinaryIO,
    *,
    name: str,
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    blobs: dict[str, bytes],
    base: Path | None = None,
) -> None:
    """Finish an archive: config, manifest and an index naming it ``name``; the blobs of
    ``base`` (an archive) are copied in first."""
    config_desc = _descriptor(CONFIG, json.dumps(config).encode(), blobs)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_desc, "layers": layers}
    manifest_desc = _descriptor(MANIFEST, json.dumps(manifest).encode(), blobs)
    manifest_desc["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": name,
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode(),
        **blobs,
    }
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if base is not None:
            with tarfile.open(base) as source:
                for member in source:
                    if member.isfile() and member.name.startswith("blobs/"):
                        tar.addfile(member, source.extractfile(member))
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def image(
    files: dict[str, tuple[bytes, int]], *, name: str, entrypoint: list[str], user: str
) -> bytes:
    """A one-layer image of ``files`` (``path -> (content, mode)``), as archive bytes."""
    blobs: dict[str, bytes] = {}
    layer = _descriptor(LAYER, _tar(files), blobs)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }
    out = io.BytesIO()
    _write(out, name=name, config=config, layers=[layer], blobs=blobs)
    return out.getvalue()


def _read_json(tar: tarfile.TarFile, name: str) -> Any:
    member = tar.extractfile(name)
    assert member is not None, name
    return json.load(member)


def layered(base: Path, files: dict[str, tuple[bytes, int]], *, name: str, out: Path) -> None:
    """Write ``out``: the single image of archive ``base`` plus one layer of ``files``, named
    ``name`` (uncompressed layers only add their digest to the config's ``diff_ids``)."""
    with tarfile.open(base) as tar:
        (entry,) = _read_json(tar, "index.json")["manifests"]
        blob = "blobs/sha256/{}"
        manifest = _read_json(tar, blob.format(entry["digest"].removeprefix("sha256:")))
        config = _read_json(tar, blob.format(manifest["config"]["digest"].removeprefix("sha256:")))
    blobs: dict[str, bytes] = {}
    layer = _descriptor(LAYER, _tar(files), blobs)
    config["rootfs"]["diff_ids"].append(layer["digest"])
    config.setdefault("history", []).append({"created_by": f"tests.cluster.oci.layered ({name})"})
    layers = [*manifest["layers"], layer]
    with out.open("wb") as target:
        _write(target, name=name, config=config, layers=layers, blobs=blobs, base=base)
