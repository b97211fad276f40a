"""d04: a 32-bit PAE guest; pin_tree_pae pins each new tree's L3 with PIN_L4 (lesson 12's
pin_l4 break). Xen ignores that command for a 32-bit domain: it answers 0 and pins
nothing. Everything seems to work until a process exits and the kernel unpins its L3."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.diagnosis import Scene, ask, guest_break, incident
from lessons.lab.testing import Plan

PAGE = 4096
STACK = 0xBFFFF000
"""The top of a PAE process's stack region (below the 3 GiB the kernel keeps)."""


def processes(rng: random.Random) -> Plan:
    """How many processes, where each maps (below 3 GiB), which one (not the first) exits."""
    n = rng.randint(2, 4)
    pages = [rng.randint(1, 6) for _ in range(n)]
    return {
        "vas": [rng.randrange(0x100, 0xBFF00) * PAGE for _ in range(n)],
        "pages": pages,
        "written": [rng.randint(1, k) for k in pages],
        "stack": [rng.randint(0, 3) for _ in range(n)],
        "victim": rng.randrange(1, n),
    }


def pins_l4(record: object) -> bool:
    """Is ``record`` an ``mmuext_op`` holding a ``MMUEXT_PIN_L4_TABLE``?"""
    if getattr(record, "kind", "") != "hypercall" or getattr(record, "op", "") != "mmuext_op":
        return False
    ops = getattr(record, "args", ((),))[0]
    return any(getattr(op, "cmd", None) == abi.MMUEXT_PIN_L4_TABLE for op in ops)


@incident(plan=processes, guest_width=32)
def pae_pin_l4(s: Scene, plan: Plan) -> None:
    """PAE processes map and write; one exits, and the kernel panics."""
    k = s.boot()
    pins: dict[int, object] = {}
    procs = []
    pin_tree_pae = guest_break("12_pae_guest", "pin_l4", "pin_tree_pae")
    with s.broken("minikern.build:pin_tree_pae", pin_tree_pae):
        for va, n, w, stack in zip(
            plan["vas"], plan["pages"], plan["written"], plan["stack"], strict=True
        ):
            mark = len(s.records)
            p = k.spawn()
            pins[p.pid] = next(r for r in s.records[mark:] if pins_l4(r))
            procs.append(p)
            p.mmap(va, n * PAGE, "rw")
            for i in range(w):
                p.write(va + i * PAGE, bytes([p.pid]) * 8)
            s.say(f"process {p.pid} mapped {n} page(s) at {va:#x} and wrote to {w}")
            if stack:
                p.mmap(STACK - stack * PAGE, stack * PAGE, "rw")
                p.write(STACK - stack * PAGE, bytes(stack * PAGE))
                s.say(f"process {p.pid} mapped and zeroed {stack} stack page(s) below {STACK:#x}")
    victim = procs[plan["victim"]]
    s.say(f"process {victim.pid} exits")
    s.attempt(lambda: k.exit(victim))
    s.say(f"exit() of process {victim.pid} did not return: the kernel panicked")
    refused = s.first_refusal()
    s.hide_batch_of(refused)
    s.tell(
        f"A 32-bit PAE guest runs {len(procs)} process(es); each maps and writes a few "
        f"pages, and Xen accepts every hypercall. Then process {victim.pid} exits and the "
        "kernel panics: the verdicts of the exit's batch are hidden."
    )
    s.answer(
        operation=s.number(pins[victim.pid]),
        command="MMUEXT_PIN_L3_TABLE",
        exit_operation=s.number(refused),
        exit_errno=abi.errno_name(refused.result),
        exit_rule=refused.rule,
        step="minikern.build:pin_tree_pae",
    )


operation = ask(pae_pin_l4, "operation", points=3, name="pin: the operation that pinned nothing")
command = ask(pae_pin_l4, "command", points=2, name="pin: the command it should have been")
exit_operation = ask(pae_pin_l4, "exit_operation", points=2, name="exit: the operation refused")
exit_errno = ask(pae_pin_l4, "exit_errno", points=1, name="exit: what Xen answered")
exit_rule = ask(pae_pin_l4, "exit_rule", points=1, name="exit: the rule it broke")
step = ask(pae_pin_l4, "step", points=3, name="step: the recipe step at fault")
