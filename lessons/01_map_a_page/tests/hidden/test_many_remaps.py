"""Hidden tests of 01_map_a_page: a chain of remaps with the full flush."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload
from minikern.kmem import KERNEL_PROT

NR_PAGES = 512


def chain(rng: random.Random) -> Plan:
    frames = rng.sample(range(NR_PAGES - 64, NR_PAGES), rng.randint(3, 6))
    return {"frames": frames, "data": [rng.randbytes(8).hex() for _ in frames]}


@workload(plan=chain, nr_pages=NR_PAGES)
def rotate(g: Guest, plan: Plan) -> None:
    """Each frame's address is remapped to the next frame (a rotation), read-only."""
    from minikern.kmem import map_page

    k = g.boot()
    km = k.km
    frames = plan["frames"]
    for pfn, hexdata in zip(frames, plan["data"], strict=True):
        km.vcpu.write(km.va(pfn), bytes.fromhex(hexdata))
        km.vcpu.read(km.va(pfn), 8)
    for i, pfn in enumerate(frames):
        nxt = frames[(i + 1) % len(frames)]
        map_page(km, km.va(pfn), nxt, KERNEL_PROT & ~abi._PAGE_RW, abi.UVMF_TLB_FLUSH)
    km.hc.flush()


@check(rotate, points=10, name="rotate: each address reads the next frame, read-only")
def rotated(m: Machine, plan: Plan) -> None:
    expect(m.completed, "the workload did not finish")
    frames = plan["frames"]
    base = int(m.domain.start_info.virt_base)
    for i, pfn in enumerate(frames):
        va = base + pfn * abi.PAGE_SIZE
        leaf = m.walk(m.vcpu.cr3, va, user=False)
        nxt = frames[(i + 1) % len(frames)]
        expect(
            leaf is not None and abi.pte_mfn(leaf) == m.mfn_of(nxt),
            f"{va:#x} does not map frame {nxt:#x}",
            "lesson.wrong-frame",
        )
        expect(leaf is not None and not leaf & abi._PAGE_RW, f"{va:#x} is still writable")
        got = m.vcpu.read(va, 8)
        expect(
            got == bytes.fromhex(plan["data"][(i + 1) % len(frames)]),
            f"{va:#x} reads a stale page",
            "lesson.stale-tlb",
        )
