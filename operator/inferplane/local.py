# SPDX-License-Identifier: Apache-2.0
"""``inferplane run``: one InferenceModel on this machine, with no Kubernetes.

The same path the operator takes, in one process: validate the manifest with the API models,
detect the local devices and describe them as device pools, ask the operator's planner
(``planner.choose_targets``) which artifact and backend suit them best, convert and verify with
progress (falling back to the next target when a tool is missing here), then serve the artifact
over V2 under ``metadata.name`` until Ctrl-C or SIGTERM.

Device detection: the CPU always; NVIDIA GPUs through NVML (``pynvml``) or ``nvidia-smi``;
Ascend NPUs through ``npu-smi`` (chip name) and ``/dev/davinci<N>`` (count).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

from inferplane import errors, products
from inferplane.api import v1alpha1
from inferplane.artifacts import uris
from inferplane.control import planner
from inferplane.control.inventory import DevicePool, Inventory
from inferplane.convert import pipeline, progress
from inferplane.devices import DeviceClass

SMI_TIMEOUT_S = 10.0


def _run_quietly(argv: list[str]) -> str | None:
    """A device tool's stdout, or None when it is absent or fails (detection never fails)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SMI_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_counts(names: Iterable[str | bytes]) -> dict[str, int]:
    """GPU count per canonical product (``products.canonical``) from the names NVML gives
    (``nvmlDeviceGetName``: bytes in older pynvml releases, str in newer ones)."""
    counts: dict[str, int] = {}
    for name in names:
        text = name.decode() if isinstance(name, bytes) else name
        if text.strip():
            product = products.canonical(text)
            counts[product] = counts.get(product, 0) + 1
    return counts


def parse_nvidia_smi(text: str) -> dict[str, int]:
    """GPU count per canonical product from ``nvidia-smi --query-gpu=name
    --format=csv,noheader``."""
    return gpu_counts(text.splitlines())


