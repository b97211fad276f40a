"""d02: process 1 maps a run of pages, writes and reads them, unmaps one and maps it
again; flush_tlb queues nothing, so the CPU keeps the old translation and the process
reads the old frame's bytes where a fresh page should read zeros."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.diagnosis import Scene, ask, guest_break, incident
from lessons.lab.testing import Plan

PAGE = 4096


def run_of_pages(rng: random.Random) -> Plan:
    """Where the run is, how long, what each page holds, and which page goes and comes
    back."""
    pages = rng.randint(2, 6)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(rng.randint(4, 16)).hex() for _ in range(pages)],
        "again": rng.randrange(pages),
        "reads": rng.randint(1, 3),
        "frames": rng.getrandbits(32),
    }


@incident(plan=run_of_pages)
def stale_tlb(s: Scene, plan: Plan) -> None:
    """Process 1 unmaps a page and maps it again, and reads old bytes there."""
    k = s.boot()
    s.scatter_free_frames(plan["frames"])
    p = k.spawn()
    base, n = plan["base"], len(plan["data"])
    p.mmap(base, n * PAGE, "rw")
    s.say(f"process 1 mapped {n} pages at {base:#x}")
    for i, hexdata in enumerate(plan["data"]):
        p.write(base + i * PAGE, bytes.fromhex(hexdata))
        s.say(f"process 1 wrote {hexdata} at {base + i * PAGE:#x}")
    for _ in range(plan["reads"]):
        p.read(base, n * PAGE)
        s.say(f"process 1 read all {n} pages")
    va = base + plan["again"] * PAGE
    old = int(k.km.p2m[p.mm.ptes[va >> 12]])
    no_flush = guest_break("05_update_mappings", "flush_forgotten", "flush_tlb")
    with s.broken("minikern.vm:flush_tlb", no_flush):
        mark = len(s.records)
        p.munmap(va, PAGE)
        s.say(f"process 1 unmapped {va:#x}")
        cleared = next(r for r in s.records[mark:] if r.kind == "hypercall" and r.op != "multicall")
        p.mmap(va, PAGE, "rw")
        s.say(f"process 1 mapped {va:#x} again (a fresh page reads zeros)")
        got = p.read(va, 16)
        s.say(f"process 1 reads 16 bytes at {va:#x}: {got.hex()}")
    s.tell(
        "Process 1 maps a run of pages, fills and reads them, then unmaps one page and "
        "maps it again. Xen refused nothing, yet the process reads old bytes where a "
        "fresh page must read zeros. Find where the old translation should have gone."
    )
    assert got != bytes(16), "the break did not show: the page read as zeros"
    s.answer(
        operation=s.number(cleared),
        va=va,
        frame=old,
        step="minikern.vm:flush_tlb",
    )
    assert abi.PAGE_SIZE == PAGE


operation = ask(stale_tlb, "operation", points=2, name="operation: the update that needed a flush")
va = ask(stale_tlb, "va", points=5, name="va: the page read through a stale translation")
frame = ask(stale_tlb, "frame", points=5, name="frame: the frame the stale translation held")
step = ask(stale_tlb, "step", points=1, name="step: the recipe step at fault")
