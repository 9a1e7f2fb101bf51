# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the runtime images (``tests/images``): sizes against their targets, and build
times cold, after a source change, and with nothing changed.

    flock /tmp/inferplane-bench.lock python -m tests.bench.images [--cold] [NAME...]

``--cold`` first builds into an empty temporary ``INFERPLANE_CACHE`` (debootstrap and the wheel
downloads run again; pip's own HTTP cache in ~/.cache/pip is kept) with buildah's layer cache off
(``--no-cache``). Then, always: a source change (a copy of the checkout with one line added to
``operator/inferplane/cli.py``: buildah reuses the dependency layers), and a run with nothing
changed (the content key finds the archive). Builds run at ``nice -n 10`` as the tool's always
do. ``NAME...`` limits every part to those images (default: all; the base is built cold
whichever are named). Prints the load average before and after, and a markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from tests.images import base as base_mod
from tests.images import build, tools

TARGET_MB = {"operator": 200, "cpu": 400}


def _timed_ensure(
    root: Path, no_cache: bool, names: list[str]
) -> dict[str, tuple[build.Built, float]]:
    out: dict[str, tuple[build.Built, float]] = {}
    for name in names:
        start = time.monotonic()
        built = build.ensure([name], root=root, no_cache=no_cache)[name]
        out[name] = (built, time.monotonic() - start)
    return out


def _copy_with_change(into: Path) -> Path:
    root = into / "checkout"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(build.ROOT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("operator", "runtime-images"):
        shutil.copytree(build.ROOT / name, root / name, ignore=ignore)
    shutil.copy(build.ROOT / ".dockerignore", root / ".dockerignore")
    cli = root / "operator" / "inferplane" / "cli.py"
    cli.write_text(cli.read_text() + f"\n# benchmark change {time.time()}\n")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.images", description=__doc__)
    parser.add_argument("--cold", action="store_true", help="build once from nothing first")
    parser.add_argument("names", nargs="*", help=f"images of {list(build.IMAGES)} (default: all)")
    args = parser.parse_args()
    names: list[str] = args.names or list(build.IMAGES)
    unknown = sorted(set(names) - set(build.IMAGES))
    if unknown:
        parser.error(f"unknown images {unknown}; choose among {list(build.IMAGES)}")
    tools.ensure_programs()
    print(f"load average before: {os.getloadavg()}")
    rows: dict[str, dict[str, str]] = {name: {} for name in names}
    if args.cold:
        saved = os.environ.get("INFERPLANE_CACHE")
        with tempfile.TemporaryDirectory(prefix="bench-images-", dir=Path.home()) as cache:
            os.environ["INFERPLANE_CACHE"] = cache
            try:
                start = time.monotonic()
                base_mod.ensure(build.log_path())
                print(f"cold base (debootstrap, trim, tar): {time.monotonic() - start:.0f} s")
                start = time.monotonic()
                base_mod.ensure(build.log_path(), builder=True)
                print(f"cold builder base (the same with gcc): {time.monotonic() - start:.0f} s")
                cold = _timed_ensure(build.ROOT, no_cache=True, names=names)
                for name, (built, wall) in cold.items():
                    rows[name]["cold"] = (
                        f"{wall:.0f} ({built.build_seconds:.0f} + {built.export_seconds:.0f})"
                    )
            finally:
                if saved is None:
                    os.environ.pop("INFERPLANE_CACHE", None)
                else:
                    os.environ["INFERPLANE_CACHE"] = saved
    with tempfile.TemporaryDirectory(prefix="bench-images-") as work:
        changed = _copy_with_change(Path(work))
        for name, (built, wall) in _timed_ensure(changed, no_cache=False, names=names).items():
            rows[name]["source"] = (
                f"{wall:.0f} ({built.build_seconds:.0f} + {built.export_seconds:.0f})"
            )
    for name, (built, _) in _timed_ensure(build.ROOT, no_cache=False, names=names).items():
        rows[name]["size"] = f"{built.size_bytes / 1e6:.0f}"
    for name, (built, wall) in _timed_ensure(build.ROOT, no_cache=False, names=names).items():
        assert built.cached, name
        rows[name]["cached"] = f"{wall:.2f}"
    print(f"load average after: {os.getloadavg()}")
    print()
    print("| image | size MB | target MB | cold s (build + export) | source change s "
          "(build + export) | nothing changed s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        target = TARGET_MB.get(name)
        print(
            f"| {name} | {row['size']} | {target or ''} | {row.get('cold', 'not run')} | "
            f"{row['source']} | {row['cached']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
