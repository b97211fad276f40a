"""d03: a few processes map regions; one exits, and release_tree tears its tree down in
the wrong order (one of lesson 10's breaks, picked by the seed). Xen refuses a mapping in
the exit's batch; the kernel panics before it frees anything, and the tree's frames leak."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.diagnosis import Scene, ask, guest_break, incident
from lessons.lab.testing import Plan

PAGE = 4096
MFN_MASK = ((1 << 40) - 1) << 12
VARIANTS = {
    "unpinned_while_loaded": "MMUEXT_NEW_BASEPTR",
    "writable_before_unpin": "MMUEXT_UNPIN_TABLE",
    "l1s_left_pinned": "MMUEXT_UNPIN_TABLE",
}
"""Lesson 10's wrong orders, and the command each leaves out before the refused mapping."""


def processes(rng: random.Random) -> Plan:
    """How many processes, what each maps, which one exits, and how it is torn down."""
    n = rng.randint(2, 3)
    slots = rng.sample(range(1, 256), 3)
    return {
        "regions": [
            [
                (rng.choice(slots) << 39) | (rng.randrange(512) << 30) | (rng.randrange(512) << 21)
                for _ in range(rng.randint(1, 3))
            ]
            for _ in range(n)
        ],
        "pages": [rng.randint(1, 3) for _ in range(n)],
        "victim": rng.randrange(n),
        "busy": rng.randint(1, 6),
        "variant": rng.choice(sorted(VARIANTS)),
        "frames": rng.getrandbits(32),
    }


HOLDS = {
    "MMUEXT_NEW_BASEPTR": (abi.MMUEXT_NEW_BASEPTR, abi.MMUEXT_NEW_USER_BASEPTR),
    "MMUEXT_UNPIN_TABLE": (
        abi.MMUEXT_PIN_L1_TABLE,
        abi.MMUEXT_PIN_L2_TABLE,
        abi.MMUEXT_PIN_L3_TABLE,
        abi.MMUEXT_PIN_L4_TABLE,
    ),
}
"""For each missing command, the commands whose type reference it would have dropped:
a load of the base pointer, or a pin."""


def holds(record: object, mfn: int, cmds: tuple[int, ...]) -> bool:
    """Does ``record`` (an ``mmuext_op`` that succeeded) hold one of ``cmds`` of ``mfn``?"""
    if getattr(record, "op", "") != "mmuext_op" or getattr(record, "result", -1) != 0:
        return False
    ops = getattr(record, "args", ((),))[0]
    return any(getattr(op, "cmd", None) in cmds and getattr(op, "arg1", None) == mfn for op in ops)


@incident(plan=processes)
def teardown_leak(s: Scene, plan: Plan) -> None:
    """Processes map and write; one exits, and the kernel panics in the middle of it."""
    k = s.boot()
    s.scatter_free_frames(plan["frames"])
    procs = []
    for vas, n in zip(plan["regions"], plan["pages"], strict=True):
        p = k.spawn()
        procs.append(p)
        pid = p.pid
        for va in vas:
            p.mmap(va, n * PAGE, "rw")
            for i in range(n):
                p.write(va + i * PAGE, bytes([pid]) * 8)
            s.say(f"process {pid} mapped {n} page(s) at {va:#x} and wrote to each")
    victim = procs[plan["victim"]]
    k.switch_to(victim)
    s.say(f"process {victim.pid} runs (its tree is loaded)")
    if plan["variant"] != "unpinned_while_loaded":
        other = procs[(plan["victim"] + 1) % len(procs)]
        k.switch_to(other)
        s.say(f"process {other.pid} runs (its tree is loaded)")
    running = procs.index(k.current) if k.current in procs else plan["victim"]
    va, n = plan["regions"][running][0], plan["pages"][running]
    for i in range(plan["busy"]):
        procs[running].write(va + i % n * PAGE, bytes([i]) * 4)
    s.say(f"process {procs[running].pid} wrote {plan['busy']} time(s) to its pages at {va:#x}")
    frames = 2 + len(victim.mm.table_pfns())
    s.say(f"process {victim.pid} exits")
    before = len(s.records)
    release = guest_break("10_teardown", plan["variant"], "release_tree")
    with s.broken("minikern.build:release_tree", release):
        s.attempt(lambda: k.exit(victim))
    s.say(f"exit() of process {victim.pid} did not return: the kernel panicked")
    refused = s.first_refusal()
    s.hide_batch_of(refused)
    frame = (int(refused.args[1]) & MFN_MASK) >> 12
    cmds = HOLDS[VARIANTS[plan["variant"]]]
    held = [r for r in s.records[:before] if r.kind == "hypercall" and holds(r, frame, cmds)][-1]
    s.tell(
        f"{len(procs)} processes map a few regions each; process {victim.pid} exits, and the "
        "kernel panics in the middle of tearing its tree down. None of the tree's frames "
        "came back to the kernel's allocator. The verdicts of the exit's batch are hidden."
    )
    s.answer(
        operation=s.number(refused),
        errno=abi.errno_name(refused.result),
        rule=refused.rule,
        command=VARIANTS[plan["variant"]],
        frame=frame,
        held_by=s.number(held),
        leaked=frames,
        step="minikern.build:release_tree",
    )


operation = ask(teardown_leak, "operation", points=6, name="operation: the one Xen refused")
errno = ask(teardown_leak, "errno", points=1, name="errno: what Xen answered")
rule = ask(teardown_leak, "rule", points=1, name="rule: the rule it broke")
command = ask(teardown_leak, "command", points=1, name="order: the command that had to come first")
frame = ask(teardown_leak, "frame", points=6, name="frame: the table still typed")
held_by = ask(teardown_leak, "held_by", points=6, name="held: what still held it a table")
leaked = ask(teardown_leak, "leaked", points=1, name="leak: the table frames the kernel lost")
step = ask(teardown_leak, "step", points=1, name="step: the recipe step at fault")
