"""``make bench``: every benchmark, reported as ratios measured in one run."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

SUITES = [
    "benchmarks.hypervisor_bench",
    "benchmarks.lifecycle",
    "benchmarks.fork",
    "benchmarks.lab",
]


def _table(title: str, rows: list[Any]) -> Table:
    """Rows with name/value/unit/ratio/target/ok (``hypervisor_bench.Row``)."""
    table = Table(title=title, title_justify="left")
    for col in ("measure", "value", "unit", "x baseline", "target", ""):
        table.add_column(col, justify="right" if col in ("value", "x baseline") else "left")
    for row in rows:
        verdict = {True: "[green]ok[/]", False: "[red]MISSED[/]", None: ""}[row.ok]
        ratio = "" if row.ratio is None else f"{row.ratio:.1f}x"
        table.add_row(row.name, f"{row.value:,.1f}", row.unit, ratio, row.target, verdict)
    return table


def _dict_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Rows as dicts: one column per key."""
    table = Table(title=title, title_justify="left")
    for key in rows[0]:
        table.add_column(key.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    return table


def main() -> int:
    console = Console(width=120)
    for name in SUITES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            console.print(f"[yellow]{name}: not available yet[/]")
            continue
        rows = module.run()
        title = name.removeprefix("benchmarks.")
        table = (
            _dict_table(title, rows) if rows and isinstance(rows[0], dict) else _table(title, rows)
        )
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
