# SPDX-License-Identifier: Apache-2.0
"""The build cache and the process bookkeeping, with a tiny real Go module and real processes."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from tests.cluster import build, processes, versions
from tests.loopback import free_port


@pytest.fixture
def hello_module(tmp_path: Path) -> Path:
    module = tmp_path / "hello"
    module.mkdir()
    (module / "go.mod").write_text("module example.test/hello\n\ngo 1.26\n")
    (module / "main.go").write_text(
        'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from go") }\n'
    )
    return module


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_a_component_is_built_once_into_its_versioned_folder(
    hello_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERPLANE_CACHE", str(tmp_path / "cache"))
    component = versions.Component(
        name="hello",
        version="v0.0.1",
        binaries=("hello",),
        packages=(".",),
        module_dir=hello_module,
    )
    first = build.ensure_built((component,))
    binary = tmp_path / "cache" / "bin" / "hello-v0.0.1" / "hello"
    assert first["hello-v0.0.1"] > 0
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    assert out == "hello from go\n"
    assert not list((tmp_path / "cache" / "bin").glob("*.tmp-*"))
    assert build.ensure_built((component,)) == {"hello-v0.0.1": 0.0}
    assert "built hello-v0.0.1 in" in (tmp_path / "cache" / "bin" / "build.log").read_text()


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_a_failed_build_names_its_log_and_leaves_no_folder(
    hello_module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERPLANE_CACHE", str(tmp_path / "cache"))
    (hello_module / "main.go").write_text("package main\n\nfunc main() { undefined() }\n")
    component = versions.Component(
        name="broken", version="v1", binaries=("broken",), packages=(".",), module_dir=hello_module
    )
    with pytest.raises(build.BuildError, match=r"building broken v1 failed: see .*build\.log"):
        build.ensure_built((component,))
    assert sorted(p.name for p in (tmp_path / "cache" / "bin").iterdir()) == [
        ".build.lock",
        "build.log",
    ]
    assert "undefined" in (tmp_path / "cache" / "bin" / "build.log").read_text()


def test_stop_ends_a_process_it_started_and_only_that_binary(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    pid = processes.start([sleep, "60"], log=tmp_path / "sleep.log", tie_to_parent=True)
    assert processes.is_ours(pid, sleep)
    assert not processes.is_ours(pid, "/bin/somethingelse")
    processes.stop(pid, "/bin/somethingelse")
    assert processes.is_ours(pid, sleep), "stop must not touch a PID that runs another binary"
    started = time.monotonic()
    processes.stop(pid, sleep)
    assert not processes.is_ours(pid, sleep)
    assert time.monotonic() - started < 5


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    assert all(1024 < p < 65536 for p in ports)
