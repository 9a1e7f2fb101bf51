# SPDX-License-Identifier: Apache-2.0
"""The content-addressed artifact store, and fetching model sources.

One small interface, ``Store`` (lookup · fetch · publish · location), with a file implementation
(plain paths, ``file://``, and ``pvc://claim/path`` — a PersistentVolumeClaim mounted at
``$INFERPLANE_PVC_ROOT/<claim>``) and an S3 one (``s3://bucket/prefix``). ``open_store(uri)``
picks one. Keys come from ``key.artifact_key``; an artifact is published atomically, so a
reader sees a complete artifact or none, and two converters racing on one key leave exactly one:

- file: the artifact is copied into a private temporary directory in the store, then renamed
  to its key; ``rename`` of a directory onto an existing non-empty one fails, so the loser
  removes its copy and reports that the key was already there.
- S3: the files go under ``<key>/<upload id>/``; the manifest ``<key>/inferplane.json``, whose
  file paths name that upload directory, is written last with ``If-None-Match: *`` (a
  conditional put), which exactly one writer wins; the loser deletes its upload.

Sources (``fetch_source``) may also be ``http(s)://`` URLs, downloaded with an optional sha256.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from inferplane import errors
from inferplane.artifacts.key import sha256_file
from inferplane.artifacts.manifest import MANIFEST_NAME, ArtifactManifest
from inferplane.artifacts.uris import local_path

S3_ENDPOINT_ENVS = ("INFERPLANE_S3_ENDPOINT", "AWS_ENDPOINT_URL")
DOWNLOAD_TIMEOUT_S = 60.0


class Store(abc.ABC):
    """Where converted artifacts live, one directory-like entry per key."""

    uri: str

    @abc.abstractmethod
    def lookup(self, key: str) -> ArtifactManifest | None:
        """The manifest of the complete artifact under ``key``, or None when there is none."""

    @abc.abstractmethod
    def fetch(self, key: str, scratch: Path) -> Path:
        """A local directory holding the artifact (downloaded under ``scratch`` if remote)."""

    @abc.abstractmethod
    def publish(self, key: str, directory: Path) -> bool:
        """Publish ``directory`` (files + ``inferplane.json``) under ``key``, atomically.

        Returns False when a complete artifact was already there (a racing converter won); the
        store is left unchanged then.
        """

    @abc.abstractmethod
    def location(self, key: str) -> str:
        """The URI of the artifact under ``key`` (for status, logs and ``--json``)."""


def _check_key(key: str) -> str:
    if not key or "/" in key or key.startswith(".") or key != key.strip():
        raise errors.StoreError(f"invalid artifact key '{key}'")
    return key


def _manifest_files_ok(directory: Path, manifest: ArtifactManifest) -> None:
    """Every file the manifest lists is present with its size (the digest is checked on fetch)."""
    for entry in manifest.files:
        path = directory / entry.path
        if not path.is_file() or path.stat().st_size != entry.size:
            raise errors.StoreError(f"{directory}: file '{entry.path}' is missing or truncated")


def _publishable(key: str, directory: Path) -> ArtifactManifest:
    """The manifest of a complete artifact directory built for ``key``, or a StoreError."""
    _check_key(key)
    manifest = ArtifactManifest.read(directory)
    if manifest.key != key:
        raise errors.StoreError(f"{directory}: manifest key {manifest.key} is not {key}")
    _manifest_files_ok(directory, manifest)
    return manifest


class FileStore(Store):
    """A directory: ``<root>/<key>/`` per artifact, ``<root>/.tmp/`` for publishes in flight."""

    def __init__(self, root: Path, uri: str | None = None) -> None:
        self.root = root
        self.uri = uri or str(root)

    def lookup(self, key: str) -> ArtifactManifest | None:
        directory = self.root / _check_key(key)
        if not (directory / MANIFEST_NAME).is_file():
            return None
        return ArtifactManifest.read(directory)

    def fetch(self, key: str, scratch: Path) -> Path:
        directory = self.root / _check_key(key)
        manifest = ArtifactManifest.read(directory)
        _manifest_files_ok(directory, manifest)
        return directory

    def publish(self, key: str, directory: Path) -> bool:
        _publishable(key, directory)
        final = self.root / key
        if (final / MANIFEST_NAME).is_file():
            return False
        tmp_root = self.root / ".tmp"
        try:
            tmp_root.mkdir(parents=True, exist_ok=True)
            tmp = tmp_root / f"{key}.{uuid.uuid4().hex[:12]}"
            shutil.copytree(directory, tmp)
        except OSError as exc:
            raise errors.StoreError(f"cannot write to store {self.uri}: {exc}") from None
        try:
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if (final / MANIFEST_NAME).is_file():
                return False
            raise errors.StoreError(
                f"cannot publish {key} to {self.uri}: {final} exists but is not an artifact"
            ) from None
        return True

    def location(self, key: str) -> str:
        return str(self.root / key)


class S3Store(Store):
    """``s3://bucket/prefix`` through the S3 API; see the module docstring for the layout."""

    def __init__(self, bucket: str, prefix: str, uri: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = uri
        self.client = client if client is not None else s3_client()

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def lookup(self, key: str) -> ArtifactManifest | None:
        name = self._key(_check_key(key), MANIFEST_NAME)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        except Exception as exc:
            if _s3_code(exc) in {"NoSuchKey", "404"}:
                return None
            raise _s3_error(exc, f"s3://{self.bucket}/{name}") from None
        try:
            return ArtifactManifest.model_validate_json(body)
        except ValueError as exc:
            raise errors.StoreError(f"s3://{self.bucket}/{name}: invalid manifest: {exc}") from None

    def fetch(self, key: str, scratch: Path) -> Path:
        manifest = self.lookup(key)
        if manifest is None:
            raise errors.StoreError(f"{self.location(key)}: no such artifact")
        dest = scratch / key
        if dest.is_dir() and (dest / MANIFEST_NAME).is_file():
            with contextlib.suppress(errors.StoreError):
                if _digests_ok(dest, ArtifactManifest.read(dest)):
                    return dest
        shutil.rmtree(dest, ignore_errors=True)
        partial = scratch / f".{key}.{uuid.uuid4().hex[:8]}"
        partial.mkdir(parents=True)
        try:
            for entry in manifest.files:
                target = partial / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                name = self._key(key, entry.path)
                try:
                    self.client.download_file(self.bucket, name, str(target))
                except Exception as exc:
                    raise _s3_error(exc, f"s3://{self.bucket}/{name}") from None
            if not _digests_ok(partial, manifest):
                raise errors.StoreError(f"{self.location(key)}: a file does not match its sha256")
            manifest.write(partial)
            os.rename(partial, dest)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return dest

    def publish(self, key: str, directory: Path) -> bool:
        manifest = _publishable(key, directory)
        if self.lookup(key) is not None:
            return False
        upload = uuid.uuid4().hex[:12]
        names = []
        try:
            for entry in manifest.files:
                name = self._key(key, upload, entry.path)
                self.client.upload_file(str(directory / entry.path), self.bucket, name)
                names.append(name)
            published = manifest.model_copy(
                update={
                    "files": [
                        e.model_copy(update={"path": f"{upload}/{e.path}"}) for e in manifest.files
                    ],
                    "entrypoint": f"{upload}/{manifest.entrypoint}",
                }
            )
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key, MANIFEST_NAME),
                Body=published.model_dump_json(indent=2).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except Exception as exc:
            self._delete(names)
            if _s3_code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            if isinstance(exc, errors.InferplaneError):
                raise
            raise _s3_error(exc, self.location(key)) from None
        return True

    def _delete(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=name)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"


