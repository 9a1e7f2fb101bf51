# SPDX-License-Identifier: Apache-2.0
"""One conversion: source → store lookup → convert → verify → accuracy → publish.

``convert(Request)`` is the library entry (local mode uses it); ``main(**options)`` is what
``inferplane convert`` runs when its standard-library fast path (``convert.hit``) cannot
answer from the store. A store hit here too returns before MindSpore is imported. Nothing is
written to the store until the artifact is complete and verified, so a failure at any step leaves
the store as it was.

The key is ``artifact_key(source sha256, TargetOptions)`` — the same function the operator's
planner uses (``planner.assigned_key``). The options name the network's code and the converting tool
too: locally by a digest of the network module's files and this machine's tool versions
(``convert.identity``), in a cluster by the images the operator passes (``--code-id``,
``--tool-id``). For an archive source the digest is the archive's, network code included.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts import archives, store
from inferplane.artifacts.key import MANIFEST_NAME, TargetOptions, artifact_key, sha256_file
from inferplane.artifacts.manifest import (
    Accuracy,
    ArtifactManifest,
    FileEntry,
    SourceRef,
    ToolInfo,
    Verification,
)
from inferplane.convert import progress, termination, tools
from inferplane.convert.target import Conversion, cli_fields

if TYPE_CHECKING:
    from inferplane.convert.export import Runner
from inferplane.devices import ArtifactFormat

F = ArtifactFormat

SOURCE_SUFFIX: dict[ArtifactFormat, str] = {
    F.MINDSPORE_CHECKPOINT: ".ckpt",
    F.MINDIR: ".mindir",
    F.ONNX: ".onnx",
    F.AIR: ".air",
}
ENTRYPOINT: dict[ArtifactFormat, str] = {
    F.ONNX: "model.onnx",
    F.MINDIR: "model.mindir",
    F.OM: "model.om",
    F.TENSORRT: "model.plan",
    F.MS: "model.ms",
}
RUNTIME_ABSENT: dict[ArtifactFormat, str] = {
    F.OM: "the Ascend ACL runtime and an Ascend 310 device",
    F.TENSORRT: "the TensorRT runtime and the GPU the engine was built for",
    F.MS: "the MindSpore Lite runtime",
}
DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True, kw_only=True)
class Request(Conversion):
    """Everything one conversion needs; paths and URIs as the user wrote them."""

    source: str
    store: str
    inputs: tuple[TensorSpec, ...] = ()
    name: str | None = None
    source_sha256: str | None = None
    samples: int = 8
    sample_inputs: str | None = None
    atol: float | None = None
    rtol: float | None = None
    validation: str | None = None
    max_accuracy_drop: float = 0.01
    base: Path | None = None
    """Directory that relative paths and ``file://`` URIs resolve against (default: the cwd)."""
    code_path: Path | None = None
    """Directory added to ``sys.path`` to import the network (besides PYTHONPATH)."""


@dataclass
class Result:
    manifest: ArtifactManifest
    directory: Path | None
    """A local directory holding the artifact (in the store, or a cached download of it);
    None when the caller did not ask for it (``fetch=False``)."""
    location: str
    cached: bool
    timings: dict[str, float] = field(default_factory=dict)


def default_cache() -> Path:
    return Path(os.environ.get("INFERPLANE_CACHE", Path.home() / ".cache" / "inferplane"))


FETCHED = "fetched.json"
"""The fetch stage's record in the source directory (the convert stage mounts it read-only)."""
CLAIMS = "claims.json"
"""The convert stage's report, beside (not in) the directory of the artifact's files."""


class Fetched(BaseModel):
    """What the fetch stage (inferplane's code only) brought into the source directory; paths
    relative to it. The digest is the fetch stage's own: the publisher records it, never a
    digest from the stage that runs the network's code."""

    model_config = ConfigDict(extra="forbid")

    sha256: str
    model: str
    """The model file (in an archive: the one file of the source format)."""
    code: str | None = None
    """A directory of code that came with the source (an unpacked archive)."""
    validation: str | None = None
    samples: str | None = None


