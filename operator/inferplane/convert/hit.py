# SPDX-License-Identifier: Apache-2.0
"""A repeated ``inferplane convert`` answered from a file store, with the standard library only.

The second run of a conversion finds its artifact and stops; in a fresh process most of that
time would go into importing pydantic and building its validators for the request and the
manifest. This path checks the request and computes the key with the pipeline's own code
(``convert.target``, ``artifacts.key``), then reads the manifest as plain JSON. It answers only
when it is sure: a local source file, a file store, a manifest naming that key and that source,
with the files it lists in place. Anything else (a miss, an S3 store, a URL source, ``--json``,
a manifest it cannot read) goes to the full pipeline, which validates everything and reports
any problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferplane import errors
from inferplane.artifacts import archives, uris
from inferplane.artifacts.key import MANIFEST_NAME, artifact_key, sha256_file
from inferplane.convert import progress, termination
from inferplane.convert.target import Conversion, cli_fields


def answer(options: Mapping[str, Any], reporter: progress.Reporter) -> bool:
    """Report the stored artifact for the CLI's ``options`` and return True, or return False
    (nothing printed, nothing written) when the full pipeline must run."""
    if options.get("as_json"):
        return False
    try:
        found = _find(options)
    except (errors.InferplaneError, OSError, ValueError, KeyError, TypeError):
        return False
    if found is None:
        return False
    location, manifest = found
    reporter.note(f"store hit: {location} (nothing to convert)")
    reporter.note(f"artifact {manifest['key']} at {location}")
    termination.report(manifest)
    return True


def _find(options: Mapping[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    if not options.get("store"):
        return None
    root = uris.local_path(options["store"])
    source = uris.local_path(options["source"])
    if root is None or source is None or not source.is_file():
        return None
    conversion = Conversion(**cli_fields(options))
    conversion.check()
    if conversion.network and archives.is_archive(source):
        return None  # the network's code is in the archive: its digest needs the unpacked files
    digest = sha256_file(source)
    expected = options.get("source_sha256")
    if expected and expected.lower() != digest:
        return None
    key = artifact_key(digest, conversion.options())
    directory = root / key
    manifest = json.loads((directory / MANIFEST_NAME).read_bytes())
    stored = manifest["source"]
    if (
        manifest["key"] != key
        or stored["sha256"] != digest
        or stored["format"] != conversion.source_format.value
    ):
        return None
    for entry in manifest["files"]:
        path = directory / entry["path"]
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return None
    return directory, manifest
