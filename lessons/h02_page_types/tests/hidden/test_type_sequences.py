"""Hidden tests of h02_page_types: random sequences of what a guest does to a handful of its
frames -- map and unmap them, pin and unpin them at any level, write entries naming each
other, hook them into its tree and out again -- drawn from the secret seed. Xen's answer to
every step, and every frame's counts and type after it, must be the grader's."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Comparison, Dom, Host, Plan, battery, check

P, RW, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_ACCESSED
FIRST_FREE = 6
L3_OF_BOOT, L2_OF_BOOT = 1, 2
ACTIONS = (
    "unmap",
    "map-rw",
    "map-ro",
    "pin1",
    "pin2",
    "pin3",
    "unpin",
    "entry-rw",
    "entry-ro",
    "hook2",
    "hook2-ro",
    "unhook2",
    "hook3",
    "unhook3",
)


def sequence_plan(rng: random.Random) -> Plan:
    """Six frames and sixty steps, each an action on one frame (and maybe a second)."""
    steps = [
        {
            "action": rng.choice(ACTIONS),
            "frame": rng.randrange(6),
            "other": rng.randrange(6),
            "slot": rng.randrange(512),
            "hook": rng.randrange(1, 4),
        }
        for _ in range(60)
    ]
    return {"pfns": rng.sample(range(FIRST_FREE, 64), 6), "steps": steps}


@battery(plan=sequence_plan, frames=1024, guests=(Dom(64),))
def sequences(h: Host, plan: Plan) -> None:
    """Sixty random steps on six frames of one guest; the audit every ten."""
    mfns = [h.mfn(0, p) for p in plan["pfns"]]
    vas = [h.va(0, p) for p in plan["pfns"]]
    l2, l3 = h.mfn(0, h.tables(0)[L2_OF_BOOT]), h.mfn(0, h.tables(0)[L3_OF_BOOT])
    touch = tuple(mfns)
    h.case("sequence")
    for n, step in enumerate(plan["steps"]):
        f, va, g = mfns[step["frame"]], vas[step["frame"]], mfns[step["other"]]
        action = step["action"]
        if action == "unmap":
            h.set_entry(0, h.l1(0), plan["pfns"][step["frame"]], 0, touch=touch)
        elif action in ("map-rw", "map-ro"):
            flags = P | A | (RW if action == "map-rw" else 0)
            h.update_va_mapping(0, va, abi.make_pte(f, flags))
        elif action.startswith("pin"):
            h.mmuext(0, int(action[3]) - 1, f, touch=touch)
        elif action == "unpin":
            h.mmuext(0, abi.MMUEXT_UNPIN_TABLE, f, touch=touch)
        elif action in ("entry-rw", "entry-ro"):
            flags = P | A | (RW if action == "entry-rw" else 0)
            h.store(0, va + 8 * step["slot"], abi.make_pte(g, flags))
        elif action in ("hook2", "hook2-ro"):
            flags = P | A | (RW if action == "hook2" else 0)
            h.set_entry(0, l2, step["hook"], abi.make_pte(f, flags), level=2, touch=touch)
        elif action == "unhook2":
            h.set_entry(0, l2, step["hook"], 0, level=2, touch=touch)
        elif action == "hook3":
            h.set_entry(0, l3, 511, abi.make_pte(f, P | RW | A), level=3, touch=touch)
        else:
            h.set_entry(0, l3, 511, 0, level=3, touch=touch)
        if n % 10 == 9:
            h.audit()


@check(sequences, points=15, name="sequences: every step of a random life of six frames")
def random_sequences(c: Comparison, plan: Plan) -> None:
    c.expect_agrees("sequence")
