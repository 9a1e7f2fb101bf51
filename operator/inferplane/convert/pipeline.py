# SPDX-License-Identifier: Apache-2.0
"""One conversion: source → store lookup → convert → verify → accuracy → publish.

``convert(Request)`` is the library entry (local mode uses it); ``main(**options)`` is what
``inferplane convert`` runs when its standard-library fast path (``convert.hit``) cannot
answer from the store. A store hit here too returns before MindSpore is imported. Nothing is
written to the store until the artifact is complete and verified, so a failure at any step leaves
the store as it was.

The key is ``artifact_key(source sha256, TargetOptions)`` — the same function the operator's
planner uses (``planner.known_key``) when the spec gives the source's digest, so both planes name
an artifact alike. For an archive source the digest is the archive's, network code included.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferplane import errors
from inferplane.api.tensors import TensorSpec
from inferplane.artifacts import archives, store
from inferplane.artifacts.key import artifact_key, sha256_file
from inferplane.artifacts.manifest import (
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


def _local(uri: str, req: Request, work: Path) -> Path:
    return store.fetch_source(uri, work / "downloads", base=req.base)


def _resolve_source(req: Request, work: Path) -> tuple[Path, Path, Path | None]:
    """(the fetched source file, the model file in it, a directory of code that came with it)."""
    fetched = store.fetch_source(
        req.source, work / "downloads", expected_sha256=req.source_sha256, base=req.base
    )
    if fetched.is_dir():
        raise errors.SpecError(f"source {req.source}: is a directory; name the model file")
    if not archives.is_archive(fetched):
        return fetched, fetched, req.code_path
    unpacked = archives.unpack(fetched, work / "source")
    suffix = SOURCE_SUFFIX[req.source_format]
    found = sorted(p for p in unpacked.rglob(f"*{suffix}") if p.is_file())
    if len(found) != 1:
        raise errors.SpecError(
            f"source {req.source}: the archive must hold exactly one {suffix} file, "
            f"found {len(found)}"
        )
    return fetched, found[0], unpacked


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
    req: Request, built: _Built, rep: progress.Reporter, work: Path
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
        if req.sample_inputs:
            extra = verify.load_samples(_local(req.sample_inputs, req, work), built.inputs)
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


def convert(
    req: Request,
    *,
    reporter: progress.Reporter | None = None,
    cache: Path | None = None,
    fetch: bool = True,
) -> Result:
    """Run one conversion (or find it in the store) and return the published artifact.

    ``fetch``: also make the artifact available locally (``Result.directory``): a no-op for a
    file store, a verified download into ``cache`` for S3. A Job that only publishes skips it.
    """
    rep = reporter or progress.Silent()
    req.check()
    target_store = store.open_store(req.store)
    cache = cache or default_cache() / "artifacts"
    with tempfile.TemporaryDirectory(prefix="inferplane-convert-") as tmp:
        work = Path(tmp)
        with rep.step("fetch source"):
            fetched, model, code_dir = _resolve_source(req, work)
            # fetch_source has checked an expected digest already: no second read of the file.
            file_sha = req.source_sha256.lower() if req.source_sha256 else sha256_file(fetched)
        options = req.options()
        key = artifact_key(file_sha, options)
        with rep.step("store lookup"):
            existing = target_store.lookup(key)
        if existing is not None:
            rep.note(f"store hit: {target_store.location(key)} (nothing to convert)")
            directory = target_store.fetch(key, cache) if fetch else None
            return Result(existing, directory, target_store.location(key), True, rep.timings)

        tools.check_available(req.target)

        out = work / "artifact"
        out.mkdir()
        built = _build(req, model, code_dir, out, work, rep)
        verification, converted = _verify(req, built, rep, work)
        accuracy = None
        if req.validation and converted is not None and built.reference is not None:
            from inferplane.convert import verify

            with rep.step("accuracy"):
                accuracy = verify.accuracy(
                    built.reference,
                    converted,
                    _local(req.validation, req, work),
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
        elif req.validation:
            rep.note("accuracy not computed: the converted model does not run here")
        manifest = ArtifactManifest(
            key=key,
            model=req.name or Path(model).stem,
            source=SourceRef(
                uri=req.source, format=req.source_format, sha256=file_sha, network=req.network
            ),
            target=options,
            files=[
                FileEntry(path=p.name, sha256=sha256_file(p), size=p.stat().st_size)
                for p in sorted(out.iterdir())
            ],
            entrypoint=built.entry.name,
            inputs=built.inputs,
            outputs=built.outputs,
            tools=built.tools,
            verification=verification,
            accuracy=accuracy,
        )
        manifest.write(out)
        with rep.step("store upload"):
            won = target_store.publish(key, out)
        if not won:
            rep.note(f"another converter published {key} first; using that artifact")
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
        store=options["store"],
        name=options.get("name"),
        source_sha256=options.get("source_sha256"),
        samples=options.get("samples") or 8,
        sample_inputs=options.get("sample_inputs"),
        atol=options.get("atol"),
        rtol=options.get("rtol"),
        validation=options.get("validation"),
        max_accuracy_drop=options.get("max_accuracy_drop", 0.01),
    )


def main(**options: Any) -> None:
    """``inferplane convert``: progress on stderr; the manifest on stdout with ``--json``."""
    req = request_from_options(options)
    rep = progress.Reporter()
    result = convert(req, reporter=rep, fetch=False)
    rep.note(f"artifact {result.manifest.key} at {result.location}")
    termination.report(result.manifest.model_dump(mode="json"))
    if options.get("as_json"):
        sys.stdout.write(result.manifest.model_dump_json(indent=2) + "\n")
