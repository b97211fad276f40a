"""d01: a process maps a few regions and forks; protect_tables leaves one table of the
child's new tree writable, and Xen refuses the pin that validates the tree."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.diagnosis import Scene, ask, incident
from lessons.lab.testing import Plan
from minikern import recipe
from minikern.build import Tables
from minikern.kmem import KernelMemory

PAGE = 4096


def regions(rng: random.Random) -> Plan:
    """Two to four regions in different L3s and L2s, what each holds, and which table
    of the child's tree (an L3 or an L2, picked by position) is left writable."""
    n = rng.randint(2, 4)
    l4s = rng.sample(range(1, 200), n)
    vas = [(s << 39) | (rng.randrange(512) << 30) | (rng.randrange(512) << 21) for s in l4s]
    return {
        "vas": vas,
        "pages": [rng.randint(1, 4) for _ in vas],
        "touch": [rng.random() for _ in vas],
        "data": [rng.randbytes(8).hex() for _ in vas],
        "others": [
            [rng.randrange(1, 256) << 39, rng.randint(1, 4)] for _ in range(rng.randint(0, 3))
        ],
        "level": rng.choice([2, 3]),
        "pick": rng.random(),
    }


@incident(plan=regions)
def refused_pin(s: Scene, plan: Plan) -> None:
    """A process maps its regions, writes to them, and forks: fork() never returns."""
    k = s.boot()
    for n, (va, pages) in enumerate(plan["others"], 1):
        other = k.spawn()
        other.mmap(va, pages * PAGE, "rw")
        for i in range(pages):
            other.write(va + i * PAGE, bytes([n]))
        s.say(f"process {other.pid} mapped {pages} page(s) at {va:#x} and wrote to each")
    p = k.spawn()
    k.switch_to(p)
    for va, n, data, touch in zip(
        plan["vas"], plan["pages"], plan["data"], plan["touch"], strict=True
    ):
        p.mmap(va, n * PAGE, "rw")
        written = [i for i in range(n) if i == 0 or touch * (i + 1) % 1 > 0.4]
        for i in written:
            p.write(va + i * PAGE, bytes.fromhex(data))
        s.say(f"process {p.pid} mapped {n} page(s) at {va:#x}, wrote {data} in {len(written)}")
    left: list[tuple[int, int]] = []

    def protect_tables(km: KernelMemory, tables: Tables) -> None:
        """The break: one table of the chosen level is never made read-only."""
        of_level = [pfn for level, pfn in tables if level == plan["level"]]
        skip = of_level[int(plan["pick"] * len(of_level))]
        listed = ", ".join(f"L{lv} {km.p2m[pfn]:#x}" for lv, pfn in tables)
        s.say(f"fork(): the child's tables below its two L4s are {listed}")
        for level, pfn in tables:
            if pfn == skip:
                left.append((level, int(km.p2m[pfn])))
                continue
            recipe.make_readonly(km, pfn, abi.UVMF_NONE)
            if level == 1:
                recipe.pin_table(km, pfn, 1)

    s.say(f"process {p.pid} calls fork()")
    with s.broken("minikern.build:protect_tables", protect_tables):
        s.attempt(lambda: k.fork(p))
    s.say("fork() did not return: the kernel panicked (its message is withheld)")
    refused = s.first_refusal()
    s.hide_batch_of(refused)
    level, mfn = left[0]
    s.tell(
        f"Process {p.pid} maps a few regions, writes to them and forks. The kernel builds the "
        "child's tree, makes its tables read-only and pins it in one batch -- and panics: "
        "Xen refused something in that batch. Its verdicts are hidden below (`?`)."
    )
    s.answer(
        operation=s.number(refused),
        errno=abi.errno_name(refused.result),
        rule=refused.rule,
        frame=mfn,
        level=level,
        step="minikern.build:protect_tables",
    )


operation = ask(refused_pin, "operation", points=3, name="operation: the one Xen refused")
errno = ask(refused_pin, "errno", points=1, name="errno: what Xen answered")
rule = ask(refused_pin, "rule", points=2, name="rule: the rule it broke")
frame = ask(refused_pin, "frame", points=2, name="frame: where validation failed")
level = ask(refused_pin, "level", points=1, name="level: that table's level")
step = ask(refused_pin, "step", points=3, name="step: the recipe step at fault")
