# SPDX-License-Identifier: Apache-2.0
"""The artifact store: file, pvc and S3 (a real moto server), atomic publish, races, sources."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests import models

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts import store, uris
from inferplane.artifacts.key import TargetOptions, artifact_key, sha256_file
from inferplane.artifacts.manifest import (
    ArtifactManifest,
    FileEntry,
    SourceRef,
    Verification,
)
from inferplane.devices import ArtifactFormat, DeviceClass

TARGET = TargetOptions(format=ArtifactFormat.ONNX, device_class=DeviceClass.CPU)


def make_artifact(directory: Path, payload: bytes = b"model-bytes", *, key: str = "") -> str:
    """A small but well-formed artifact directory (files + manifest); returns its key."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(payload)
    (directory / "extra").mkdir(exist_ok=True)
    (directory / "extra" / "notes.txt").write_text("hello")
    key = key or artifact_key("0" * 64, TARGET)
    files = [
        FileEntry(path=p, sha256=sha256_file(directory / p), size=(directory / p).stat().st_size)
        for p in ("model.onnx", "extra/notes.txt")
    ]
    ArtifactManifest(
        key=key,
        model="m",
        source=SourceRef(uri="x.onnx", format=ArtifactFormat.ONNX, sha256="0" * 64),
        target=TARGET,
        files=files,
        entrypoint="model.onnx",
        inputs=[TensorSpec.parse("x:-1,4:FP32")],
        outputs=[TensorSpec.parse("y:-1,4:FP32")],
        verification=Verification(verified=True, reference="onnx-source"),
    ).write(directory)
    return key


def test_file_store_publish_lookup_fetch(tmp_path: Path) -> None:
    key = make_artifact(tmp_path / "build")
    s = store.open_store(f"file://{tmp_path / 'store'}")
    assert isinstance(s, store.FileStore)
    assert s.lookup(key) is None
    assert s.publish(key, tmp_path / "build") is True
    manifest = s.lookup(key)
    assert manifest is not None and manifest.key == key
    directory = s.fetch(key, tmp_path / "scratch")
    assert (directory / "extra" / "notes.txt").read_text() == "hello"
    assert s.location(key) == str(tmp_path / "store" / key)
    assert s.publish(key, tmp_path / "build") is False
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []


def test_file_store_refuses_bad_input(tmp_path: Path) -> None:
    key = make_artifact(tmp_path / "build")
    s = store.FileStore(tmp_path / "store")
    with pytest.raises(errors.StoreError, match="is not other"):
        s.publish("other", tmp_path / "build")
    (tmp_path / "build" / "model.onnx").write_bytes(b"short")
    with pytest.raises(errors.StoreError, match="missing or truncated"):
        s.publish(key, tmp_path / "build")
    for bad in ("", "../x", "a/b", ".tmp"):
        with pytest.raises(errors.StoreError, match="invalid artifact key"):
            s.lookup(bad)
    assert not (tmp_path / "store" / key).exists()


def test_file_store_race_leaves_one_artifact(tmp_path: Path) -> None:
    """Eight publishers of one key at once: exactly one wins, the others see it, no debris."""
    builds = []
    for i in range(8):
        make_artifact(tmp_path / f"b{i}", payload=f"model-{i}".encode(), key="k-race")
        builds.append(tmp_path / f"b{i}")
    s = store.FileStore(tmp_path / "store")
    barrier = threading.Barrier(8)

    def publish(directory: Path) -> bool:
        barrier.wait()
        return s.publish("k-race", directory)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(publish, builds))
    assert results.count(True) == 1
    winner = builds[results.index(True)]
    assert (tmp_path / "store" / "k-race" / "model.onnx").read_bytes() == (
        winner / "model.onnx"
    ).read_bytes()
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [".tmp", "k-race"]
    assert list((tmp_path / "store" / ".tmp").iterdir()) == []


def test_pvc_uri_resolves_under_the_mount_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(uris.PVC_ROOT_ENV, str(tmp_path / "mnt"))
    s = store.open_store("pvc://models/artifacts")
    assert isinstance(s, store.FileStore)
    key = make_artifact(tmp_path / "build")
    assert s.publish(key, tmp_path / "build")
    assert (tmp_path / "mnt" / "models" / "artifacts" / key / "inferplane.json").is_file()
    with pytest.raises(errors.StoreError, match="inside the claim"):
        uris.pvc_path("pvc://models/../other")
    with pytest.raises(errors.StoreError, match="claim name"):
        uris.pvc_path("pvc:///path")


@pytest.mark.parametrize("uri", ["https://example.invalid/store", "ftp://host/x"])
def test_open_store_rejects_unwritable_schemes(uri: str) -> None:
    with pytest.raises(errors.StoreError, match=uri.split(":")[0]):
        store.open_store(uri)


