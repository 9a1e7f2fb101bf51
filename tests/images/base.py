# SPDX-License-Identifier: Apache-2.0
"""The base image, made from Debian's packages: no registry has to answer.

``debootstrap --variant=minbase`` unpacks Debian bookworm with Python 3.11 (``python3`` and its
``venv`` module) and ``libgomp1`` (MindSpore) from the mirror apt uses on this machine. The tree
is trimmed (documentation, locales, apt's caches), given the machine's CA bundle with a pip.conf
``cert =`` line (pip inside a build then trusts what the machine trusts, a proxy's CA included),
and cached as a tarball keyed by the suite, the package list, the mirror and that bundle. The
tarball becomes the buildah image ``localhost/inferplane/base:<key>`` (five seconds).

The builder is the same tree with a C compiler and Python's headers (``localhost/inferplane/
builder:<key>``): the Dockerfiles' ``BUILDER`` stage compiles the server's request path on it
(``setup.py``), and only the wheel reaches the images.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.build import cache_root, locked
from tests.images import tools

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "libgomp1", "ca-certificates")
BUILDER_PACKAGES = (*PACKAGES, "gcc", "libc6-dev", "python3-dev")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
)
RECIPE = 1
"""Bumped when the steps below change what the tarball holds."""


@dataclass(frozen=True)
class Base:
    name: str
    """``base`` or ``builder``."""
    key: str
    tarball: Path

    @property
    def image(self) -> str:
        return f"localhost/inferplane/{self.name}:{self.key}"


def mirror() -> str:
    """The Debian mirror apt uses here (first ``URIs:`` or ``deb`` line naming /debian)."""
    for path in SOURCES:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s*", line)
            if match:
                return match.group(1)
    return "http://deb.debian.org/debian"


def key(mirror_url: str, ca_bundle: bytes, packages: tuple[str, ...] = PACKAGES) -> str:
    digest = hashlib.sha256()
    for part in (SUITE, ",".join(packages), mirror_url, str(RECIPE)):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(ca_bundle).digest())
    return digest.hexdigest()[:12]


def images_dir() -> Path:
    return cache_root() / "images"


def ensure(log: Path, *, builder: bool = False) -> Base:
    """The base (or the builder) tarball, built once under a lock, imported into buildah's
    storage."""
    url = mirror()
    name, packages = ("builder", BUILDER_PACKAGES) if builder else ("base", PACKAGES)
    digest = key(url, CA_BUNDLE.read_bytes(), packages)
    base = Base(name, digest, images_dir() / f"{name}-{SUITE}-{digest}.tar")
    with locked(images_dir() / ".base.lock"):
        if not base.tarball.is_file():
            _bootstrap(url, base.tarball, packages, log)
        if not tools.image_exists(base.image):
            _import(base, log)
    return base


def _bootstrap(url: str, tarball: Path, packages: tuple[str, ...], log: Path) -> None:
    start = time.monotonic()
    tools.say(f"{tarball.name}: debootstrap {SUITE} from {url} (one time, a few minutes)")
    with tempfile.TemporaryDirectory(dir=images_dir(), prefix=".base-") as work:
        rootfs = Path(work) / "rootfs"
        tools.run(
            [
                *tools.NICE,
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                SUITE,
                str(rootfs),
                url,
            ],
            log,
        )
        for relative in TRIM:
            target = rootfs / relative
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(mode=0o755)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        shutil.copyfile(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text(f"[global]\ncert = {CA_BUNDLE}\n")
        partial = tarball.with_suffix(".partial")
        tools.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
            log,
        )
        partial.rename(tarball)
    tools.say(f"{tarball} in {time.monotonic() - start:.0f} s")


def _import(base: Base, log: Path) -> None:
    container = tools.output(["buildah", "from", "scratch"], log)
    try:
        tools.run(["buildah", "add", "--quiet", container, str(base.tarball), "/"], log)
        tools.run(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "/bin/bash",
                "--label",
                f"org.opencontainers.image.title=inferplane-{base.name}-{SUITE}",
                container,
            ],
            log,
        )
        tools.run(["buildah", "commit", "--quiet", "--rm", container, base.image], log)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise
