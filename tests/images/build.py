# SPDX-License-Identifier: Apache-2.0
"""Build the runtime images with buildah, cached by content, and export each as an OCI archive.

An image's key digests everything that goes into it: its Dockerfile and build arguments, the
base (and the builder base), ``constraints.txt``, ``pyproject.toml``, ``setup.py``, ``README.md``
and every file under ``operator/``.
``$INFERPLANE_CACHE/images/<name>-<key>.oci.tar`` exists only once that exact image was built and
exported, so a second run with nothing changed builds nothing. Within a build, buildah's layer
cache (``--layers``) keeps the dependency layers while only the source changed: the Dockerfiles
install the dependencies from the project's metadata first and the source last.

pip inside a build reads wheels only from ``$INFERPLANE_CACHE/images/wheels`` (mounted at
``/wheels``, no index): they are downloaded once on this machine with pip, the same Python
(3.11) and the same constraints, so the 804 MB MindSpore wheel is fetched once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.build import locked
from tests.images import base as base_mod
from tests.images import tools

from inferplane import __version__
from inferplane.control.settings import DEFAULT_REGISTRY

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "runtime-images"
CONSTRAINTS = IMAGES_DIR / "constraints.txt"
REGISTRY = DEFAULT_REGISTRY
"""The operator's and the chart's default registry (values.yaml ``image.registry``): images
built here carry these names, so the chart's defaults name them on a node that imported them."""
EXTRAS = re.compile(r'"/src\[([a-z0-9,-]+)\]"')


@dataclass(frozen=True)
class Image:
    """One image this tool builds: a Dockerfile of runtime-images/ and its build arguments."""

    name: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    variant: str = ""
    """Suffix of the tag (``0.1.0-cpu``), as the chart's ``images.<name>.variant``."""

    @property
    def dockerfile(self) -> Path:
        return IMAGES_DIR / self.name / "Dockerfile"

    def reference(self, registry: str = REGISTRY, tag: str = __version__) -> str:
        suffix = f"-{self.variant}" if self.variant else ""
        return f"{registry.rstrip('/')}/{self.name}:{tag}{suffix}"

    @property
    def compiled(self) -> bool:
        """Whether the image installs the compiled server: its Dockerfile has a ``BUILDER``
        stage (on the builder base here)."""
        return "\nARG BUILDER=" in self.dockerfile.read_text()

    def extras(self) -> list[str]:
        """The extras the Dockerfile installs (``"/src[serve,s3]"``), in its order."""
        found: list[str] = []
        for match in EXTRAS.finditer(self.dockerfile.read_text()):
            found += [e for e in match.group(1).split(",") if e not in found]
        if not found:
            raise tools.ToolError(f'{self.dockerfile}: no pip install of "/src[...]"')
        return found


IMAGES: dict[str, Image] = {
    "operator": Image("operator"),
    "cpu": Image("cpu"),
    "mindspore": Image("mindspore", {"DEVICE": "cpu"}, variant="cpu"),
}
"""What this machine builds, in build order (smallest first)."""
NOT_BUILT = {
    "nvidia": "its trtexec comes from NVIDIA's TensorRT container (nvcr.io), which cannot be "
    "pulled here, and no GPU is here to run it",
    "ascend": "its base is Huawei's CANN image (ascendai/cann), which cannot be pulled here, and "
    "no NPU is here to run it",
    "edge": "MindSpore Lite (tarball and cp311 wheel) is fetched from Huawei's release server, "
    "which cannot be reached here",
}


@dataclass(frozen=True)
class Built:
    """A built image: its names, the OCI archive to import, and what the build took."""

    name: str
    reference: str
    key: str
    archive: Path
    size_bytes: int
    build_seconds: float
    cached: bool
    export_seconds: float = 0.0

    @property
    def local(self) -> str:
        """buildah's name for exactly this build (the key as tag)."""
        return f"localhost/inferplane/{self.name}:{self.key}"


def images_dir() -> Path:
    return base_mod.images_dir()


def wheels_dir() -> Path:
    return images_dir() / "wheels"


def log_path() -> Path:
    return images_dir() / "build.log"


def archive_path(name: str, key: str) -> Path:
    return images_dir() / f"{name}-{key}.oci.tar"


# ---- what goes into an image -------------------------------------------------------------------


