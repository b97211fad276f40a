"""Public tests of h01_l1_entry_rules: entries written into a live L1 by mmu_update, from an
unprivileged guest (d0), a second guest (d1, whose frames d0 must not reach) and a
privileged one (d2); then the exploit a RW mapping of a page table opens."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Fail, Host, Plan, battery, check

P, RW, US, PCD = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_PCD
A, D = abi._PAGE_ACCESSED, abi._PAGE_DIRTY
DOMS = (Dom(64), Dom(64), Dom(64, privileged=True))
FRAMES = 1024
FIRST_FREE = 6
"""The first pfn the domain builder leaves free in a 64-page domain (P2M, start_info and
four page tables come first)."""


def entry_plan(rng: random.Random) -> Plan:
    """Which empty slots of d0's boot L1 get which entries, and which frames they map."""
    slots = rng.sample(range(64, 512), 28)
    pfns = rng.sample(range(FIRST_FREE, 64), 13)
    return {
        "slots": slots,
        "pfns": pfns,
        "flags": [rng.choice([0, A, A | D, US | A]) for _ in range(28)],
        "table": rng.randrange(4),
        "io_mfn": rng.choice([0xA0, 0xB8, 0xC0, 0xF0, rng.randrange(1, 0x100)]),
        "beyond": FRAMES + rng.randrange(1, 1 << 20),
        "free_mfn": FRAMES - 1 - rng.randrange(64),
        "secret": rng.randbytes(16).hex(),
    }


def pte(mfn: int, flags: int) -> int:
    return abi.make_pte(mfn, flags)


@battery(plan=entry_plan, frames=FRAMES, guests=DOMS)
def entries(h: Host, plan: Plan) -> None:
    """d0 writes entries into empty slots of its boot L1: its own frames (read-only and
    writable), its page tables read-only, d1's frames, a free frame, I/O memory; d2
    (privileged) maps I/O memory and d1's frames by naming d1; last, d0 asks for its page
    tables writable. Each entry is cleared again right after."""
    l1 = h.l1(0)
    slots, pfns, extra = iter(plan["slots"]), iter(plan["pfns"]), iter(plan["flags"])

    def put(i: int, table: int, mfn: int, flags: int, foreigndom: int | None = None) -> None:
        """Entry ``mfn``/``flags`` into a fresh slot of ``table``, then the slot cleared."""
        slot = next(slots)
        h.set_entry(i, table, slot, pte(mfn, flags | next(extra)), foreigndom=foreigndom)
        h.set_entry(i, table, slot, 0, touch=(mfn,))

    with h.case("own"):
        put(0, l1, h.mfn(0, next(pfns)), P)
        put(0, l1, h.mfn(0, next(pfns)), P | RW)
        twice = h.mfn(0, next(pfns))
        h.set_entry(0, l1, next(slots), pte(twice, P | RW))
        h.set_entry(0, l1, next(slots), pte(twice, P | RW))  # a second writable mapping
        h.set_entry(0, l1, next(slots), pte(twice, P))
        for pfn in h.tables(0):
            put(0, l1, h.mfn(0, pfn), P)  # a page table, read-only: fine
        h.audit()
    with h.case("foreign-frame"):
        put(0, l1, h.mfn(0, next(pfns)), P)  # d0's own frame, for comparison
        put(0, l1, h.mfn(1, next(pfns)), P)
        put(0, l1, h.mfn(1, next(pfns)), P | RW)
        put(0, l1, h.mfn(1, next(pfns)), P, foreigndom=1)
        put(2, h.l1(2), h.mfn(1, next(pfns)), P)  # privileged, but FD is itself
    with h.case("free-frame"):
        put(0, l1, plan["free_mfn"], P)
    with h.case("io"):
        put(0, l1, plan["io_mfn"], P | RW)
        put(0, l1, plan["beyond"], P)
    with h.case("io-privileged"):
        put(2, h.l1(2), plan["io_mfn"], P | RW)
        put(2, h.l1(2), plan["io_mfn"], P | RW | PCD)
    with h.case("foreign-privileged"):
        put(2, h.l1(2), h.mfn(1, next(pfns)), P | RW, foreigndom=1)
    # last: a version that lets these through leaves the L1 broken for what follows
    with h.case("rw-pagetable"):
        table = h.tables(0)[plan["table"]]
        put(0, l1, h.mfn(0, table), P | RW)
        put(0, l1, h.mfn(0, table), P)  # read-only is fine
        put(0, l1, l1, P | RW)  # the L1 itself


@check(entries, points=10, name="own: a guest maps its own frames, with the right counts")
def own_frames(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("own")


@check(entries, points=10, name="rw: a page table is never mapped writable")
def no_writable_pagetable(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("rw-pagetable")


@check(entries, points=10, name="owner: another domain's frame, or a free one, is refused")
def owner_checked(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("foreign-frame", "free-frame")


@check(entries, points=5, name="io: I/O memory only with I/O privileges, stored uncached")
def io_checked(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("io", "io-privileged")


@check(entries, points=5, name="dom0: a privileged domain maps another's frame by naming it")
def foreign_by_name(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("foreign-privileged")


def exploit_plan(rng: random.Random) -> Plan:
    """Where the attacker maps its L1, which slot it forges, what the victim keeps."""
    window, forged = rng.sample(range(64, 512), 2)
    return {
        "window": window,
        "forged": forged,
        "victim_pfn": rng.randrange(FIRST_FREE, 64),
        "own_pfn": rng.randrange(FIRST_FREE, 64),
        "secret": rng.randbytes(16).hex(),
    }


@battery(plan=exploit_plan, frames=FRAMES, guests=(Dom(64), Dom(64)))
def exploit(h: Host, plan: Plan) -> None:
    """The attack a RW mapping of a page table opens, written as the guest d0 would: map
    its own L1 writable, write an entry into it by hand (no hypercall, so no check) that
    maps d1's frame, and read d1's secret through it."""
    secret = bytes.fromhex(plan["secret"])
    victim = plan["victim_pfn"]
    h.store(1, h.va(1, victim), int.from_bytes(secret[:8], "little"))
    h.store(1, h.va(1, victim) + 8, int.from_bytes(secret[8:], "little"))
    l1 = h.l1(0)
    window = h.va(0, plan["window"])  # where d0 wants its own L1, writable
    with h.case("exploit"):
        h.set_entry(0, l1, plan["window"], pte(h.mfn(0, plan["own_pfn"]), P | RW))  # fine
        h.set_entry(0, l1, plan["window"], 0)
        h.set_entry(0, l1, plan["window"], pte(l1, P | RW | A | D))
        h.store(0, window + 8 * plan["forged"], pte(h.mfn(1, victim), P | RW | A))
        h.load(0, h.va(0, plan["forged"]), 16)


@check(exploit, points=10, name="exploit: d0 cannot map its own L1 writable and read d1's secret")
def exploit_refused(c: Comparison, plan: Plan) -> None:
    read = [d.your_value for d in c.diverging("exploit") if d.kind == "load"]
    if plan["secret"] in read:
        first = c.diverging("exploit")[0]
        raise Fail(
            f"the exploit worked: d0 read d1's secret {plan['secret']} through an entry it "
            f"wrote by hand into its own L1. It could, because {first.message(c.who)}",
            first.rule,
        )
    c.expect_agrees("exploit")
