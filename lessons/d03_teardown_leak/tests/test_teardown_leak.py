"""d03: a few processes map regions; one exits, and release_tree tears its tree down in
the wrong order (one of lesson 10's breaks, picked by the seed). Xen refuses a mapping in
the exit's batch; the kernel panics before it frees anything, and the tree's frames leak."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.diagnosis import Scene, ask, guest_break, incident
from lessons.lab.testing import Plan

PAGE = 4096
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
        "variant": rng.choice(sorted(VARIANTS)),
    }


@incident(plan=processes)
def teardown_leak(s: Scene, plan: Plan) -> None:
    """Processes map and write; one exits, and the kernel panics in the middle of it."""
    k = s.boot()
    procs = [k.spawn() for _ in plan["regions"]]
    for pid, (p, vas, n) in enumerate(zip(procs, plan["regions"], plan["pages"], strict=True), 1):
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
    frames = 2 + len(victim.mm.table_pfns())
    s.say(f"process {victim.pid} exits")
    release = guest_break("10_teardown", plan["variant"], "release_tree")
    with s.broken("minikern.build:release_tree", release):
        s.attempt(lambda: k.exit(victim))
    s.say(f"exit() of process {victim.pid} did not return: the kernel panicked")
    refused = s.first_refusal()
    s.hide_batch_of(refused)
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
        leaked=frames,
        step="minikern.build:release_tree",
    )


operation = ask(teardown_leak, "operation", points=3, name="operation: the one Xen refused")
errno = ask(teardown_leak, "errno", points=1, name="errno: what Xen answered")
rule = ask(teardown_leak, "rule", points=2, name="rule: the rule it broke")
command = ask(teardown_leak, "command", points=2, name="order: the command that had to come first")
leaked = ask(teardown_leak, "leaked", points=2, name="leak: the table frames the kernel lost")
step = ask(teardown_leak, "step", points=2, name="step: the recipe step at fault")
