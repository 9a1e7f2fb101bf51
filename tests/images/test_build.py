# SPDX-License-Identifier: Apache-2.0
"""The image tooling's pure parts: requirement sets, content keys, command lines, the runtime
spec and the mirror, without building anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.images import base, build, container

ROOT = Path(__file__).resolve().parents[2]


def test_requirements_follow_extras_and_self_references(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\n'
        '[project]\nname = "inferplane"\ndependencies = ["click>=8"]\n'
        "[project.optional-dependencies]\n"
        'a = ["numpy>=1", "click>=8"]\nb = ["inferplane[a]", "kopf"]\n'
    )
    assert build.requirements(["b"], pyproject) == [
        "click>=8",
        "setuptools>=77",
        "kopf",
        "numpy>=1",
    ]
    with pytest.raises(build.tools.ToolError, match="no extra 'c'"):
        build.requirements(["c"], pyproject)


def test_operator_requirements_hold_no_model_runtime() -> None:
    wanted = " ".join(build.requirements(build.IMAGES["operator"].extras()))
    for runtime in ("numpy", "onnx", "mindspore"):
        assert runtime not in wanted
    assert "kopf" in wanted and "boto3" in wanted


def copy_of_checkout(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "operator", root / "operator", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "runtime-images", root / "runtime-images")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, root / name)
    return root


def test_key_follows_the_content(tmp_path: Path) -> None:
    root = copy_of_checkout(tmp_path)
    cpu = build.IMAGES["cpu"]
    first = build.image_key(cpu, "base1", root)
    assert build.image_key(cpu, "base1", root) == first
    assert build.image_key(cpu, "base2", root) != first
    assert build.image_key(build.IMAGES["operator"], "base1", root) != first
    (root / "operator" / "inferplane" / "__pycache__").mkdir(exist_ok=True)
    (root / "operator" / "inferplane" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (root / "docs").mkdir()
    (root / "docs" / "x.md").write_text("not in the image")
    assert build.image_key(cpu, "base1", root) == first
    keys = {first}
    for changed in ("operator/inferplane/cli.py", "runtime-images/cpu/Dockerfile",
                    "runtime-images/constraints.txt", "pyproject.toml", "setup.py"):  # fmt: skip
        path = root / changed
        path.write_text(path.read_text() + "\n# changed\n")
        keys.add(build.image_key(cpu, "base1", root))
    assert len(keys) == 6, "each change makes a new key"


def test_bud_command_builds_offline_on_the_local_base() -> None:
    command = build.bud_command(
        build.IMAGES["mindspore"],
        "localhost/inferplane/base:k",
        ["a:1"],
        builder_image="localhost/inferplane/builder:b",
    )
    assert command[:3] == ["nice", "-n", "10"]
    assert "--layers" in command and "--pull=never" in command
    joined = " ".join(command)
    for arg in (
        "BASE=localhost/inferplane/base:k",
        "BUILDER=localhost/inferplane/builder:b",
        "PIP_NO_INDEX=1",
        "PIP_FIND_LINKS=/wheels",
    ):
        assert f"--build-arg {arg}" in joined
    assert "--build-arg DEVICE=cpu" in joined
    assert f"{build.wheels_dir()}:/wheels:ro" in command
    assert command[-1] == str(build.ROOT)


def test_references_follow_registry_tag_and_variant() -> None:
    assert build.IMAGES["cpu"].reference() == "ghcr.io/inferplane/cpu:0.1.0"
    assert build.IMAGES["mindspore"].reference("reg.example/ml/", "2.0") == (
        "reg.example/ml/mindspore:2.0-cpu"
    )


def test_not_built_images_say_why() -> None:
    assert set(build.NOT_BUILT) == {"nvidia", "ascend", "edge"}
    with pytest.raises(build.tools.ToolError, match="nvidia is not built on this machine"):
        build.ensure(["nvidia"])
    with pytest.raises(build.tools.ToolError, match="no image 'gpu'"):
        build.ensure(["gpu"])


def test_runtime_spec_is_locked_down(tmp_path: Path) -> None:
    config = {
        "Entrypoint": ["inferplane"],
        "Cmd": ["operator"],
        "User": "65532:65532",
        "Env": ["PATH=/opt/inferplane/bin:/usr/bin"],
        "WorkingDir": "/tmp",
    }
    spec = container.spec(
        tmp_path, config, None, {"/model": tmp_path}, {"A": "1"}, writable={"/store": tmp_path}
    )
    assert spec["root"] == {"path": str(tmp_path), "readonly": True}
    process = spec["process"]
    assert isinstance(process, dict)
    assert process["args"] == ["inferplane", "operator"]
    assert process["user"] == {"uid": 65532, "gid": 65532}
    assert process["noNewPrivileges"] is True
    assert all(caps == [] for caps in process["capabilities"].values())
    assert "A=1" in process["env"]
    linux = spec["linux"]
    assert isinstance(linux, dict)
    assert {"type": "network"} not in linux["namespaces"]  # the host's network
    binds = {m["destination"]: m["options"] for m in spec["mounts"] if m["type"] == "bind"}  # type: ignore[attr-defined]
    assert binds == {"/model": ["rbind", "ro"], "/store": ["rbind", "rw"]}
    with pytest.raises(build.tools.ToolError, match="not numeric"):
        container.spec(tmp_path, {**config, "User": "inferplane"}, None, {}, {})


def test_mirror_is_the_one_apt_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
    )
    monkeypatch.setattr(base, "SOURCES", (sources,))
    assert base.mirror() == "http://mirror.example/debian"
    listing = tmp_path / "sources.list"
    listing.write_text("deb [arch=amd64] http://other.example/debian/ bookworm main\n")
    monkeypatch.setattr(base, "SOURCES", (tmp_path / "missing", listing))
    assert base.mirror() == "http://other.example/debian"
    assert base.key("a", b"x") != base.key("b", b"x") != base.key("a", b"y")