class Claims(BaseModel):
    """What the convert stage says of the artifact it built: the publisher takes the signature,
    tools and parity numbers from it (they describe only this artifact) and computes the files'
    digests, the key and the source's digest itself."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tools: list[ToolInfo] = Field(default_factory=list)
    verification: Verification
    accuracy: Accuracy | None = None


def _bring(
    uri: str, req: Request, directory: Path, *, copy: bool, sha256: str | None = None
) -> Path:
    """A local file for ``uri`` under ``directory`` (a local path is used in place unless
    ``copy``: the convert stage sees only the source directory)."""
    path = store.fetch_source(uri, directory / "downloads", expected_sha256=sha256, base=req.base)
    if path.is_dir():
        raise errors.SpecError(f"{uri}: is a directory; name the file")
    if copy and directory not in path.parents:
        (directory / "downloads").mkdir(parents=True, exist_ok=True)
        kept = directory / "downloads" / path.name
        shutil.copyfile(path, kept)
        return kept
    return path


def fetch_source(req: Request, directory: Path, *, copy: bool = False) -> Fetched:
    """Stage 1, inferplane's code only (in a Job: with the source's read credentials): the
    source (unpacked when it is an archive), the validation set and the sample inputs."""
    directory.mkdir(parents=True, exist_ok=True)
    fetched = _bring(req.source, req, directory, copy=copy, sha256=req.source_sha256)
    # fetch_source has checked an expected digest already: no second read of the file.
    digest = req.source_sha256.lower() if req.source_sha256 else sha256_file(fetched)
    model, code = fetched, None
    if archives.is_archive(fetched):
        unpacked = archives.unpack(fetched, directory / "source")
        suffix = SOURCE_SUFFIX[req.source_format]
        found = sorted(p for p in unpacked.rglob(f"*{suffix}") if p.is_file())
        if len(found) != 1:
            raise errors.SpecError(
                f"source {req.source}: the archive must hold exactly one {suffix} file, "
                f"found {len(found)}"
            )
        model, code = found[0], unpacked

    def relative(path: Path | None) -> str | None:
        """Inside ``directory``: relative to it (the stages mount it elsewhere); else as is."""
        if path is None:
            return None
        return str(path.relative_to(directory) if directory in path.parents else path)

    return Fetched(
        sha256=digest,
        model=str(relative(model)),
        code=relative(code),
        validation=relative(
            _bring(req.validation, req, directory, copy=copy) if req.validation else None
        ),
        samples=relative(
            _bring(req.sample_inputs, req, directory, copy=copy) if req.sample_inputs else None
        ),
    )


def _code_dir(fetched: Fetched, directory: Path, req: Request) -> Path | None:
    return directory / fetched.code if fetched.code else req.code_path


def _outputs_from(reference: Runner, inputs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """Output signature by running the reference once at batch 1 (batch dim -1 if dynamic)."""
    from inferplane.convert import verify

    results = reference(verify.random_rows(inputs, 1))
    dynamic = all(s.dynamic_batch for s in inputs)
    names = ["output"] if len(results) == 1 else [f"output{i}" for i in range(len(results))]
    return [
        TensorSpec(
            name=name,
            datatype=verify.datatype_of(out.dtype),
            shape=[-1 if dynamic and i == 0 else d for i, d in enumerate(out.shape)] or [1],
        )
        for name, out in zip(names, results, strict=True)
    ]


@dataclass
class _Built:
    entry: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: Runner | None
    reference_name: str
    tools: list[ToolInfo]


def _build(
    req: Request, model: Path, code_dir: Path | None, out: Path, work: Path, rep: progress.Reporter
) -> _Built:
    """Produce the target file in ``out``; the reference runner comes back for verification."""
    from inferplane.convert import verify

    target = req.target
    dest = out / ENTRYPOINT[target]
    batch = req.profile
    used: list[ToolInfo] = []
    reference: Runner | None = None
    inputs = list(req.inputs)
    outputs: list[TensorSpec] = []
    intermediate = dest
    if req.source_format is F.MINDSPORE_CHECKPOINT:
        from inferplane.convert import export

        with rep.step("import mindspore"):
            used.append(ToolInfo(name="mindspore", version=export.version()))
        entry = req.network or ""
        with rep.step("load checkpoint"):
            factory = export.load_factory(entry, extra_path=code_dir)
            params = export.load_checkpoint(model)

            def fresh() -> Any:
                """A new network per use: MindSpore reuses a cached graph for the same Cell."""
                return export.build(factory, params, checkpoint=model, entry=entry)

            reference = export.network_runner(fresh())
            outputs = _outputs_from(reference, inputs)

        if target in (F.ONNX, F.OM, F.TENSORRT):
            intermediate = dest if target is F.ONNX else work / "model.onnx"
            with rep.step("export onnx"):
                export.export_onnx(fresh(), inputs, [o.name for o in outputs], intermediate)
        else:
            intermediate = dest if target is F.MINDIR else work / "model.mindir"
            with rep.step("export mindir"):
                export.export_mindir(fresh(), inputs, intermediate)
        source_format = F.ONNX if intermediate.suffix == ".onnx" else F.MINDIR
        reference_name = "mindspore-checkpoint"
    elif req.source_format is F.ONNX:
        with rep.step("read onnx"):
            inputs, outputs = verify.onnx_signature(model)
            reference = verify.onnx_runner(model)
        intermediate, source_format, reference_name = model, F.ONNX, "onnx-source"
    elif req.source_format is F.MINDIR:
        from inferplane.convert import export

        with rep.step("load mindir"):
            used.append(ToolInfo(name="mindspore", version=export.version()))
            reference = export.mindir_runner(model)
            outputs = _outputs_from(reference, inputs)
        intermediate, source_format, reference_name = model, F.MINDIR, "mindir-source"
    else:
        intermediate, source_format, reference_name = model, F.AIR, ""

    if intermediate != dest:
        with rep.step(f"build {target}"):
            if target is F.OM:
                used.append(
                    tools.build_om(
                        model=intermediate,
                        source_format=source_format,
                        dest=dest,
                        soc_version=req.device_spec or "",
                        inputs=inputs,
                        batch=batch,
                        precision=req.precision,
                    )
                )
            elif target is F.TENSORRT:
                used.append(
                    tools.build_tensorrt(
                        onnx=intermediate,
                        dest=dest,
                        inputs=inputs,
                        batch=batch,
                        precision=req.precision,
                    )
                )
            elif target is F.MS:
                used.append(
                    tools.build_ms(
                        model=intermediate,
                        source_format=source_format,
                        dest=dest,
                        precision=req.precision,
                    )
                )
            else:
                shutil.copyfile(intermediate, dest)
    if target is F.ONNX:
        inputs, outputs = verify.onnx_signature(dest)
    return _Built(dest, inputs, outputs, reference, reference_name, used)


def _converted_runner(target: ArtifactFormat, entry: Path) -> Runner | None:
    from inferplane.convert import verify

    if target is F.ONNX:
        return verify.onnx_runner(entry)
    if target is F.MINDIR:
        from inferplane.convert import export

        return export.mindir_runner(entry)
    return None


def unverified(req: Request, *, reference_name: str) -> Verification:
    """The honest record for an artifact whose runtime (or reference) is not here: no numbers."""
    why = (
        f"not run here: a {req.target} artifact needs {RUNTIME_ABSENT[req.target]}"
        if req.target in RUNTIME_ABSENT
        else f"no reference runs here for a {req.source_format} source"
    )
    return Verification(verified=False, reason=why, reference=reference_name)


def _verify(
    req: Request, built: _Built, rep: progress.Reporter, samples: Path | None
) -> tuple[Verification, Runner | None]:
    import numpy as np

    from inferplane.convert import verify

    converted = _converted_runner(req.target, built.entry)
    if converted is None or built.reference is None:
        skipped = unverified(req, reference_name=built.reference_name)
        rep.note(f"verification skipped ({skipped.reason})")
        return skipped, converted
    max_batch = req.batch[2] if req.batch else DEFAULT_MAX_BATCH
    with rep.step("verify parity"):
        rows = verify.random_rows(built.inputs, req.samples)
        if samples is not None:
            extra = verify.load_samples(samples, built.inputs)
            rows = [np.concatenate([r, e]) for r, e in zip(rows, extra, strict=True)]
        result = verify.parity(
            built.reference,
            converted,
            rows,
            max_batch=max_batch,
            precision=req.precision,
            reference_name=built.reference_name,
            atol=req.atol,
            rtol=req.rtol,
            dynamic_batch=all(s.dynamic_batch for s in built.inputs),
        )
    if not result.verified:
        raise errors.ConversionError(f"{req.source}: {result.reason}")
    rep.note(
        f"parity ok: max abs error {result.max_abs_error:.3g}, max rel error "
        f"{result.max_rel_error:.3g} at batch sizes {result.batch_sizes}"
    )
    return result, converted


def build(
    req: Request, directory: Path, fetched: Fetched, out: Path, rep: progress.Reporter
) -> Claims:
    """Stage 2, the one that runs the network's code (in a Job: no store credentials, no
    service-account token, the source directory read-only): convert into ``out``, verify,
    measure accuracy. Writes nothing but ``out`` and its own scratch space."""
    tools.check_available(req.target)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inferplane-build-") as tmp:
        work = Path(tmp)
        built = _build(
            req, directory / fetched.model, _code_dir(fetched, directory, req), out, work, rep
        )
        samples = directory / fetched.samples if fetched.samples else None
        verification, converted = _verify(req, built, rep, samples)
    accuracy = None
    if fetched.validation and converted is not None and built.reference is not None:
        from inferplane.convert import verify

        with rep.step("accuracy"):
            accuracy = verify.accuracy(
                built.reference,
                converted,
                directory / fetched.validation,
                built.inputs,
                max_drop=req.max_accuracy_drop,
                batch=max(req.batch[2] if req.batch else 0, 64),
            )
        rep.note(
            f"accuracy on {accuracy.samples} samples: reference {accuracy.reference:.4f}, "
            f"converted {accuracy.converted:.4f}"
        )
        if accuracy.drop > req.max_accuracy_drop:
            raise errors.ConversionError(
                f"{req.source}: accuracy dropped by {accuracy.drop:.4f} "
                f"(reference {accuracy.reference:.4f}, converted {accuracy.converted:.4f}), "
                f"over --max-accuracy-drop {req.max_accuracy_drop}"
            )
    elif fetched.validation:
        rep.note("accuracy not computed: the converted model does not run here")
    return Claims(
        inputs=built.inputs,
        outputs=built.outputs,
        tools=built.tools,
        verification=verification,
        accuracy=accuracy,
    )


def _regular_files(out: Path) -> list[Path]:
    """The artifact's files: regular files directly in ``out``, nothing else. A link (to the
    publisher's own environment, its credentials, the store) or a directory is refused: the
    stage that wrote ``out`` ran code the publisher does not trust."""
    files = []
    for path in sorted(out.iterdir()):
        if path.name == MANIFEST_NAME:
            continue
        mode = path.lstat().st_mode
        if not stat.S_ISREG(mode):
            raise errors.ConversionError(
                f"{path.name}: not a regular file in the converted output (links and "
                "directories are not published)"
            )
        files.append(path)
    return files


def publish(
    req: Request,
    fetched: Fetched,
    claims: Claims,
    out: Path,
    *,
    key: str,
    options: TargetOptions,
    rep: progress.Reporter,
) -> tuple[ArtifactManifest, bool]:
    """Stage 3, inferplane's code only (in a Job: the store's write credentials): the manifest
    under ``key`` (the operator's, never one a pod reports), with the files' digests computed
    here, published atomically. Returns the manifest and whether this publish won."""
    entrypoint = ENTRYPOINT[req.target]
    files = _regular_files(out)
    if entrypoint not in {p.name for p in files}:
        raise errors.ConversionError(f"the converted output holds no {entrypoint}")
    manifest = ArtifactManifest(
        key=key,
        model=req.name or Path(fetched.model).stem,
        source=SourceRef(
            uri=req.source, format=req.source_format, sha256=fetched.sha256, network=req.network
        ),
        target=options,
        files=[FileEntry(path=p.name, sha256=sha256_file(p), size=p.stat().st_size) for p in files],
        entrypoint=entrypoint,
        inputs=claims.inputs,
        outputs=claims.outputs,
        tools=claims.tools,
        verification=claims.verification,
        accuracy=claims.accuracy,
    )
    manifest.write(out)  # replaces whatever the convert stage left under that name
    with rep.step("store upload"):
        won = store.open_store(req.store).publish(key, out)
    if not won:
        rep.note(f"another converter published {key} first; using that artifact")
    return manifest, won


def convert(
    req: Request,
    *,
    reporter: progress.Reporter | None = None,
    cache: Path | None = None,
    fetch: bool = True,
) -> Result:
    """Run one conversion (or find it in the store) and return the published artifact: the
    three stages (``fetch_source``, ``build``, ``publish``) in one process, with a store lookup
    between the first two.

    ``fetch``: also make the artifact available locally (``Result.directory``): a no-op for a
    file store, a verified download into ``cache`` for S3.
    """
    rep = reporter or progress.Silent()
    req.check()
    target_store = store.open_store(req.store)
    cache = cache or default_cache() / "artifacts"
    with tempfile.TemporaryDirectory(prefix="inferplane-convert-") as tmp:
        work = Path(tmp)
        with rep.step("fetch source"):
            fetched = fetch_source(req, work / "source")
        options = req.options(code_dir=_code_dir(fetched, work / "source", req))
        key = artifact_key(fetched.sha256, options)
        with rep.step("store lookup"):
            existing = target_store.lookup(key)
        if existing is not None:
            rep.note(f"store hit: {target_store.location(key)} (nothing to convert)")
            directory = target_store.fetch(key, cache) if fetch else None
            return Result(existing, directory, target_store.location(key), True, rep.timings)
        out = work / "artifact"
        claims = build(req, work / "source", fetched, out, rep)
        publish(req, fetched, claims, out, key=key, options=options, rep=rep)
        directory = target_store.fetch(key, cache) if fetch else None
        final = ArtifactManifest.read(directory) if directory else target_store.lookup(key)
        if final is None:
            raise errors.StoreError(f"{target_store.location(key)}: vanished right after publish")
        return Result(final, directory, target_store.location(key), False, rep.timings)


def request_from_options(options: dict[str, Any]) -> Request:
    """The CLI's options (``inferplane convert``) as a Request."""
    fields = cli_fields(options)
    fields["inputs"] = tuple(TensorSpec.parse(t) for t in fields["inputs"])
    return Request(
        **fields,
        source=options["source"],
        store=options.get("store") or "",
        name=options.get("name"),
        source_sha256=options.get("source_sha256"),
        samples=options.get("samples") or 8,
        sample_inputs=options.get("sample_inputs"),
        atol=options.get("atol"),
        rtol=options.get("rtol"),
        validation=options.get("validation"),
        max_accuracy_drop=options.get("max_accuracy_drop", 0.01),
    )


STAGES = ("all", "fetch", "convert", "publish")


def _report(
    manifest: ArtifactManifest, location: str, rep: progress.Reporter, as_json: bool
) -> None:
    rep.note(f"artifact {manifest.key} at {location}")
    termination.report(manifest.model_dump(mode="json"))
    if as_json:
        sys.stdout.write(manifest.model_dump_json(indent=2) + "\n")


def run_stage(stage: str, req: Request, work: Path, *, key: str | None, as_json: bool) -> None:
    """One stage of a conversion Job over the shared ``work`` directory: ``fetch`` fills
    ``work/source``, ``convert`` reads it and fills ``work/out``, ``publish`` reads both and
    writes the store under ``key`` (the operator's; computed here only when none is given)."""
    rep = progress.Reporter()
    source, out, claims_file = work / "source", work / "out" / "artifact", work / "out" / CLAIMS
    if stage == "fetch":
        with rep.step("fetch source"):
            fetched = fetch_source(req, source, copy=True)
        (source / FETCHED).write_text(fetched.model_dump_json())
        rep.note(f"source sha256 {fetched.sha256}")
        return
    try:
        fetched = Fetched.model_validate_json((source / FETCHED).read_bytes())
    except (OSError, ValueError) as exc:
        raise errors.ConversionError(f"{source / FETCHED}: no fetched source ({exc})") from None
    if stage == "convert":
        claims = build(req, source, fetched, out, rep)
        claims_file.write_text(claims.model_dump_json())
        return
    try:
        claims = Claims.model_validate_json(claims_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise errors.ConversionError(f"{claims_file}: no conversion result ({exc})") from None
    options = req.options(code_dir=_code_dir(fetched, source, req))
    manifest, _ = publish(
        req, fetched, claims, out,
        key=key or artifact_key(fetched.sha256, options), options=options, rep=rep,
    )  # fmt: skip
    _report(manifest, store.open_store(req.store).location(manifest.key), rep, as_json)


def main(**options: Any) -> None:
    """``inferplane convert``: progress on stderr; the manifest on stdout with ``--json``.
    ``--stage`` runs one stage of a conversion Job (``--work`` shared between them)."""
    req = request_from_options(options)
    stage = options.get("stage") or "all"
    if stage in ("all", "publish") and not req.store:
        raise errors.SpecError(f"--stage {stage} needs --store")
    if stage != "all":
        work = options.get("work")
        if not work:
            raise errors.SpecError(f"--stage {stage} needs --work, the directory stages share")
        req.check()
        run_stage(
            stage, req, Path(work), key=options.get("key"), as_json=bool(options.get("as_json"))
        )
        return
    rep = progress.Reporter()
    result = convert(req, reporter=rep, fetch=False)
    _report(result.manifest, result.location, rep, bool(options.get("as_json")))
