"""The ``minikern`` command: ``minikern demo``, ``minikern trace --out FILE``,
``minikern replay FILE [--at N]``, ``minikern lab …`` (the graded course:
``lessons.lab.cli``) and ``minikern docs serve [--port N]`` (``minikern.cli.docs``).

``demo`` and ``trace`` run the same workload
(``minikern.cli.workload.run_workload``), picked by ``--seed``: the same seed
gives the same run and a byte-identical trace; ``minikern.cli.demo`` draws it.
``replay`` rebuilds the machine from a trace's header, re-runs the trace on it
(``hypervisor.replay``), reports every divergence and draws the machine after
step N (the last step by default). This package is the cli layer of the
architecture (cli -> lab -> minikern / hypervisor): it may draw, print and
write files; nothing in the core imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from hypervisor import Hypervisor, render, replay
from minikern.cli import demo, docs, workload

__all__ = ["main", "parser", "replay_file", "write_trace"]


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
    sub.add_parser("lab", help="the graded course (minikern lab --help)", add_help=False)
    again = sub.add_parser(
        "replay", help="re-run a trace on a fresh machine, report divergences, draw step N"
    )
    again.add_argument("file", metavar="FILE", help="a trace written by 'minikern trace'")
    again.add_argument(
        "--at", type=int, default=None, metavar="N", help="stop after step N (default: the end)"
    )
    docs.add_parser(sub)
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


def replay_file(path: str, at: int | None, console: Console | None = None) -> int:
    """Replay the trace in ``path`` (its first ``at`` steps, or all) on a
    machine rebuilt from its header; print the divergences, the step reached,
    the memory map and the tree of each vCPU's current base. Exit status: 0
    faithful, 1 divergences or an unreadable trace."""
    out = console if console is not None else Console()
    try:
        trace = replay.parse(Path(path).read_text(encoding="utf-8"))
        if trace.header is None:
            raise ValueError("it has no header line (was it written by 'minikern trace'?)")
        result = replay.run(trace, at=at)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        print(f"minikern replay: cannot replay {path}: {why}", file=sys.stderr)
        return 1
    h = trace.header
    seed = "" if h.seed is None else f", seed {h.seed}"
    out.print(
        f"replayed {result.steps} of {result.total_steps} steps of {path} "
        f"({h.total_frames} frames, {len(h.domains)} domain(s){seed}): "
        f"{len(result.divergences)} divergence(s)"
    )
    for d in result.divergences[:20]:
        out.print(f"  divergence: {d}")
    if result.steps:
        out.print(f"step {result.steps}: {_step_text(trace.steps[result.steps - 1], result.xen)}")
    _draw(result.xen, out)
    return 0 if result.faithful else 1


def _step_text(step: replay.Step, xen: Hypervisor) -> str:
    who = f"d{step.domid}v{step.vcpu}"
    if isinstance(step, replay.HypercallRecord):
        outcome = "ok" if step.result == 0 else f"{step.result} ({step.rule})"
        return f"{who} {step.op}({render.decode_args(step, xen)}) -> {outcome}"
    mode = "user" if step.user else "kernel"
    size = len(step.data) if isinstance(step, replay.StoreRecord) else step.length
    return f"{who} {step.kind} of {size} bytes at {step.va:#x} ({mode} mode)"


def _draw(xen: Hypervisor, out: Console) -> None:
    """The memory map, then the tree of every vCPU's current base."""
    out.print(render.memory_map(xen))
    for dom in xen.domains:
        for vcpu in dom.vcpus:
            bases = [("base", vcpu.cr3), ("user base", vcpu.user_base)]
            for name, mfn in bases:
                if mfn:
                    out.print(f"d{dom.domid}v{vcpu.vcpu_id} {name}:")
                    out.print(render.page_table_tree(xen, mfn, levels=dom.levels))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the command; returns
    the exit status. Bad arguments exit with status 2, as argparse does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lab"]:
        from lessons.lab.cli import main as lab_main

        return lab_main(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "trace":
        return write_trace(args.seed, args.out)
    if args.command == "replay":
        return replay_file(args.file, args.at)
    if args.command == "docs":
        return docs.serve(args.dir, args.port)
    run = demo.show(args.seed)
    return 0 if run.clean() else 1
