# SPDX-License-Identifier: Apache-2.0
"""``python -m tests.images build|push|list``: the runtime images, built here with buildah.

build [NAME...]                       build what changed (all by default), export OCI archives
push --registry R --tag T [NAME...]   build, then push each as R/NAME:T (mindspore: T-cpu)
list                                  the images, their references, keys and archives
"""

from __future__ import annotations

import argparse
import sys

from tests.images import build, tools


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    names = {"nargs": "*", "metavar": "NAME", "help": f"of {', '.join(build.IMAGES)} (all)"}
    commands.add_parser("build", help="build what changed, export OCI archives").add_argument(
        "names", **names
    )
    push = commands.add_parser("push", help="build, then push to a registry")
    push.add_argument("--registry", required=True, help="e.g. registry.example.com/inferplane")
    push.add_argument("--tag", required=True, help="e.g. 0.1.0")
    push.add_argument(
        "--tls-verify",
        default="true",
        choices=["true", "false"],
        help="verify the registry's certificate (default: true)",
    )
    push.add_argument("names", **names)
    commands.add_parser("list", help="the images, their keys and archives (no build)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, image in build.IMAGES.items():
            print(f"{name:10} {image.reference():40} {image.dockerfile.relative_to(build.ROOT)}")
        for name, why in build.NOT_BUILT.items():
            print(f"{name:10} not built here: {why}")
        return 0
    try:
        built = build.ensure(args.names or list(build.IMAGES))
        for item in built.values():
            how = "cached" if item.cached else f"built in {item.build_seconds:.0f} s"
            print(f"{item.reference:40} {item.size_bytes / 1e6:6.0f} MB  {how:16} {item.archive}")
        if args.command == "push":
            for item in built.values():
                destination = build.push(
                    item, args.registry, args.tag, tls_verify=args.tls_verify == "true"
                )
                print(f"pushed {destination}")
    except tools.ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
