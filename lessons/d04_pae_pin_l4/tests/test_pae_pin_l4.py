"""d04: a 32-bit PAE guest "pins" with ``MMUEXT_PIN_L4_TABLE``. Xen ignores that command
for a 32-bit domain: it answers 0 and pins nothing. Which table it was meant to pin varies
per student: each new tree's L3 (``pin_tree_pae``, lesson 12's pin_l4 break) or each new L1
of a live tree (``add_table``). Everything seems to work until a process exits and the
kernel unpins what it believes is pinned."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hypervisor import abi
from hypervisor.abi import Pfn
from lessons.lab.diagnosis import Scene, ask, guest_break, incident
from lessons.lab.testing import Plan
from minikern import recipe
from minikern.kmem import KernelMemory

PAGE = 4096
STACK = 0xBFFFF000
"""The top of a PAE process's stack region (below the 3 GiB the kernel keeps)."""
FAULTS = {
    "l3": ("minikern.build:pin_tree_pae", "MMUEXT_PIN_L3_TABLE"),
    "l1": ("minikern.pgtable:add_table", "MMUEXT_PIN_L1_TABLE"),
}
"""Which table was "pinned" with PIN_L4: the lesson function that did it, and the
command it should have used."""


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
        "busy": rng.randint(1, 6),
        "fault": rng.choice(sorted(FAULTS)),
        "frames": rng.getrandbits(32),
    }


def pins_l4(record: object, mfn: int) -> bool:
    """Is ``record`` an ``mmuext_op`` holding a ``MMUEXT_PIN_L4_TABLE`` of ``mfn``?"""
    if getattr(record, "kind", "") != "hypercall" or getattr(record, "op", "") != "mmuext_op":
        return False
    ops = getattr(record, "args", ((),))[0]
    return any(
        getattr(op, "cmd", None) == abi.MMUEXT_PIN_L4_TABLE and getattr(op, "arg1", None) == mfn
        for op in ops
    )


def unpinned(record: object) -> int:
    """The mfn the (refused) ``MMUEXT_UNPIN_TABLE`` in ``record`` names."""
    ops = getattr(record, "args", ((),))[0]
    return int(next(op.arg1 for op in ops if op.cmd == abi.MMUEXT_UNPIN_TABLE))


def add_table(km: KernelMemory, pfn: Pfn, level: int, parents: Sequence[tuple[Pfn, int]]) -> None:
    """The break of fault "l1": a new L1 of a live tree "pinned" with PIN_L4."""
    recipe.zero_frame(km, pfn)
    recipe.make_readonly(km, pfn, abi.UVMF_NONE)
    if level == 1:
        recipe.pin_table(km, pfn, 4)
    for parent, slot in parents:
        recipe.link_table(km, parent, slot, pfn)


@incident(plan=processes, guest_width=32)
def pae_pin_l4(s: Scene, plan: Plan) -> None:
    """PAE processes map and write; one exits, and the kernel panics."""
    k = s.boot()
    s.scatter_free_frames(plan["frames"])
    procs = []
    step, command = FAULTS[plan["fault"]]
    broken = (
        guest_break("12_pae_guest", "pin_l4", "pin_tree_pae")
        if plan["fault"] == "l3"
        else add_table
    )
    with s.broken(step, broken):
        for va, n, w, stack in zip(
            plan["vas"], plan["pages"], plan["written"], plan["stack"], strict=True
        ):
            p = k.spawn()
            procs.append(p)
            p.mmap(va, n * PAGE, "rw")
            for i in range(w):
                p.write(va + i * PAGE, bytes([p.pid]) * 8)
            s.say(f"process {p.pid} mapped {n} page(s) at {va:#x} and wrote to {w}")
            if stack:
                p.mmap(STACK - stack * PAGE, stack * PAGE, "rw")
                p.write(STACK - stack * PAGE, bytes(stack * PAGE))
                s.say(f"process {p.pid} mapped and zeroed {stack} stack page(s) below {STACK:#x}")
    last, va = procs[-1], plan["vas"][-1]
    for i in range(plan["busy"]):
        last.write(va + i % plan["pages"][-1] * PAGE, bytes([i]) * 4)
    s.say(f"process {last.pid} wrote {plan['busy']} time(s) to its pages at {va:#x}")
    victim = procs[plan["victim"]]
    s.say(f"process {victim.pid} exits")
    s.attempt(lambda: k.exit(victim))
    s.say(f"exit() of process {victim.pid} did not return: the kernel panicked")
    refused = s.first_refusal()
    s.hide_batch_of(refused)
    frame = unpinned(refused)
    pin = next(r for r in s.xen.trace.hypercalls() if pins_l4(r, frame))
    s.tell(
        f"A 32-bit PAE guest runs {len(procs)} process(es); each maps and writes a few "
        f"pages, and Xen accepts every hypercall. Then process {victim.pid} exits and the "
        "kernel panics: the verdicts of the exit's batch are hidden."
    )
    s.answer(
        operation=s.number(pin),
        command=command,
        frame=frame,
        exit_operation=s.number(refused),
        exit_errno=abi.errno_name(refused.result),
        exit_rule=refused.rule,
        step=step,
    )


operation = ask(pae_pin_l4, "operation", points=6, name="pin: the operation that pinned nothing")
command = ask(pae_pin_l4, "command", points=1, name="pin: the command it should have been")
frame = ask(pae_pin_l4, "frame", points=6, name="pin: the table never pinned")
exit_operation = ask(pae_pin_l4, "exit_operation", points=6, name="exit: the operation refused")
exit_errno = ask(pae_pin_l4, "exit_errno", points=1, name="exit: what Xen answered")
exit_rule = ask(pae_pin_l4, "exit_rule", points=1, name="exit: the rule it broke")
step = ask(pae_pin_l4, "step", points=1, name="step: the recipe step at fault")
