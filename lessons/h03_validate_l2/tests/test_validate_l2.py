"""Public tests of h03_validate_l2: a guest (d0) writes L2 tables in its own free frames and
pins them -- good ones, ones with holes, ones with one bad entry somewhere -- and then
unpins them; a second guest (d1) owns the frames d0 must not reach. Then the attacks a
wrong validation opens, and the frame a leak takes from the guest."""

from __future__ import annotations

import random
from collections.abc import Iterator

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Fail, Host, Plan, battery, check

P, RW, US, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_ACCESSED
PCD = abi._PAGE_PCD
DOMS = (Dom(96), Dom(64))
FRAMES = 1024
FIRST_FREE = 6
"""The first pfn the domain builder leaves free (P2M, start_info, four tables first)."""
L3_OF_BOOT, L2_OF_BOOT = 1, 2
"""Indexes of the boot L3 and L2 in ``h.tables(i)`` of a 64-bit domain (L4, L3, L2, L1)."""
FREE_L3_SLOT = 511
"""The boot tree maps the kernel at 0xffffffff80000000 (L3 slot 510): slot 511 is empty."""


def pte(mfn: int, flags: int) -> int:
    return abi.make_pte(mfn, flags)


def l2_plan(rng: random.Random) -> Plan:
    """Frames for the tables, the slots their entries go in, d1's frame."""
    return {
        "pfns": rng.sample(range(FIRST_FREE, 96), 24),
        "slots": sorted(rng.sample(range(1, 511), 8)),
        "foreign": rng.randrange(FIRST_FREE, 64),
    }


class Frames:
    """d0's free frames handed out in the plan's order: (mfn, va where the builder mapped
    it writable)."""

    def __init__(self, h: Host, pfns: list[int]) -> None:
        self.h, self.pfns = h, iter(pfns)

    def take(self) -> tuple[int, int]:
        pfn = next(self.pfns)
        return self.h.mfn(0, pfn), self.h.va(0, pfn)


def write_table(h: Host, va: int, entries: dict[int, int]) -> None:
    """Plain stores of ``entries`` (slot -> entry) into the frame mapped writable at ``va``."""
    for slot, e in entries.items():
        h.store(0, va + 8 * slot, e)


def table(h: Host, frames: Frames, entries: dict[int, int]) -> int:
    """A frame of d0 holding ``entries``, then unmapped (no writable mapping left)."""
    mfn, va = frames.take()
    write_table(h, va, entries)
    h.update_va_mapping(0, va, 0)
    return mfn


def pin_and_unpin(h: Host, l2: int, touch: tuple[int, ...]) -> None:
    h.mmuext(0, abi.MMUEXT_PIN_L2_TABLE, l2, touch=touch)
    h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, l2, touch=touch)
    h.audit()


