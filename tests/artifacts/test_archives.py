# SPDX-License-Identifier: Apache-2.0
"""Safe unpacking: good archives unpack; every attack is refused with nothing left behind."""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from inferplane import errors
from inferplane.artifacts import archives


def _tar(path: Path, build: Callable[[tarfile.TarFile], None], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        build(tar)
    return path


def _add_file(tar: tarfile.TarFile, name: str, data: bytes = b"data") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


@pytest.mark.parametrize(("suffix", "mode"), [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz")])
def test_tar_unpacks_files_dirs_and_inner_links(tmp_path: Path, suffix: str, mode: str) -> None:
    def build(tar: tarfile.TarFile) -> None:
        _add_file(tar, "model/lenet.ckpt", b"weights")
        _add_file(tar, "network.py", b"print(1)")
        _add_link(tar, "model/alias.ckpt", "lenet.ckpt", tarfile.SYMTYPE)

    archive = _tar(tmp_path / f"src{suffix}", build, mode)
    assert archives.is_archive(archive)
    out = archives.unpack(archive, tmp_path / "out")
    assert (out / "model" / "lenet.ckpt").read_bytes() == b"weights"
    assert (out / "network.py").read_bytes() == b"print(1)"
    assert (out / "model" / "alias.ckpt").read_bytes() == b"weights"


def test_zip_unpacks(tmp_path: Path) -> None:
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/b/model.onnx", b"onnx-bytes")
        zf.writestr("a/empty/", b"")
    out = archives.unpack(archive, tmp_path / "out")
    assert (out / "a" / "b" / "model.onnx").read_bytes() == b"onnx-bytes"
    assert (out / "a" / "empty").is_dir()


TAR_ATTACKS: dict[str, Callable[[tarfile.TarFile], None]] = {
    "absolute path": lambda t: _add_file(t, "/etc/evil"),
    "parent traversal": lambda t: _add_file(t, "ok/../../evil"),
    "symlink out (relative)": lambda t: _add_link(t, "link", "../../outside", tarfile.SYMTYPE),
    "symlink out (absolute)": lambda t: _add_link(t, "link", "/etc/passwd", tarfile.SYMTYPE),
    "hardlink out": lambda t: _add_link(t, "hard", "../outside", tarfile.LNKTYPE),
    "write through a symlinked dir": lambda t: (
        _add_link(t, "dir", "..", tarfile.SYMTYPE),
        _add_file(t, "dir/evil"),
    ),
    "character device": lambda t: _add_link(t, "dev", "", tarfile.CHRTYPE),
    "fifo": lambda t: _add_link(t, "fifo", "", tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("attack", TAR_ATTACKS)
def test_tar_attacks_are_refused(tmp_path: Path, attack: str) -> None:
    archive = _tar(tmp_path / "evil.tar", TAR_ATTACKS[attack])
    target = tmp_path / "sandbox" / "out"
    target.parent.mkdir()
    with pytest.raises(errors.ArchiveError) as info:
        archives.unpack(archive, target)
    assert str(archive) in str(info.value)
    assert not target.exists(), "nothing may be left half-unpacked"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar", "sandbox"]
    assert list(target.parent.iterdir()) == []


ZIP_ATTACKS: dict[str, str] = {
    "absolute path": "/tmp/evil",
    "parent traversal": "../evil",
    "backslash traversal": "..\\evil",
    "drive letter": "C:/evil",
}


@pytest.mark.parametrize("attack", ZIP_ATTACKS)
def test_zip_attacks_are_refused(tmp_path: Path, attack: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(ZIP_ATTACKS[attack]), b"evil")
    with pytest.raises(errors.ArchiveError, match="evil"):
        archives.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16  # S_IFLNK | 0777, as Info-ZIP stores links
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(errors.ArchiveError, match="symbolic link"):
        archives.unpack(archive, tmp_path / "out")


def test_size_limit(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "big.tar.gz", lambda t: _add_file(t, "zeros", bytes(1 << 20)), "w:gz")
    assert archive.stat().st_size < 10_000, "a compression bomb in miniature"
    with pytest.raises(errors.ArchiveError, match="over the limit"):
        archives.unpack(archive, tmp_path / "out", limits=archives.Limits(max_total_bytes=1 << 19))
    assert not (tmp_path / "out").exists()


def test_zip_size_is_counted_while_writing(tmp_path: Path) -> None:
    """A zip whose directory under-declares a member's size is stopped by the bytes written."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", bytes(1 << 20))
    limits = archives.Limits(max_total_bytes=1 << 20)
    archives.unpack(archive, tmp_path / "ok", limits=limits)
    with pytest.raises(errors.ArchiveError, match=r"over the limit|more than"):
        archives.unpack(archive, tmp_path / "out", limits=archives.Limits(max_total_bytes=1000))
    assert not (tmp_path / "out").exists()


def test_member_count_limit(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        for i in range(20):
            _add_file(tar, f"f{i}")

    archive = _tar(tmp_path / "many.tar", build)
    with pytest.raises(errors.ArchiveError, match="20 members"):
        archives.unpack(archive, tmp_path / "out", limits=archives.Limits(max_members=10))


@pytest.mark.parametrize("name", ["broken.tar.gz", "broken.zip", "broken.tar"])
def test_corrupt_archives(tmp_path: Path, name: str) -> None:
    archive = tmp_path / name
    archive.write_bytes(b"\x1f\x8b this is not an archive" * 20)
    with pytest.raises(errors.ArchiveError, match=re.escape(name)):
        archives.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_tar(tmp_path: Path) -> None:
    whole = _tar(
        tmp_path / "whole.tar.gz", lambda t: _add_file(t, "f", bytes(range(256)) * 400), "w:gz"
    )
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(errors.ArchiveError, match=re.escape("cut.tar.gz")):
        archives.unpack(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()
