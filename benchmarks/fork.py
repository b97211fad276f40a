"""Fork cost: hypercalls, trapped writes and time per fork, minikern's batched
fork against the Linux way (one trapped write per writable page, one
``mmu_update`` per 31 child entries).

Run: ``python -m benchmarks.fork`` (or ``python benchmarks/fork.py``).
"""

from __future__ import annotations

import time
from typing import Any

from hypervisor import Hypervisor
from minikern import Kernel

SIZES = (64, 4096, 65536)
BASE = 0x400000
PAGE = 4096


def measure(pages: int, fork_style: str, strategy: str = "linux") -> dict[str, Any]:
    """Fork a process with ``pages`` writable, populated pages once."""
    nr_pages = max(4096, 2 * pages + 8192)
    xen = Hypervisor(total_frames=nr_pages + 4096)
    k = Kernel.boot(nr_pages=nr_pages, hypervisor=xen, strategy=strategy, fork_style=fork_style)
    p = k.spawn()
    p.mmap(BASE, pages * PAGE, "rw", populate=True)
    xen.trace.enabled = False
    before = xen.stats()
    issued = k.km.hc.issued
    start = time.perf_counter()
    k.fork(p)
    seconds = time.perf_counter() - start
    after = xen.stats()
    return {
        "pages": pages,
        "style": fork_style,
        "strategy": strategy,
        "hypercalls": k.km.hc.issued - issued,
        "calls_incl_multicall_entries": after.total_hypercalls - before.total_hypercalls,
        "trapped_writes": after.trapped_writes - before.trapped_writes,
        "seconds": seconds,
        "us_per_page": seconds / pages * 1e6,
    }


def run(sizes: tuple[int, ...] = SIZES) -> list[dict[str, Any]]:
    """One row per (size, style); ``rel_per_page`` is time per page relative
    to the 4096-page fork of the same style."""
    rows = [measure(n, style) for style in ("batched", "linux") for n in sizes]
    for row in rows:
        ref = [r for r in rows if r["style"] == row["style"] and r["pages"] == 4096]
        row["rel_per_page"] = row["us_per_page"] / ref[0]["us_per_page"] if ref else float("nan")
    return rows


def main() -> None:
    head = f"{'pages':>6} {'style':>8} {'hcalls':>7} {'+entries':>9} {'traps':>6} "
    print(head + f"{'ms/fork':>9} {'us/page':>8} {'rel/page':>9}")
    for r in run():
        print(
            f"{r['pages']:>6} {r['style']:>8} {r['hypercalls']:>7} "
            f"{r['calls_incl_multicall_entries']:>9} {r['trapped_writes']:>6} "
            f"{r['seconds'] * 1e3:>9.1f} {r['us_per_page']:>8.2f} {r['rel_per_page']:>9.2f}"
        )


if __name__ == "__main__":
    main()