@battery(plan=l2_plan, frames=FRAMES, guests=DOMS)
def l2_tables(h: Host, plan: Plan) -> None:
    """d0 pins L2s whose entries name L1s (empty ones, one with entries, one named twice, a
    read-only entry naming the L2 itself), with holes anywhere; L2s with one bad entry; and
    L2s that fail after entries that took references."""
    frames = Frames(h, plan["pfns"])
    s: Iterator[int] = iter(plan["slots"])
    a, b, c, d = next(s), next(s), next(s), next(s)
    data, data_va = frames.take()
    x1 = table(h, frames, {})
    x2 = table(h, frames, {7: pte(data, P | RW | A), 300: pte(data, P | A)})
    x3 = table(h, frames, {})
    h.update_va_mapping(0, data_va, 0)  # data: mapped writable by x2 only, later
    with h.case("valid"):
        m, va_m = frames.take()
        write_table(h, va_m, {0: pte(x1, P | RW | A), a: pte(x2, P | RW | A)})
        write_table(h, va_m, {b: pte(x1, P | A), 511: pte(x3, P | RW | US | A)})
        write_table(h, va_m, {c: pte(m, P | A)})  # a linear entry: the L2 itself, read-only
        h.update_va_mapping(0, va_m, 0)
        h.mmuext(0, abi.MMUEXT_PIN_L2_TABLE, m, touch=(x1, x2, x3, data))
    with h.case("adjusted"):
        h.update_va_mapping(0, va_m, pte(m, P | A))  # read-only: d0 reads its own L2
        for slot in (0, a, b, c, 511):
            h.load(0, va_m + 8 * slot, 8)
        h.update_va_mapping(0, va_m, 0)
    with h.case("valid"):
        h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, m, touch=(x1, x2, x3, data))
        h.audit()
    with h.case("holes"):
        m = table(h, frames, {a: pte(x1, P | RW | A), d: pte(x2, P | A), 511: pte(x3, P | A)})
        pin_and_unpin(h, m, (x1, x2, x3, data))
    with h.case("refused"):
        f, _ = frames.take()  # still mapped writable
        foreign = h.mfn(1, plan["foreign"])
        other_l2, va_other = frames.take()
        for bad in (pte(f, P | RW | A), pte(foreign, P | A), pte(x1, P | RW | A | PCD)):
            m = table(h, frames, {b: bad})
            pin_and_unpin(h, m, (f, foreign, x1))
        h.update_va_mapping(0, va_other, 0)  # other_l2 unmapped ...
        h.pin(0, 2, other_l2)  # ... and pinned as an (empty) L2
        m = table(h, frames, {511: pte(other_l2, P | RW | A)})  # an L2 is no L1
        pin_and_unpin(h, m, (other_l2,))
    with h.case("rollback"):
        h.pin(0, 1, x1)  # x1 is in use already; x2 and x3 are not
        entries = {a: pte(x1, P | RW | A), b: pte(x2, P | RW | A), c: pte(x3, P | A)}
        m = table(h, frames, entries | {d: pte(h.mfn(1, plan["foreign"]), P | A)})
        pin_and_unpin(h, m, (x1, x2, x3, data))
        m = table(h, frames, entries | {d: pte(x2, P | RW | PCD)})
        pin_and_unpin(h, m, (x1, x2, x3, data))
    with h.case("rollback-in-use"):
        # x1 (pinned) fails at slot 0; then x1 first, and x1 again with bad flags.
        m = table(h, frames, {0: pte(x1, P | RW | A | PCD)})
        pin_and_unpin(h, m, (x1,))
        m = table(h, frames, {0: pte(x1, P | RW | A), a: pte(x1, P | RW | A | PCD)})
        pin_and_unpin(h, m, (x1,))
        h.unpin(0, x1)


