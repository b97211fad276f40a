"""Hidden tests of h05_trapped_writes: random trapped stores, whole entries and halves,
from a 64-bit and a 32-bit PAE guest, from a secret seed."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Host, Plan, battery, check

P, RW, A, PCD = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_ACCESSED, abi._PAGE_PCD
FRAMES = 1024
DOMS = (Dom(64), Dom(64), Dom(64, guest_width=32))
STORES = 30
KINDS = ["data-rw", "data-ro", "table-ro", "table-rw", "foreign", "io", "flags", "high", "clear"]
"""What a step stores; ``high`` is a good entry with junk in its upper half (an mfn beyond
memory): refused whole, its low half fine, its high half alone stored not present (PAE)."""


def random_plan(rng: random.Random) -> Plan:
    """Per guest (d0, d2): STORES stores ``(slot, kind, which, half)`` into a few slots of
    its boot L1; ``half`` 0 is a whole entry, 1 the low half, 2 the high half."""
    guests = []
    for _ in (0, 2):
        slots = rng.sample(range(64, 512), 6)
        steps = []
        for k in range(STORES):
            kind = KINDS[k % len(KINDS)] if k < len(KINDS) else rng.choice(KINDS)
            steps.append([rng.choice(slots), kind, rng.randrange(4), rng.choice([0, 0, 1, 2])])
        rng.shuffle(steps)
        first = rng.choice(slots)  # at least one upper half written over a present entry
        steps[:0] = [[first, "data-ro", rng.randrange(4), 0], [first, "high", 0, 2]]
        guests.append({"slots": slots, "steps": steps})
    return {"guests": guests, "data": rng.sample(range(8, 64), 4)}


def target(h: Host, i: int, kind: str, which: int, data: list[int]) -> int:
    """The entry a step stores (0 for ``clear``)."""
    tables = h.tables(i)
    choices = {
        "data-rw": (data[which], P | RW | A),
        "data-ro": (data[which], P | A),
        "table-ro": (h.mfn(i, tables[which % len(tables)]), P | A),
        "table-rw": (h.mfn(i, tables[which % len(tables)]), P | RW | A),
        "foreign": (h.mfn(1, 8 + which), P | A),
        "io": (0xA0 + which, P | RW),
        "flags": (data[which], P | RW | PCD),
    }
    if kind == "high":
        return 0x3F << 32 | abi.make_pte(data[which], P | A)
    if kind not in choices:
        return 0
    mfn, flags = choices[kind]
    return abi.make_pte(mfn, flags)


@battery(plan=random_plan, frames=FRAMES, guests=DOMS)
def random_stores(h: Host, plan: Plan) -> None:
    """Random kernel stores into a guest's own boot L1, each followed by a look at the
    frames they may map."""
    for i, g in zip((0, 2), plan["guests"], strict=True):
        h.vcpu(i).vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables)
        data = [h.mfn(i, pfn) for pfn in plan["data"]]
        for pfn in plan["data"]:
            h.update_va_mapping(i, h.va(i, pfn), 0)
        at = h.va(i, h.tables(i)[-1])
        with h.case("random"):
            for slot, kind, which, half in g["steps"]:
                val = target(h, i, kind, which, data)
                if half == 0:
                    h.store(i, at + 8 * slot, val)
                else:
                    part = val >> 32 if half == 2 else val & 0xFFFFFFFF
                    h.store(i, at + 8 * slot + 4 * (half - 1), part, size=4)
                h.mmuext(i, abi.MMUEXT_TLB_FLUSH_LOCAL, 0, touch=tuple(data))
            h.audit()


@check(random_stores, points=20, name="ptwr: every store of a random run as on Xen")
def random_run(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("random")
