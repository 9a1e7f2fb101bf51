# SPDX-License-Identifier: Apache-2.0
"""Safe unpacking of source archives (``.tar``, ``.tar.gz``/``.tgz``, ``.zip``).

An archive comes from outside (a user's bucket, a URL), so nothing in it is trusted: every member
must land inside the target directory (no absolute paths, no ``..``), links are refused unless
they point inside it, devices and FIFOs are refused, and the member count and total unpacked size
are capped (zip bombs). Everything is checked before a byte is written; on any error the
partially unpacked target is removed.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from inferplane import errors

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


@dataclass(frozen=True)
class Limits:
    """Caps on what one archive may unpack to."""

    max_total_bytes: int = 8 << 30
    max_members: int = 10_000


def is_archive(path: Path) -> bool:
    """True when the file name has an archive suffix this module unpacks."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack(archive: Path, target: Path, *, limits: Limits | None = None) -> Path:
    """Unpack ``archive`` into ``target`` (created; must not exist) and return ``target``."""
    limits = limits or Limits()
    if target.exists():
        raise errors.ArchiveError(f"{archive}: unpack target {target} already exists")
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            _unpack_zip(archive, target, limits)
        elif name.endswith((".tar", ".tar.gz", ".tgz")):
            _unpack_tar(archive, target, limits)
        else:
            raise errors.ArchiveError(
                f"{archive}: not an archive this tool unpacks ({', '.join(ARCHIVE_SUFFIXES)})"
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _member_path(archive: Path, target: Path, member: str) -> Path:
    """Where ``member`` goes inside ``target``; an ArchiveError when it would land outside."""
    pure = PurePosixPath(member.replace("\\", "/"))
    if pure.is_absolute() or member.startswith("/") or (len(member) > 1 and member[1] == ":"):
        raise errors.ArchiveError(f"{archive}: member '{member}' has an absolute path")
    if ".." in pure.parts:
        raise errors.ArchiveError(f"{archive}: member '{member}' escapes the target directory")
    dest = (target / pure).resolve()
    root = target.resolve()
    if dest != root and root not in dest.parents:
        raise errors.ArchiveError(f"{archive}: member '{member}' escapes the target directory")
    return dest


def _check_totals(archive: Path, count: int, total: int, limits: Limits) -> None:
    if count > limits.max_members:
        raise errors.ArchiveError(
            f"{archive}: {count} members, over the limit of {limits.max_members}"
        )
    if total > limits.max_total_bytes:
        raise errors.ArchiveError(
            f"{archive}: unpacks to {total} bytes, over the limit of {limits.max_total_bytes}"
        )


def _unpack_tar(archive: Path, target: Path, limits: Limits) -> None:
    try:
        tar = tarfile.open(archive)  # noqa: SIM115 - closed below; mode auto-detects compression
    except (tarfile.TarError, OSError) as exc:
        raise errors.ArchiveError(f"{archive}: not a readable tar archive: {exc}") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise errors.ArchiveError(f"{archive}: corrupt tar archive: {exc}") from None
        _check_totals(archive, len(members), sum(m.size for m in members if m.isfile()), limits)
        root = target.resolve()
        for member in members:
            dest = _member_path(archive, target, member.name)
            if member.issym() or member.islnk():
                link = PurePosixPath(member.linkname)
                base = dest.parent if member.issym() else root
                resolved = (base / link).resolve() if not link.is_absolute() else Path(link)
                if link.is_absolute() or (resolved != root and root not in resolved.parents):
                    raise errors.ArchiveError(
                        f"{archive}: link '{member.name}' -> '{member.linkname}' points outside "
                        "the target directory"
                    )
            elif not (member.isfile() or member.isdir()):
                raise errors.ArchiveError(
                    f"{archive}: member '{member.name}' is a device, FIFO or other special file"
                )
        target.mkdir(parents=True)
        try:
            # The "data" filter (PEP 706) repeats the checks above in the standard library.
            tar.extractall(target, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise errors.ArchiveError(f"{archive}: cannot unpack: {exc}") from None


def _unpack_zip(archive: Path, target: Path, limits: Limits) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise errors.ArchiveError(f"{archive}: not a readable zip archive: {exc}") from None
    with zf:
        infos = zf.infolist()
        _check_totals(archive, len(infos), sum(i.file_size for i in infos), limits)
        for info in infos:
            _member_path(archive, target, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise errors.ArchiveError(f"{archive}: member '{info.filename}' is a symbolic link")
        target.mkdir(parents=True)
        written = 0
        for info in infos:
            dest = _member_path(archive, target, info.filename)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, dest.open("wb") as out:
                    # The declared sizes can lie: count what is really written.
                    while block := src.read(1 << 20):
                        written += len(block)
                        if written > limits.max_total_bytes:
                            raise errors.ArchiveError(
                                f"{archive}: unpacks to more than {limits.max_total_bytes} bytes"
                            )
                        out.write(block)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise errors.ArchiveError(
                    f"{archive}: corrupt member '{info.filename}': {exc}"
                ) from None