@check(l2_tables, points=10, name="validate: every present entry takes its L1's references")
def validates(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("valid")


@check(l2_tables, points=5, name="adjust: each entry is stored as Xen adjusts it (USER added)")
def adjusted(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("adjusted", rule="lesson.adjust")


@check(l2_tables, points=10, name="slots: every slot is checked, holes or not")
def every_slot(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("holes")


@check(l2_tables, points=10, name="refuse: one bad entry refuses the whole L2")
def refuses(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("refused")


@check(l2_tables, points=10, name="rollback: a refused L2 gives back what its entries took")
def rolls_back(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("rollback")


@check(l2_tables, points=5, name="rollback: ... and nothing its failing entry did not take")
def rolls_back_exactly(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("rollback-in-use")


def exploit_plan(rng: random.Random) -> Plan:
    """The attacker's frames, the slot it forges, the victim's frame and secret."""
    return {
        "pfns": rng.sample(range(FIRST_FREE, 96), 6),
        "victim_pfn": rng.randrange(FIRST_FREE, 64),
        "secret": rng.randbytes(16).hex(),
        "forged": rng.randrange(512),
    }


@battery(plan=exploit_plan, frames=FRAMES, guests=DOMS)
def exploit(h: Host, plan: Plan) -> None:
    """d0 against d1's secret. One: make a live L1 lose its type through a refused L2 (the
    rollback puts one entry too many), map it writable and forge an entry. Two: hide a
    frame it maps writable behind an empty slot of a new L2, hook that L2 into its tree and
    forge an entry in the frame. Three: what a leak costs d0 itself -- a frame named by a
    refused L2 must stay d0's to write."""
    secret = bytes.fromhex(plan["secret"])
    victim_va = h.va(1, plan["victim_pfn"])
    h.store(1, victim_va, int.from_bytes(secret[:8], "little"))
    h.store(1, victim_va + 8, int.from_bytes(secret[8:], "little"))
    victim = pte(h.mfn(1, plan["victim_pfn"]), P | RW | A)
    frames = Frames(h, plan["pfns"])
    boot_l2 = h.mfn(0, h.tables(0)[L2_OF_BOOT])
    boot_l3 = h.mfn(0, h.tables(0)[L3_OF_BOOT])
    forged = plan["forged"]
    with h.case("exploit-drop-live-l1"):
        x, va_x = frames.take()
        h.update_va_mapping(0, va_x, 0)
        h.set_entry(0, boot_l2, 1, pte(x, P | RW | A), level=2)  # x: an L1 of d0's tree
        m = table(h, frames, {0: pte(x, P | RW | A | PCD)})  # refused: bad flags
        h.mmuext(0, abi.MMUEXT_PIN_L2_TABLE, m, touch=(x,))
        h.update_va_mapping(0, va_x, pte(x, P | RW | A))  # x writable?
        h.store(0, va_x + 8 * forged, victim)
        h.load(0, h.va(0, 512 + forged), 16)  # boot-L2 slot 1, through x
    with h.case("exploit-behind-a-hole"):
        f, va_f = frames.take()  # mapped writable all along
        m = table(h, frames, {1: pte(f, P | RW | A)})  # slot 0 empty
        h.set_entry(0, boot_l3, FREE_L3_SLOT, pte(m, P | RW | A), level=3, touch=(f,))
        h.store(0, va_f + 8 * forged, victim)
        h.load(0, 0xFFFFFFFFC0000000 + (1 << 21) + 4096 * forged, 16)
    with h.case("leak-keeps-frame"):
        x, va_x = frames.take()
        h.update_va_mapping(0, va_x, 0)
        m = table(h, frames, {0: pte(x, P | RW | A), 1: pte(h.mfn(1, 0), P | A)})
        h.mmuext(0, abi.MMUEXT_PIN_L2_TABLE, m, touch=(x,))
        h.update_va_mapping(0, va_x, pte(x, P | RW | A))  # x is plain memory again
        h.audit()


def expect_no_theft(c: Comparison, plan: Plan, label: str, how: str) -> None:
    """The attack labelled ``label`` must go as on Xen; if d0 read the secret, say so."""
    stolen = [d for d in c.diverging(label) if d.kind == "load" and d.your_value == plan["secret"]]
    if stolen:
        first = c.diverging(label)[0]
        raise Fail(
            f"the exploit worked: d0 read d1's secret {plan['secret']} {how}. It could, "
            f"because {first.message(c.who)}",
            first.rule,
        )
    c.expect_agrees(label)


@check(exploit, points=5, name="exploit: a refused L2 cannot take a live L1's type away")
def exploit_drop_live_l1(c: Comparison, plan: Plan) -> None:
    how = "by mapping writable a live L1 a refused L2 had devalidated"
    expect_no_theft(c, plan, "exploit-drop-live-l1", how)


@check(exploit, points=5, name="exploit: a writable frame cannot hide behind an empty slot")
def exploit_behind_a_hole(c: Comparison, plan: Plan) -> None:
    how = "through a frame it maps writable, hooked in as an L1 behind an empty slot"
    expect_no_theft(c, plan, "exploit-behind-a-hole", how)


@check(exploit, points=5, name="leak: a frame named by a refused L2 stays writable memory")
def leak_keeps_frame(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("leak-keeps-frame")
