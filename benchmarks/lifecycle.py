"""A kernel's whole life, timed, and the memory of a big one.

* **lifecycle**: boot (a new machine and domain of 2,048 pages), spawn, mmap 64
  pages (populated), fork, one copy-on-write store in the child, exit of both.
  Reported as the median time over many runs and as a multiple of the
  baseline of ``hypervisor_bench`` (one 64-bit store into a memoryview),
  measured in the same run just before each lifecycle, so the figure means
  the same on a slow machine. Both are CPU time of this process
  (``time.process_time_ns``), so other processes on a busy machine do not
  count.
* **65,536 pages mapped**: a kernel whose process maps 65,536 populated pages;
  the peak resident memory (VmHWM) of a fresh process that does only that.

Run: ``python -m benchmarks.lifecycle``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks.hypervisor_bench import Row
from minikern import Kernel

__all__ = ["lifecycle", "run"]

RUNS = 21
BASE = 0x400000
PAGES = 64
BEFORE_RATIO = 200_000
"""The lifecycle's median as a multiple of the baseline before issue 6's work:
issue 6's own figure ("~28 ms = 200 k baseline stores"). Measured by
:func:`bench_lifecycle` against commit 2718b1c, alternating with the current
code, on 2026-11-26: 187,000x to 201,000x (median 194,000x), so the target is
half of the issue's figure."""


def baseline_ns(passes: int = 9) -> float:
    """CPU ns per 64-bit store into a memoryview of a bytearray (best of
    ``passes`` passes over 32,768 words)."""
    words = memoryview(bytearray(8 * 512 * 64)).cast("Q")
    n = len(words)
    best = float("inf")
    for _ in range(passes):
        t0 = time.process_time_ns()
        val = 0x1234567 << 12 | 3
        for i in range(n):
            words[i] = val
        best = min(best, (time.process_time_ns() - t0) / n)
    return best


def lifecycle() -> int:
    """One whole life; its CPU nanoseconds."""
    t0 = time.process_time_ns()
    k = Kernel.boot(nr_pages=2048)
    p = k.spawn()
    p.mmap(BASE, PAGES * 4096, "rw", populate=True)
    child = k.fork(p)
    child.write(BASE, b"copy")
    k.exit(child)
    k.exit(p)
    return time.process_time_ns() - t0


def bench_lifecycle() -> list[Row]:
    """The lifecycle's median time, and the median of its multiples of the
    baseline, each run paired with a baseline measured just before it: a
    machine whose speed drifts during the runs (a busy CI host) skews
    neither side of a pair."""
    for _ in range(3):
        lifecycle()
    times: list[int] = []
    ratios: list[float] = []
    for _ in range(RUNS):
        base = baseline_ns(passes=3)
        ns = lifecycle()
        times.append(ns)
        ratios.append(ns / base)
    ns, ratio = statistics.median(times), statistics.median(ratios)
    target = BEFORE_RATIO / 2
    return [
        Row(
            "lifecycle: boot+spawn+mmap 64+fork+CoW+exit",
            ns / 1e6,
            "ms",
            ratio,
            f"<= {target:,.0f}x (half of {BEFORE_RATIO:,}x)",
            ratio <= target,
        )
    ]


_MAPPED = """
import json
from minikern import Kernel

def hwm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

k = Kernel.boot(nr_pages=65536 + 8192)
p = k.spawn()
p.mmap(0x400000, 65536 * 4096, "rw", populate=True)
print(json.dumps({"hwm_kib": hwm_kib()}))
"""


def bench_mapped_memory() -> list[Row]:
    """Peak memory of a fresh process whose kernel maps 65,536 pages."""
    out = subprocess.run(
        [sys.executable, "-c", _MAPPED], capture_output=True, text=True, check=True
    )
    mib = json.loads(out.stdout)["hwm_kib"] / 1024
    return [
        Row("peak memory, 65,536 pages mapped (VmHWM)", mib, "MiB", None, "< 120 MiB", mib < 120)
    ]


def run() -> list[Row]:
    return [*bench_lifecycle(), *bench_mapped_memory()]


if __name__ == "__main__":
    for row in run():
        print(row)