def nvidia_gpus() -> dict[str, int]:
    """NVIDIA GPUs here, by product: NVML when pynvml is installed, else nvidia-smi."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
            try:
                return gpu_counts(
                    pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                    for i in range(pynvml.nvmlDeviceGetCount())
                )
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # NVMLError: no driver here; nvidia-smi will say the same
            pass
    text = _run_quietly(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return parse_nvidia_smi(text) if text else {}


def parse_npu_smi(text: str) -> tuple[DeviceClass, str] | None:
    """Class and SoC version from ``npu-smi info`` output (its chip name column)."""
    match = re.search(r"\b(?:Ascend)?\s*(910\w*|310P?\d*\w*)\b", text)
    if not match:
        return None
    chip = match.group(1)
    device_class = DeviceClass.ASCEND910 if chip.startswith("910") else DeviceClass.ASCEND310
    return device_class, products.canonical(chip)


def ascend_npus(dev: Path = Path("/dev")) -> tuple[DeviceClass, str, int] | None:
    """(class, SoC version, count) of the Ascend NPUs here, or None."""
    count = len([p for p in dev.glob("davinci*") if p.name[len("davinci") :].isdigit()])
    info = _run_quietly(["npu-smi", "info"])
    found = parse_npu_smi(info) if info else None
    if found is None:
        return None
    return found[0], found[1], max(count, 1)


def detect() -> list[DevicePool]:
    """The local devices as device pools (one per class and product)."""
    pools = [
        DevicePool(DeviceClass.CPU, allocatable=(os.cpu_count() or 1) * 1000, nodes=("local",))
    ]
    for product, count in nvidia_gpus().items():
        pools.append(
            DevicePool(DeviceClass.NVIDIA, product, count, ("local",), resource="nvidia.com/gpu")
        )
    npus = ascend_npus()
    if npus is not None:
        device_class, soc, count = npus
        pools.append(DevicePool(device_class, soc, count, ("local",)))
    return pools


def request_for(
    model: v1alpha1.InferenceModel,
    target: planner.Target,
    *,
    store: str,
    base: Path,
) -> pipeline.Request:
    """The conversion of one planned target, with the options the operator would give its Job."""
    spec = model.spec
    options = planner.target_options(spec, target)
    return pipeline.Request(
        source=spec.source.uri,
        source_format=spec.source.format,
        target=options.format,
        store=store,
        network=spec.source.network,
        inputs=tuple(spec.source.inputs),
        device_class=options.device_class,
        device_spec=options.product,
        precision=options.precision,
        batch=options.batch,
        name=model.metadata.name,
        source_sha256=spec.source.sha256,
        samples=spec.verification.samples,
        atol=spec.verification.atol,
        rtol=spec.verification.rtol,
        validation=spec.verification.validation,
        max_accuracy_drop=spec.verification.max_accuracy_drop,
        base=base,
        code_path=base,
    )


def example_request(model: v1alpha1.InferenceModel, base: Path, directory: Path) -> Path:
    """A V2 request body for the printed curl line: a validation row when there is one, zeros
    otherwise (shapes from the manifest's signature, batch 1)."""
    import numpy as np

    from inferplane.convert import verify

    inputs = []
    validation = model.spec.verification.validation
    x = None
    if validation:
        path = uris.local_path(validation, base=base)
        if path is not None and path.is_file():
            with contextlib.suppress(errors.SpecError):
                x = verify.load_validation(path, model.spec.source.inputs)[0][:1]
    for spec in model.spec.source.inputs:
        shape = [1 if d == -1 else d for d in spec.shape]
        data = x if x is not None else np.zeros(shape, dtype=spec.datatype.numpy)
        inputs.append(
            {
                "name": spec.name,
                "shape": shape,
                "datatype": spec.datatype.value,
                "data": np.asarray(data).reshape(-1).tolist(),
            }
        )
    directory.mkdir(parents=True, exist_ok=True)
    body = directory / f"{model.metadata.name}-request.json"
    body.write_text(json.dumps({"inputs": inputs}))
    return body


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM during conversion behaves like Ctrl-C: temp files are removed, the store is
    untouched (nothing is published before the end)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    *,
    manifest: str,
    device: str = "auto",
    host: str = "127.0.0.1",
    port: int = 8080,
    store: str | None = None,
) -> None:
    """``inferplane run MANIFEST``: plan, convert, verify, then serve until Ctrl-C/SIGTERM."""
    from inferplane.serving import server
    from inferplane.serving.dataplane import BatchSettings

    path = Path(manifest).resolve()
    model = v1alpha1.InferenceModel.load(path)
    base = path.parent
    cache = pipeline.default_cache()
    store_uri = store or str(cache / "store")
    rep = progress.Reporter()
    pools = detect()
    rep.note("devices here: " + ", ".join(_describe(p) for p in pools))
    spec = model.spec
    if device != "auto":
        wanted = DeviceClass(device)
        if not any(p.device_class is wanted for p in pools):
            raise errors.PlanError(f"--device {device}: no {device} device found on this machine")
        spec = spec.model_copy(update={"devices": [wanted]})
    targets = planner.choose_targets(spec, Inventory.from_pools(pools))
    result = None
    chosen = targets[0]
    try:
        with _sigterm_interrupts():
            for index, target in enumerate(targets):
                chosen = target
                rep.note(
                    f"target {target.label}: {target.format} on {target.backend} ({target.reason})"
                )
                try:
                    result = pipeline.convert(
                        request_for(model, target, store=store_uri, base=base), reporter=rep
                    )
                    break
                except errors.ToolMissing as exc:
                    if index == len(targets) - 1:
                        raise
                    rep.note(f"{target.label} skipped: {exc}")
    except KeyboardInterrupt:
        rep.note("interrupted; nothing was published")
        sys.exit(130)
    if result is None or result.directory is None:
        raise errors.ConversionError("no target could be converted")
    served = server.resolve(
        result.directory, name=model.metadata.name, device=chosen.device_class.value
    )
    settings = server.ServerSettings(
        host=host,
        port=port,
        batching=BatchSettings(
            max_batch_size=spec.batching.max_batch_size,
            max_queue_delay_s=spec.batching.max_delay_ms / 1000.0,
        ),
    )
    verified = result.manifest.verification
    summary = (
        f"verified (max abs error {verified.max_abs_error:.2g})"
        if verified.verified
        else f"NOT verified: {verified.reason}"
    )
    body = example_request(model, base, cache)

    def ready(url: str) -> None:
        infer = f"{url}/v2/models/{model.metadata.name}/infer"
        print(f"inferplane: serving '{model.metadata.name}' at {url} ({summary})", flush=True)
        print(f"  endpoint: {infer}", flush=True)
        print(
            "  try:      curl -s -H 'Content-Type: application/json' "
            f"-d @{shlex.quote(str(body))} {infer}",
            flush=True,
        )
        print("  stop:     Ctrl-C", flush=True)

    server.run(served, settings, on_ready=ready)
    rep.note("stopped")


def _describe(pool: DevicePool) -> str:
    if pool.device_class is DeviceClass.CPU:
        return f"cpu ({pool.allocatable // 1000} cores)"
    return f"{pool.device_class} {pool.product} x{pool.allocatable}"
