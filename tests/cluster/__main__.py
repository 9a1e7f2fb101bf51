# SPDX-License-Identifier: Apache-2.0
"""``python -m tests.cluster build|up|down|status``: the test cluster by hand."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.cluster import build, control_plane, machine, node, versions
from tests.cluster.profile import Profile


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser(
        "build", help="build the binaries into the cache (no start)"
    )
    build_command.add_argument(
        "--autoscaling",
        action="store_true",
        help="also Prometheus and KEDA (the autoscaling tests; scripts/test.sh builds them)",
    )
    for name, text in (
        ("up", "start a cluster (or reuse the healthy one in --dir); prints KUBECONFIG=... last"),
        ("down", "stop every process that up started in --dir"),
        ("status", "show the processes, the API server's health and the nodes"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--dir",
            type=Path,
            default=control_plane.default_dir(),
            help="state directory (default: %(default)s)",
        )
        if name == "up":
            defaults = Profile()
            for field, help_text in (
                ("cpu", "CPU nodes"),
                ("nvidia", "NVIDIA nodes per GPU product (A100-SXM4-40GB and T4)"),
                ("ascend910", "Ascend 910B nodes"),
                ("ascend310", "Ascend 310P nodes"),
                ("nvidia_dra", "NVIDIA nodes per GPU product offering GPUs through DRA"),
                ("ascend_dra", "Ascend 910B nodes offering NPUs through DRA"),
            ):
                command.add_argument(
                    f"--{field.replace('_', '-')}",
                    dest=field,
                    type=int,
                    default=getattr(defaults, field),
                    metavar="N",
                    help=f"{help_text} (default: %(default)s)",
                )
            command.add_argument(
                "--real-node",
                action="store_true",
                help="also join a real kubelet node (containerd, runc, CNI, kube-proxy, CoreDNS, "
                "metrics-server) of this machine: needs root, one per machine",
            )
    return parser


def _up(args: argparse.Namespace) -> int:
    try:
        profile = Profile.from_counts(
            cpu=args.cpu, nvidia=args.nvidia, ascend910=args.ascend910, ascend310=args.ascend310,
            nvidia_dra=args.nvidia_dra, ascend_dra=args.ascend_dra,
        )  # fmt: skip
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if profile.total == 0 and not args.real_node:
        print("error: the cluster would have no nodes", file=sys.stderr)
        return 2
    if args.real_node and (reason := node.cannot_run()):
        print(f"error: no real node on this machine: {reason}", file=sys.stderr)
        return 1
    start = time.monotonic()
    state, reused = control_plane.up(args.dir.resolve(), profile)
    if reused:
        print(f"reusing the cluster already up in {state.directory}", file=sys.stderr)
        if state.profile != profile:
            print(f"note: its nodes are {state.profile}, not {profile}", file=sys.stderr)
    else:
        seconds = time.monotonic() - start
        print(f"up in {seconds:.1f} s with {profile.total} nodes ({state.server})", file=sys.stderr)
    if args.real_node:
        real = node.NodeState.load(state.directory)
        if real is not None and all(real.alive().values()):
            print("reusing the real node already up", file=sys.stderr)
        else:
            phases: dict[str, float] = {}
            real = node.up(state, phases=phases)
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
            print(f"real node {real.address} up ({steps})", file=sys.stderr)
    print(f"KUBECONFIG={state.kubeconfig}")
    return 0


def _status(directory: Path) -> int:
    state = control_plane.State.load(directory.resolve())
    if state is None:
        print(f"no cluster in {directory}")
        return 1
    alive = state.alive()
    memory = control_plane.memory_kib(state)
    for name, pid in state.pids.items():
        mark = "running" if alive[name] else "stopped"
        print(f"{name:24} pid {pid:<8} {mark:8} {memory[name] // 1024:>6} MiB  {state.log(name)}")
    ok = all(alive.values()) and control_plane.healthy(state)
    print(f"API server {state.server}: {'healthy' if ok else 'NOT healthy'}")
    print(f"nodes: {state.profile}")
    print(f"KUBECONFIG={state.kubeconfig}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            wanted = versions.COMPONENTS + (versions.AUTOSCALING if args.autoscaling else ())
            timings = build.ensure_built(wanted, echo=True)
            for label, seconds in timings.items():
                print(f"{label}: {'cached' if seconds == 0 else f'built in {seconds:.0f} s'}")
            print(f"binaries in {build.bin_dir()}")
            return 0
        if args.command == "up":
            return _up(args)
        if args.command == "down":
            stopped = control_plane.down(args.dir.resolve())
            print("stopped" if stopped else f"no cluster in {args.dir}")
            return 0
        return _status(args.dir)
    except (
        build.BuildError,
        control_plane.ClusterError,
        machine.MachineError,
        node.NodeUnavailable,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
