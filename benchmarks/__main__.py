"""``make bench``: every benchmark, reported as ratios measured in one run."""

from __future__ import annotations

import importlib
import sys

from rich.console import Console
from rich.table import Table

SUITES = ["benchmarks.hypervisor_bench", "benchmarks.fork"]


def main() -> int:
    console = Console()
    for name in SUITES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            console.print(f"[yellow]{name}: not available yet[/]")
            continue
        rows = module.run()
        table = Table(title=name.removeprefix("benchmarks."), title_justify="left")
        for col in ("measure", "value", "unit", "x baseline", "target", ""):
            table.add_column(col, justify="right" if col in ("value", "x baseline") else "left")
        for row in rows:
            verdict = {True: "[green]ok[/]", False: "[red]MISSED[/]", None: ""}[row.ok]
            ratio = "" if row.ratio is None else f"{row.ratio:.1f}x"
            table.add_row(row.name, f"{row.value:,.1f}", row.unit, ratio, row.target, verdict)
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