def requirements(extras: Sequence[str], pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's core dependencies, those of ``extras`` (self-references followed), and
    its build backend: what pip needs to install ``.[extras]`` with no index."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    found = list(project["dependencies"]) + list(data["build-system"]["requires"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise tools.ToolError(f"pyproject.toml has no extra {extra!r}")
        seen.add(extra)
        for requirement in optional[extra]:
            own = re.fullmatch(rf"{project['name']}\[([\w,-]+)\]", requirement.replace(" ", ""))
            if own:
                pending += own.group(1).split(",")
            elif requirement not in found:
                found.append(requirement)
    return found


def source_files(root: Path = ROOT) -> list[Path]:
    """The files the Dockerfiles copy from the checkout (what .dockerignore lets through),
    relative to ``root``."""
    files = [Path(n) for n in ("pyproject.toml", "setup.py", "README.md")]
    files.append(CONSTRAINTS.relative_to(ROOT))
    for directory, subdirs, names in os.walk(root / "operator"):
        subdirs[:] = sorted(
            d for d in subdirs if d != "__pycache__" and not d.endswith(".egg-info")
        )
        here = Path(directory).relative_to(root)
        files += [here / n for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    return files


def files_key(parts: Iterable[str], files: Iterable[Path], root: Path = ROOT) -> str:
    """The digest (12 hex digits) of ``parts`` and of ``files`` under ``root``, names and
    contents."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    for relative in files:
        digest.update(str(relative).encode() + b"\0")
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return digest.hexdigest()[:12]


def image_key(image: Image, base_key: str, root: Path = ROOT) -> str:
    """The digest of everything that goes into ``image`` (12 hex digits)."""
    parts = (image.name, json.dumps(dict(image.build_args), sort_keys=True), base_key)
    return files_key(parts, [image.dockerfile.relative_to(ROOT), *source_files(root)], root)


# ---- wheels ------------------------------------------------------------------------------------


def ensure_wheels(extras: Sequence[str], log: Path) -> None:
    """Download (once) every wheel ``.[extras]`` needs into the wheel cache."""
    if sys.version_info[:2] != (3, 11):
        raise tools.ToolError(
            f"wheels are downloaded with this Python ({sys.version.split()[0]}), which must be "
            "the images' Python 3.11"
        )
    wanted = requirements(extras)
    digest = hashlib.sha256(json.dumps(wanted).encode() + CONSTRAINTS.read_bytes())
    stamp = wheels_dir() / ".sets" / digest.hexdigest()[:12]
    if stamp.is_file():
        return
    tools.say(f"wheels for [{','.join(extras)}] into {wheels_dir()}")
    tools.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--dest",
            str(wheels_dir()),
            "--constraint",
            str(CONSTRAINTS),
            *wanted,
        ],
        log,
    )
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text("\n".join(wanted) + "\n")


# ---- building ----------------------------------------------------------------------------------


def _record(archive: Path) -> Path:
    return archive.with_suffix(".json")


def _size(reference: str, log: Path) -> int:
    """The image's size: its layers uncompressed (what ``docker images`` shows)."""
    data = json.loads(tools.output(["buildah", "inspect", "--type", "image", reference], log))
    manifest = json.loads(data["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"])


def bud_command(
    image: Image,
    base_image: str,
    tags: Iterable[str],
    *,
    root: Path = ROOT,
    no_cache: bool = False,
    builder_image: str | None = None,
) -> list[str]:
    """The buildah command line that builds ``image`` on ``base_image`` (its compiling stage on
    ``builder_image``) from the wheel cache, with the checkout ``root`` as context
    (``no_cache``: no layer of an earlier build)."""
    args = {
        "BASE": base_image,
        **({"BUILDER": builder_image} if builder_image else {}),
        "PIP_FIND_LINKS": "/wheels",
        "PIP_NO_INDEX": "1",
        **image.build_args,
    }
    command = [
        *tools.NICE,
        "buildah",
        "bud",
        "--layers",
        "--pull=never",
        "--network",
        "host",
        "--http-proxy=false",
        "--volume",
        f"{wheels_dir()}:/wheels:ro",
        *(["--no-cache"] if no_cache else []),
        "-f",
        str(root / image.dockerfile.relative_to(ROOT)),
    ]
    for name, value in args.items():
        command += ["--build-arg", f"{name}={value}"]
    for tag in tags:
        command += ["--tag", tag]
    return [*command, str(root)]


def _build(
    image: Image,
    base: base_mod.Base,
    builder: base_mod.Base | None,
    key: str,
    log: Path,
    root: Path,
    no_cache: bool,
) -> Built:
    archive = archive_path(image.name, key)
    reference = image.reference()
    local = f"localhost/inferplane/{image.name}:{key}"
    start = time.monotonic()
    if no_cache or not tools.image_exists(local):
        ensure_wheels(image.extras(), log)
        tools.say(f"{image.name}: building {reference} (key {key})")
        command = bud_command(
            image,
            base.image,
            [local, reference],
            root=root,
            no_cache=no_cache,
            builder_image=builder.image if builder else None,
        )
        tools.run(command, log)
    else:
        tools.run(["buildah", "tag", local, reference], log)
    seconds = time.monotonic() - start
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    start = time.monotonic()
    tools.run(["buildah", "push", "--quiet", local, f"oci-archive:{partial}:{reference}"], log)
    partial.rename(archive)
    export_seconds = time.monotonic() - start
    built = Built(
        image.name,
        reference,
        key,
        archive,
        _size(local, log),
        seconds,
        cached=False,
        export_seconds=export_seconds,
    )
    _record(archive).write_text(
        json.dumps(
            {
                "reference": reference,
                "key": key,
                "size_bytes": built.size_bytes,
                "build_seconds": round(seconds, 1),
                "export_seconds": round(export_seconds, 1),
            }
        )
        + "\n"
    )
    for stale in images_dir().glob(f"{image.name}-*.oci.tar"):
        if stale != archive:
            stale.unlink(missing_ok=True)
            _record(stale).unlink(missing_ok=True)
    _forget_older(image.name, local, log)
    tools.say(
        f"{image.name}: {reference} {built.size_bytes / 1e6:.0f} MB, built in {seconds:.0f} s, "
        f"exported in {export_seconds:.0f} s"
    )
    return built


def _forget_older(name: str, keep: str, log: Path) -> None:
    """Untag the older builds of image ``name`` in buildah's storage (their layers that the new
    build shares stay), so that disk use does not grow with every source change."""
    listing = json.loads(tools.output(["buildah", "images", "--json"], log) or "[]")
    prefix = f"localhost/inferplane/{name}:"
    for entry in listing:
        for tag in entry.get("names") or []:
            if tag.startswith(prefix) and tag != keep:
                subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def _cached(image: Image, key: str) -> Built | None:
    archive = archive_path(image.name, key)
    record = _record(archive)
    if not (archive.is_file() and record.is_file()):
        return None
    data = json.loads(record.read_text())
    return Built(
        image.name,
        data["reference"],
        key,
        archive,
        int(data["size_bytes"]),
        float(data["build_seconds"]),
        cached=True,
        export_seconds=float(data.get("export_seconds", 0.0)),
    )


def ensure(
    names: Sequence[str] = tuple(IMAGES), *, root: Path = ROOT, no_cache: bool = False
) -> dict[str, Built]:
    """Build what is missing of ``names`` (all by default) and return every one, built or
    cached. Holds ``$INFERPLANE_CACHE/images/.build.lock`` while it works. ``root``: another
    checkout (the benchmark's copy); ``no_cache``: build every layer anew."""
    unknown = [n for n in names if n not in IMAGES]
    for name in unknown:
        if name in NOT_BUILT:
            raise tools.ToolError(f"{name} is not built on this machine: {NOT_BUILT[name]}")
        raise tools.ToolError(f"no image {name!r}; images: {', '.join(IMAGES)}")
    tools.ensure_programs()
    log = log_path()
    result: dict[str, Built] = {}
    with locked(images_dir() / ".build.lock"):
        base = base_mod.ensure(log)
        wanted = [IMAGES[n] for n in IMAGES if n in names]
        builder = base_mod.ensure(log, builder=True) if any(i.compiled for i in wanted) else None
        for image in wanted:
            own = builder if image.compiled else None
            key = image_key(image, base.key + (f"+{own.key}" if own else ""), root)
            cached = None if no_cache else _cached(image, key)
            result[image.name] = cached or _build(image, base, own, key, log, root, no_cache)
    return result


def load(built: Built) -> str:
    """Make sure buildah's storage holds ``built`` (from its archive when it does not) and
    return its local name."""
    if not tools.image_exists(built.local):
        log = log_path()
        with locked(images_dir() / ".build.lock"):
            pulled = tools.output(
                ["buildah", "pull", "--quiet", f"oci-archive:{built.archive}"], log
            )
            image_id = pulled.splitlines()[-1].strip()
            tools.run(["buildah", "tag", image_id, built.local, built.reference], log)
    return built.local


def push(built: Built, registry: str, tag: str, *, tls_verify: bool = True) -> str:
    """Push ``built`` as ``<registry>/<name>:<tag>[-variant]`` and return that reference."""
    destination = IMAGES[built.name].reference(registry, tag)
    argv = ["buildah", "push", f"--tls-verify={str(tls_verify).lower()}"]
    result = subprocess.run([*argv, load(built), f"docker://{destination}"], check=False)
    if result.returncode != 0:
        raise tools.ToolError(f"pushing {destination} failed (exit {result.returncode})")
    return destination