def test_s3_round_trip(tmp_path: Path, bucket: str) -> None:
    key = make_artifact(tmp_path / "build")
    s = store.open_store(f"s3://{bucket}/team/models")
    assert isinstance(s, store.S3Store)
    assert s.lookup(key) is None
    assert s.publish(key, tmp_path / "build") is True
    assert s.publish(key, tmp_path / "build") is False
    manifest = s.lookup(key)
    assert manifest is not None
    upload = manifest.entrypoint.split("/")[0]
    assert manifest.entrypoint == f"{upload}/model.onnx"
    directory = s.fetch(key, tmp_path / "cache")
    assert (directory / manifest.entrypoint).read_bytes() == b"model-bytes"
    assert (directory / upload / "extra" / "notes.txt").read_text() == "hello"
    assert ArtifactManifest.read(directory).key == key
    assert s.fetch(key, tmp_path / "cache") == directory, "a verified download is reused"
    names = {o["Key"] for o in store.s3_client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert names == {
        f"team/models/{key}/inferplane.json",
        f"team/models/{key}/{upload}/model.onnx",
        f"team/models/{key}/{upload}/extra/notes.txt",
    }


def test_s3_race_leaves_one_complete_artifact(tmp_path: Path, bucket: str) -> None:
    """Conditional put (If-None-Match: *) on the manifest: one winner, the losers clean up."""
    builds = []
    for i in range(4):
        make_artifact(tmp_path / f"b{i}", payload=f"model-{i}".encode(), key="k-race")
        builds.append(tmp_path / f"b{i}")
    stores = [store.S3Store(bucket, "p", f"s3://{bucket}/p") for _ in builds]
    barrier = threading.Barrier(len(builds))

    def publish(i: int) -> bool:
        barrier.wait()
        # Skip the early lookup so all four really race on the conditional put.
        stores[i].lookup = lambda key: None  # type: ignore[method-assign]
        return stores[i].publish("k-race", builds[i])

    with ThreadPoolExecutor(len(builds)) as pool:
        results = list(pool.map(publish, range(len(builds))))
    assert results.count(True) == 1
    reader = store.S3Store(bucket, "p", f"s3://{bucket}/p")
    directory = reader.fetch("k-race", tmp_path / "cache")
    manifest = ArtifactManifest.read(directory)
    winner = builds[results.index(True)]
    assert (directory / manifest.entrypoint).read_bytes() == (winner / "model.onnx").read_bytes()
    names = [o["Key"] for o in store.s3_client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(names) == 3, names


def test_s3_errors_are_store_errors(tmp_path: Path, bucket: str) -> None:
    key = make_artifact(tmp_path / "build")
    with pytest.raises(errors.StoreError, match="no-such-bucket-here"):
        store.open_store("s3://no-such-bucket-here/x").publish(key, tmp_path / "build")
    with pytest.raises(errors.StoreError, match="no such artifact"):
        store.open_store(f"s3://{bucket}").fetch(key, tmp_path / "cache")
    with pytest.raises(errors.StoreError, match="needs a bucket"):
        store.open_store("s3:///prefix")


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_http_source_with_sha256(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, root = http_root
    model = models.mlp_onnx(root / "mlp.onnx")
    digest = sha256_file(model)
    got = store.fetch_source(f"{url}/mlp.onnx", tmp_path / "dl", expected_sha256=digest)
    assert got.read_bytes() == model.read_bytes()
    with pytest.raises(errors.StoreError, match="expected " + "0" * 64):
        store.fetch_source(f"{url}/mlp.onnx", tmp_path / "dl", expected_sha256="0" * 64)
    with pytest.raises(errors.StoreError, match="HTTP 404"):
        store.fetch_source(f"{url}/missing.onnx", tmp_path / "dl")


def test_s3_and_local_sources(tmp_path: Path, bucket: str) -> None:
    model = models.mlp_onnx(tmp_path / "mlp.onnx")
    store.s3_client().upload_file(str(model), bucket, "src/mlp.onnx")
    got = store.fetch_source(f"s3://{bucket}/src/mlp.onnx", tmp_path / "dl")
    assert got.read_bytes() == model.read_bytes()
    assert store.fetch_source("mlp.onnx", tmp_path, base=tmp_path) == model
    assert store.fetch_source(f"file://{model}", tmp_path) == model
    with pytest.raises(errors.StoreError, match="no such file"):
        store.fetch_source("file://nope.onnx", tmp_path, base=tmp_path)
    with pytest.raises(errors.StoreError, match="S3 request failed"):
        store.fetch_source(f"s3://{bucket}/src/missing.onnx", tmp_path / "dl")


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_two_converter_processes_race(
    tmp_path: Path, bucket: str, s3_env: dict[str, str], kind: str
) -> None:
    """Two real ``inferplane convert`` processes, one key, one store: one complete artifact."""
    model = models.mlp_onnx(tmp_path / "mlp.onnx")
    uri = f"s3://{bucket}/race" if kind == "s3" else str(tmp_path / "store")
    argv = [
        sys.executable, "-m", "inferplane", "convert", "--source", str(model),
        "--format", "onnx", "--to", "onnx", "--store", uri, "--json",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            argv, env=s3_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    keys = {ArtifactManifest.model_validate_json(out).key for out, _ in outs}
    assert len(keys) == 1
    key = keys.pop()
    if kind == "s3":
        names = [o["Key"] for o in store.s3_client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert sorted(n.rsplit("/", 1)[-1] for n in names) == ["inferplane.json", "model.onnx"]
    else:
        assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [".tmp", key]
        assert list((tmp_path / "store" / ".tmp").iterdir()) == []
    directory = store.open_store(uri).fetch(key, tmp_path / "cache")
    manifest = ArtifactManifest.read(directory)
    assert sha256_file(directory / manifest.entrypoint) == manifest.files[0].sha256