def _digests_ok(directory: Path, manifest: ArtifactManifest) -> bool:
    for entry in manifest.files:
        path = directory / entry.path
        if not path.is_file() or sha256_file(path) != entry.sha256:
            return False
    return True


def s3_client() -> Any:
    """A boto3 S3 client; endpoint from INFERPLANE_S3_ENDPOINT or AWS_ENDPOINT_URL, credentials
    and region from the standard AWS environment (region defaults to us-east-1)."""
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is a core dependency
        raise errors.StoreError("s3:// needs boto3 (pip install boto3)") from exc
    endpoint = next((os.environ[e] for e in S3_ENDPOINT_ENVS if os.environ.get(e)), None)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


def _s3_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _s3_error(exc: BaseException, where: str) -> errors.StoreError:
    code = _s3_code(exc)
    detail = f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"
    return errors.StoreError(f"{where}: S3 request failed ({detail})")


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(uri)
    if not parsed.netloc:
        raise errors.StoreError(f"'{uri}': an S3 URI needs a bucket (s3://bucket/prefix)")
    return parsed.netloc, parsed.path.lstrip("/")


def open_store(uri: str) -> Store:
    """The store for ``uri``: a path, ``file://``, ``pvc://claim/path`` or ``s3://bucket/prefix``."""
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme == "s3":
        bucket, prefix = _split_s3(uri)
        return S3Store(bucket, prefix, uri)
    if scheme in {"http", "https"}:
        raise errors.StoreError(
            f"'{uri}': http(s) is for sources only; a store must be a path, file://, pvc:// or s3://"
        )
    path = local_path(uri)
    if path is None:
        raise errors.StoreError(f"'{uri}': unknown store scheme '{scheme}'")
    return FileStore(path, uri)


def fetch_source(
    uri: str,
    scratch: Path,
    *,
    expected_sha256: str | None = None,
    base: Path | None = None,
) -> Path:
    """A local file holding the source named by ``uri``, its sha256 checked when one is given.

    Local paths are used in place; s3:// and http(s):// are downloaded into ``scratch``.
    """
    scheme = urllib.parse.urlparse(uri).scheme
    path = local_path(uri, base=base)
    if path is not None:
        if not path.exists():
            raise errors.StoreError(f"source {uri}: no such file ({path})")
    else:
        scratch.mkdir(parents=True, exist_ok=True)
        name = Path(urllib.parse.urlparse(uri).path).name or "source"
        path = scratch / f"{uuid.uuid4().hex[:8]}-{name}"
        if scheme == "s3":
            bucket, key = _split_s3(uri)
            try:
                s3_client().download_file(bucket, key, str(path))
            except Exception as exc:
                raise _s3_error(exc, uri) from None
        elif scheme in {"http", "https"}:
            _download(uri, path)
        else:
            raise errors.StoreError(f"source {uri}: unknown scheme '{scheme}'")
    if expected_sha256 and path.is_file():
        actual = sha256_file(path)
        if actual != expected_sha256.lower():
            raise errors.StoreError(
                f"source {uri}: sha256 is {actual}, expected {expected_sha256.lower()}"
            )
    return path


def _download(url: str, dest: Path) -> None:
    try:
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
            dest.open("wb") as out,
        ):
            while block := response.read(1 << 20):
                out.write(block)
    except urllib.error.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise errors.StoreError(f"source {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        dest.unlink(missing_ok=True)
        raise errors.StoreError(f"source {url}: download failed: {exc}") from None
