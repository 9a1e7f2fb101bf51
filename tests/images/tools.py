# SPDX-License-Identifier: Apache-2.0
"""The programs the image tooling runs (buildah, debootstrap, runc): installed from Debian's
packages when missing, called with their output in a log file and a clear error on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

DEBIAN_PACKAGES = {"buildah": "buildah", "debootstrap": "debootstrap", "runc": "runc"}
"""Program -> the Debian package that brings it (buildah depends on runc, but say it)."""
NICE = ("nice", "-n", "10")
"""Builds share the machine: they run at a lower priority."""


class ToolError(RuntimeError):
    """A program failed; the message names it and ends with the tail of its log."""


def say(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def missing_reason() -> str | None:
    """Why images cannot be built on this machine, or None when they can."""
    if os.geteuid() != 0:
        return f"building and running images needs root (buildah, runc); this is uid {os.geteuid()}"
    if shutil.which("apt-get") is None and any(shutil.which(p) is None for p in DEBIAN_PACKAGES):
        return "no buildah/debootstrap/runc and no apt-get to install them"
    return None


def ensure_programs() -> None:
    """Install buildah, debootstrap and runc with apt when one is missing (root only)."""
    reason = missing_reason()
    if reason:
        raise ToolError(reason)
    need = sorted({pkg for prog, pkg in DEBIAN_PACKAGES.items() if shutil.which(prog) is None})
    if not need:
        return
    say(f"installing Debian packages: {' '.join(need)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ("-o", "DPkg::Lock::Timeout=600")
    subprocess.run(["apt-get", *lock, "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", *lock, "install", "-y", "-qq", *need], check=True, env=env)


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run(argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` with stdout and stderr appended to ``log``; raise ToolError on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        code = subprocess.run(list(argv), stdout=out, stderr=out, env=env, check=False).returncode
    if code != 0:
        raise ToolError(
            f"{argv[0] if argv[0] != 'nice' else argv[3]} failed (exit {code}); "
            f"log {log}:\n{_tail(log)}"
        )


def output(argv: Sequence[str], log: Path) -> str:
    """Run ``argv`` and return its stdout (stripped); stderr goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as err:
        err.write(f"$ {' '.join(argv)}\n")
        err.flush()
        result = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=err, text=True)
    if result.returncode != 0:
        raise ToolError(f"{argv[0]} failed (exit {result.returncode}); log {log}:\n{_tail(log)}")
    return result.stdout.strip()


def image_exists(name: str) -> bool:
    return (
        subprocess.run(
            ["buildah", "inspect", "--type", "image", name], capture_output=True, check=False
        ).returncode
        == 0
    )
