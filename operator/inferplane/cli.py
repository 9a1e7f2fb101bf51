# SPDX-License-Identifier: Apache-2.0
"""The composition root: ``inferplane run | serve | convert | operator | crd``.

Each command parses its options and hands them to one function of the layer that owns the work,
imported lazily so that ``inferplane crd`` needs neither kopf nor the server stack, and
``inferplane serve`` needs no kopf. Every ``InferplaneError`` ends as one clear line on stderr and
exit status 2; nothing a user can get wrong ends in a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from inferplane import __version__, errors

F = TypeVar("F", bound=Callable[..., Any])

DEVICES = ["auto", "cpu", "nvidia", "ascend910", "ascend310", "edge"]
BACKENDS = ["auto", "onnxruntime", "mindspore", "tensorrt", "acl", "mslite"]
FORMATS = ["mindspore-checkpoint", "mindir", "onnx", "air"]
TARGETS = ["onnx", "mindir", "om", "tensorrt", "ms"]


def _friendly(func: F) -> F:
    """Turn our own errors into one line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except errors.InferplaneError as exc:
            click.echo(f"inferplane: error: {exc}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _number(flag: str, default: float, help: str, *, zero: bool = False) -> Any:
    """A serve limit: an integer (at least 1) or a number of seconds (above 0, or from 0)."""
    if isinstance(default, int):
        kind: click.ParamType = click.IntRange(1)
    else:
        kind = click.FloatRange(min=0, min_open=not zero)
    return click.option(flag, type=kind, default=default, show_default=True, help=help)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="inferplane")
def main() -> None:
    """Convert MindSpore models for every device, verify them, and serve them (V2 protocol)."""


@main.command()
@click.argument("path")
@click.option("--name", help="Model name served (default: the file's stem or the manifest's).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option(
    "--device",
    type=click.Choice(DEVICES[1:]),
    help="Device class (default: the artifact manifest's, else cpu).",
)
@click.option("--network", help="module:callable returning the nn.Cell (checkpoint sources).")
@click.option(
    "--input", "inputs", multiple=True, help="name:shape:DATATYPE, e.g. x:-1,1,32,32:FP32"
)
@click.option(
    "--max-batch-size",
    type=click.IntRange(1),
    help="Merge concurrent requests up to this many rows; a request over it gets 400 "
    "(1: batching off). Default: up to 32 rows, and a larger request runs alone.",
)
@click.option(
    "--max-queue-delay-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="How long the oldest request may wait for more rows (0: batch only what queued "
    "while the model was busy).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Requests waiting beyond this answer 503 with Retry-After.",
)
@_number(
    "--max-queue-bytes",
    256 << 20,
    "Bytes of request bodies waiting beyond this answer 503 with Retry-After.",
)
@click.option("--max-request-bytes", type=click.IntRange(1), default=64 << 20, show_default=True)
@_number(
    "--idle-timeout-s",
    75.0,
    "Close keep-alive connections idle this long (above your proxy's idle timeout).",
)
@_number(
    "--head-timeout-s",
    10.0,
    "A request head must arrive whole within this long of its first byte (else 408).",
)
@_number(
    "--body-timeout-s",
    60.0,
    "A request body must arrive whole within this long of its head (else 408).",
)
@_number("--max-connections", 2048, "Connections open at once; one more gets 503 and is closed.")
@_number(
    "--drain-s",
    5.0,
    "On SIGTERM: ready answers 503 and the server still accepts and "
    "answers this long (each answer closing its connection), then stops accepting.",
    zero=True,
)
@_number(
    "--graceful-timeout-s",
    20.0,
    "After the drain: how long the requests begun may take to finish.",
    zero=True,
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@_friendly
def serve(**options: Any) -> None:
    """Serve one model over the Open Inference Protocol (KServe V2) REST API."""
    from inferplane.serving import server

    server.serve(**options)


@main.command()
@click.option("--source", required=True, help="Path or URI (file://, pvc://, s3://, http(s)://).")
@click.option("--format", "source_format", type=click.Choice(FORMATS), required=True)
@click.option("--network", help="module:callable returning the nn.Cell (checkpoints).")
@click.option(
    "--input", "inputs", multiple=True, help="name:shape:DATATYPE, e.g. x:-1,1,32,32:FP32"
)
@click.option("--to", "target", type=click.Choice(TARGETS), required=True)
@click.option(
    "--device",
    type=click.Choice(DEVICES[1:]),
    help="Device class the artifact is for (default: by target, e.g. onnx -> cpu).",
)
@click.option("--device-spec", help="GPU product (tensorrt) or SoC version (om), e.g. Ascend310P3.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--batch", help="min,opt,max batch of the dynamic profile, e.g. 1,8,32.")
@click.option("--store", help="Artifact store URI (path, file://, pvc://, s3://).")
@click.option("--name", help="Model name written into the manifest (default: the source's stem).")
@click.option("--sha256", "source_sha256", help="Expected sha256 of the source (http sources).")
@click.option(
    "--samples",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Random inputs for the parity check.",
)
@click.option("--sample-inputs", help=".npz of extra inputs for the parity check.")
@click.option("--atol", type=float, help="Absolute tolerance (default by precision).")
@click.option("--rtol", type=float, help="Relative tolerance (default by precision).")
@click.option("--validation", help="Labelled validation set (.npz with x and y).")
@click.option("--max-accuracy-drop", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option(
    "--code-id",
    help="Identity of the network's code for the key, e.g. the image it came from "
    "(default: a digest of the module's files).",
)
@click.option(
    "--tool-id",
    help="Identity of the converting tool for the key, e.g. the conversion image "
    "(default: this machine's tool versions).",
)
@click.option(
    "--stage",
    type=click.Choice(["all", "fetch", "convert", "publish"]),
    default="all",
    show_default=True,
    help="One stage of a conversion Job: fetch (the source), convert (runs the network's "
    "code, no store access), publish (to the store).",
)
@click.option("--work", help="The directory the stages share (--stage other than all).")
@click.option("--key", help="The artifact key to publish under (--stage publish; the operator's).")
@click.option("--json", "as_json", is_flag=True, help="Print the artifact manifest as JSON.")
@_friendly
def convert(**options: Any) -> None:
    """Convert a model into a device's format, verify it, and publish it to the store."""
    from inferplane.convert import hit, progress

    if options["stage"] == "all" and hit.answer(options, progress.Reporter()):
        return
    from inferplane.convert import pipeline

    pipeline.main(**options)


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--device", type=click.Choice(DEVICES[:-1]), default="auto", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--store", help="Artifact store (default: ~/.cache/inferplane/store).")
@_friendly
def run(**options: Any) -> None:
    """Run an InferenceModel on this machine: detect devices, plan, convert, verify, serve."""
    from inferplane import local

    local.run(**options)


@main.command("operator")
@click.option("--namespace", "namespaces", multiple=True, help="Watch only these namespaces.")
@click.option("--liveness", default="http://0.0.0.0:8081/healthz", show_default=True)
@click.option("--standalone", is_flag=True, help="No peering (a single operator replica).")
@_friendly
def operator_(**options: Any) -> None:
    """Run the Kubernetes operator (in-cluster config in a pod, KUBECONFIG outside)."""
    from inferplane.control import handlers

    handlers.run(**options)


@main.command()
def crd() -> None:
    """Print the InferenceModel CustomResourceDefinition (YAML), generated from the API models."""
    from inferplane.api import crd as crd_module

    click.echo(crd_module.render_yaml(), nl=False)
