"""The ``minikern`` command: ``minikern demo`` and ``minikern trace --out FILE``.

Both run the same workload (``minikern.cli.workload.run_workload``), picked
by ``--seed``: the same seed gives the same run and a byte-identical trace;
``minikern.cli.demo`` draws it. This package is the cli layer of the
architecture (cli -> lab -> minikern / hypervisor): it may draw, print and
write files; nothing in the core imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from minikern.cli import demo, workload

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The argument parser: a sub-command, each with ``--seed``."""
    top = argparse.ArgumentParser(
        prog="minikern",
        description="A toy PV kernel on a simulated Xen: run the demo or export its trace.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument(
        "--seed", type=int, default=0, help="picks the workload; same seed, same run (default 0)"
    )
    sub.add_parser(
        "demo", parents=[seed], help="boot, start init, fork three children and draw it all"
    )
    trace = sub.add_parser("trace", parents=[seed], help="write the demo run's trace as JSON lines")
    trace.add_argument(
        "--out", required=True, metavar="FILE", help="where to write the trace ('-': stdout)"
    )
    return top


def write_trace(seed: int, out: str) -> int:
    """Run the workload of ``seed`` and write its trace to ``out`` (a path, or
    ``-`` for stdout); returns the exit status (1 if the file cannot be written)."""
    run = workload.run_workload(seed)
    text = run.xen.trace.to_jsonl()
    if out == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(out).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"minikern trace: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    calls = len(run.xen.trace.hypercalls())
    print(f"wrote {len(run.xen.trace)} trace records ({calls} hypercalls) to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the command; returns
    the exit status. Bad arguments exit with status 2, as argparse does."""
    args = parser().parse_args(argv)
    if args.command == "trace":
        return write_trace(args.seed, args.out)
    run = demo.show(args.seed)
    return 0 if run.clean() else 1
