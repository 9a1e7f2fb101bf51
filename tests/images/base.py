# SPDX-License-Identifier: Apache-2.0
"""The base image, made from Debian's packages: no registry has to answer.

``debootstrap --variant=minbase`` unpacks Debian bookworm with Python 3.11 (``python3`` and its
``venv`` module) and ``libgomp1`` (MindSpore) from the mirror apt uses on this machine. The tree
is trimmed (documentation, locales, apt's caches), given the machine's CA bundle with a pip.conf
``cert =`` line (pip inside a build then trusts what the machine trusts, a proxy's CA included),
and cached as a tarball keyed by the suite, the package list, the mirror and that bundle. The
tarball becomes the buildah image ``localhost/inferplane/base:<key>`` (five seconds).
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
    key: str
    tarball: Path

    @property
    def image(self) -> str:
        return f"localhost/inferplane/base:{self.key}"


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


def key(mirror_url: str, ca_bundle: bytes) -> str:
    digest = hashlib.sha256()
    for part in (SUITE, ",".join(PACKAGES), mirror_url, str(RECIPE)):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(ca_bundle).digest())
    return digest.hexdigest()[:12]


def images_dir() -> Path:
    return cache_root() / "images"


def ensure(log: Path) -> Base:
    """The base tarball (built once, under a lock) imported into buildah's storage."""
    url = mirror()
    digest = key(url, CA_BUNDLE.read_bytes())
    base = Base(digest, images_dir() / f"base-{SUITE}-{digest}.tar")
    with locked(images_dir() / ".base.lock"):
        if not base.tarball.is_file():
            _bootstrap(url, base.tarball, log)
        if not tools.image_exists(base.image):
            _import(base, log)
    return base


def _bootstrap(url: str, tarball: Path, log: Path) -> None:
    start = time.monotonic()
    tools.say(f"base: debootstrap {SUITE} from {url} (one time, a few minutes)")
    with tempfile.TemporaryDirectory(dir=images_dir(), prefix=".base-") as work:
        rootfs = Path(work) / "rootfs"
        tools.run(
            [
                *tools.NICE,
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
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
    tools.say(f"base: {tarball} in {time.monotonic() - start:.0f} s")


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
                f"org.opencontainers.image.title=inferplane-base-{SUITE}",
                container,
            ],
            log,
        )
        tools.run(["buildah", "commit", "--quiet", "--rm", container, base.image], log)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise
