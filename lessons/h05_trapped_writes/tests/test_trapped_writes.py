"""Public tests of h05_trapped_writes: plain kernel stores into empty slots of a guest's own
boot L1, through its read-only direct-map address, which Xen traps and emulates -- from a
64-bit guest (d0) and a 32-bit PAE guest (d2), d1 being another domain whose frames they
must not reach; then the attack an unchecked emulation opens."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Fail, Host, Plan, battery, check

P, RW, A, PCD = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_ACCESSED, abi._PAGE_PCD
NX = 1 << 63
FRAMES = 1024
DOMS = (Dom(64), Dom(64), Dom(64, guest_width=32))


def pte(mfn: int, flags: int) -> int:
    return abi.make_pte(mfn, flags)


def writable_pagetables(h: Host, i: int) -> None:
    """Domain ``i`` turns on VMASST_TYPE_writable_pagetables (the same in both runs)."""
    h.vcpu(i).vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables)


def boot_l1_va(h: Host, i: int) -> int:
    """Where domain ``i``'s (only) boot L1 is mapped, read-only: a store there traps."""
    return h.va(i, h.tables(i)[-1])


def look(h: Host, *mfns: int) -> None:
    """A harmless hypercall whose digest shows ``mfns``' counts."""
    h.mmuext(0, abi.MMUEXT_TLB_FLUSH_LOCAL, 0, touch=mfns)


def store_plan(rng: random.Random) -> Plan:
    """The empty slots stored into, the data frames mapped, the I/O frame tried."""
    return {
        "slots": rng.sample(range(64, 512), 12),
        "data": rng.sample(range(8, 64), 6),
        "io_mfn": rng.choice([0xA0, 0xB8, 0xC0, rng.randrange(1, 0x100)]),
        "beyond": FRAMES + rng.randrange(1, 1 << 20),
    }


@battery(plan=store_plan, frames=FRAMES, guests=DOMS)
def stores(h: Host, plan: Plan) -> None:
    """d0 stores entries into empty slots of its boot L1: its own data frames writable and
    read-only (and reads through them), one of its page tables read-only, a replacement and
    a removal; then entries Xen refuses: its page tables writable, d1's frame, I/O memory, a
    frame beyond memory, a cache attribute it may not set."""
    writable_pagetables(h, 0)
    at = boot_l1_va(h, 0)
    slots = iter(plan["slots"])
    data = [h.mfn(0, pfn) for pfn in plan["data"]]
    for pfn in plan["data"]:  # no other mapping: each frame's counts are the test's own
        h.update_va_mapping(0, h.va(0, pfn), 0)
    with h.case("good"):
        s1, s2, s3 = next(slots), next(slots), next(slots)
        h.store(0, at + 8 * s1, pte(data[0], P | RW | A))
        h.store(0, h.va(0, s1), 0x600D)  # a store through the new mapping
        h.load(0, h.va(0, s1))
        h.store(0, at + 8 * s2, pte(data[1], P | A))
        h.load(0, h.va(0, s2))
        h.store(0, at + 8 * s3, pte(h.mfn(0, h.tables(0)[1]), P | A))  # an L3, read-only
        h.load(0, h.va(0, s3))
        look(h, data[0], data[1])
    with h.case("replace"):
        h.store(0, at + 8 * s1, pte(data[2], P | RW | A))  # the old entry's refs go
        look(h, data[0], data[2])
        h.pin(0, 1, data[0])  # possible only if nothing maps it writable any more
        h.store(0, at + 8 * s2, 0)
        look(h, data[1])
    with h.case("refused"):
        for target, flags in [
            (h.l1(0), P | RW | A),  # the L1 itself, writable
            (h.mfn(0, h.tables(0)[0]), P | RW | A),  # the L4, writable
            (h.mfn(1, plan["data"][3]), P | A),  # d1's frame
            (plan["io_mfn"], P | RW),  # I/O memory, no privilege
            (plan["beyond"], P),  # no such frame
            (data[3], P | RW | PCD),  # a cache attribute d0 may not set
        ]:
            slot = next(slots)
            h.store(0, at + 8 * slot, pte(target, flags))
            h.load(0, h.va(0, slot))
        look(h, h.l1(0), data[3])
    with h.case("partial"):
        slot = next(slots)
        h.store(0, at + 8 * slot, pte(data[4], P | A), size=4)  # the low half alone
        h.store(0, at + 8 * slot + 4, NX >> 32, size=4)  # then NX, in the high half
        h.load(0, h.va(0, slot))
        look(h, data[4])
    h.audit()


@check(stores, points=10, name="good: an entry is emulated with its references taken")
def good_entries(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("good", "partial")


@check(stores, points=10, name="replace: the old entry's references are dropped")
def old_dropped(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("replace")


@check(stores, points=10, name="checked: what mmu_update refuses, a trapped store does not do")
def refusals(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("refused", rule="lesson.ptwr-unchecked")


def pae_plan(rng: random.Random) -> Plan:
    return {"slots": rng.sample(range(64, 512), 4), "data": rng.sample(range(16, 64), 3)}


@battery(plan=pae_plan, frames=FRAMES, guests=DOMS)
def pae_halves(h: Host, plan: Plan) -> None:
    """d2, a 32-bit PAE guest, writes 8-byte entries as two 4-byte stores: in order, the
    wrong way round (the upper half first, which leaves an invalid entry in between), and
    a lower half that is invalid on its own."""
    writable_pagetables(h, 2)
    at = boot_l1_va(h, 2)
    data = [h.mfn(2, pfn) for pfn in plan["data"]]
    for pfn in plan["data"]:
        h.update_va_mapping(2, h.va(2, pfn), 0)
    s1, s2, s3, s4 = plan["slots"]
    with h.case("pae"):
        h.store(2, at + 8 * s1, pte(data[0], P | RW | A), size=4)  # in order
        h.store(2, at + 8 * s1 + 4, 0, size=4)
        h.load(2, h.va(2, s1))
        h.store(2, at + 8 * s2, pte(data[1], P | A), size=4)
        h.store(2, at + 8 * s2 + 4, 0x3F, size=4)  # names a frame beyond memory
        h.load(2, h.va(2, s2))
        h.store(2, at + 8 * s3, pte(h.l1(2), P | RW | A), size=4)  # a lower half: refused
        h.store(2, at + 8 * s4, pte(data[2], P | A))  # a whole entry
        h.mmuext(2, abi.MMUEXT_TLB_FLUSH_LOCAL, 0, touch=tuple(data))
        h.audit()


@check(pae_halves, points=10, name="pae: an upper half first is stored, not present")
def upper_half(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("pae", rule="lesson.pae-upper-half")


# -- the attack -----------------------------------------------------------------------------


def exploit_plan(rng: random.Random) -> Plan:
    window, forged = rng.sample(range(64, 512), 2)
    return {
        "window": window,
        "forged": forged,
        "victim_pfn": rng.randrange(8, 64),
        "secret": rng.randbytes(8).hex(),
    }


@battery(plan=exploit_plan, frames=FRAMES, guests=DOMS)
def exploit(h: Host, plan: Plan) -> None:
    """Written as the guest d0 would: one trapped store maps d0's own L1, writable, at
    ``window``; through it a plain store (no fault, so Xen never sees it) writes an entry
    that maps d1's frame; d0 reads d1's secret."""
    victim = plan["victim_pfn"]
    h.store(1, h.va(1, victim), int(plan["secret"], 16))
    writable_pagetables(h, 0)
    l1 = h.l1(0)
    window = h.va(0, plan["window"])
    with h.case("exploit"):
        h.store(0, boot_l1_va(h, 0) + 8 * plan["window"], pte(l1, P | RW | A))
        h.store(0, window + 8 * plan["forged"], pte(h.mfn(1, victim), P | A))
        h.load(0, h.va(0, plan["forged"]))


@check(exploit, points=10, name="exploit: a trapped store cannot map d0's own L1 writable")
def exploit_refused(c: Comparison, plan: Plan) -> None:
    secret = int(plan["secret"], 16).to_bytes(8, "little").hex()
    stolen = [d for d in c.diverging("exploit") if d.kind == "load" and d.yours]
    if stolen and stolen[0].yours is not None and stolen[0].yours.get("value") == secret:
        first = c.diverging("exploit")[0]
        raise Fail(
            f"the exploit worked: d0 read d1's secret {secret} through an entry it wrote "
            f"with a plain store into its own L1. It could, because {first.message(c.who)}",
            "lesson.ptwr-unchecked",
        )
    c.expect_agrees("exploit", rule="lesson.ptwr-unchecked")
