"""d01: a process maps a few regions and forks; one table of the child's new tree
cannot be validated, and Xen refuses the pin that meets it. What is wrong with the table
varies per student: ``protect_tables`` left it writable, or ``write_tables`` wrote a stray
entry into it (to a frame the domain does not own, or with cache-control flags Xen
forbids); and the table is an L1, an L2 or an L3."""

from __future__ import annotations

import random
from collections.abc import Mapping

from hypervisor import abi
from lessons.lab.diagnosis import Scene, ask, incident
from lessons.lab.testing import Plan
from minikern import recipe, steps
from minikern.build import Tables
from minikern.kmem import KernelMemory

PAGE = 4096
MFN_MASK = ((1 << 40) - 1) << 12
FAULTS = {
    "writable": "minikern.build:protect_tables",
    "foreign": "minikern.build:write_tables",
    "flags": "minikern.build:write_tables",
}
"""What is wrong with the table, and the lesson function whose mistake it is."""


def regions(rng: random.Random) -> Plan:
    """Two to four regions in different L3s and L2s, what each holds, which table of the
    child's tree is broken (its level, and which of that level by position) and how."""
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
        "fault": rng.choice(sorted(FAULTS)),
        "level": rng.choice([1, 2, 3]),
        "pick": rng.random(),
        "slot": rng.random(),
        "stray": rng.randrange(0x2000, 0x3F00),
        "flag": rng.choice(["PCD", "PWT"]),
        "frames": rng.getrandbits(32),
    }


def levels_of(km: KernelMemory, images: Mapping[int, Mapping[int, int]]) -> dict[int, int]:
    """The level of each table below the tops in ``images`` (pfn -> entries): an L1
    points at no table of the images, an Ln at an L(n-1)."""
    by_mfn = {int(km.p2m[pfn]): pfn for pfn in images}
    kids = {
        pfn: [
            by_mfn[(e & MFN_MASK) >> 12] for e in entries.values() if (e & MFN_MASK) >> 12 in by_mfn
        ]
        for pfn, entries in images.items()
    }
    lower = {c for cs in kids.values() for c in cs}
    known: dict[int, int] = {}

    def level(pfn: int) -> int:
        if pfn not in known:
            known[pfn] = 1 + max((level(c) for c in kids[pfn]), default=0)
        return known[pfn]

    return {pfn: level(pfn) for pfn in images if pfn in lower}


@incident(plan=regions)
def refused_pin(s: Scene, plan: Plan) -> None:
    """A process maps its regions, writes to them, and forks: fork() never returns."""
    k = s.boot()
    s.scatter_free_frames(plan["frames"])
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
    broken: dict[str, int] = {}

    def write_tables(km: KernelMemory, images: Mapping[int, Mapping[int, int]]) -> None:
        """Picks the table to break (its level and position come from the plan) and,
        for fault "foreign" or "flags", writes a stray entry into it (the break)."""
        of_level = [pfn for pfn, lv in levels_of(km, images).items() if lv == plan["level"]]
        pfn = of_level[int(plan["pick"] * len(of_level))]
        mfn = int(km.p2m[pfn])
        broken.update(level=plan["level"], pfn=pfn, frame=mfn)
        reference = steps.lesson_function("minikern.build:write_tables").reference
        if plan["fault"] == "writable":  # Xen stops at the parent's entry pointing at it
            broken["slot"] = next(
                slot
                for entries in images.values()
                for slot, e in entries.items()
                if (e & MFN_MASK) >> 12 == mfn
            )
            reference(km, images)
            return
        entries = dict(images[pfn])
        free = [slot for slot in range(512) if slot not in entries]
        broken["slot"] = free[int(plan["slot"] * len(free))]
        some = entries[min(entries)]
        if plan["fault"] == "foreign":
            stray = (plan["stray"] << 12) | (some & ~MFN_MASK)
        else:
            stray = some | getattr(abi, f"_PAGE_{plan['flag']}")
        reference(km, {**images, pfn: {**entries, broken["slot"]: stray}})

    def protect_tables(km: KernelMemory, tables: Tables) -> None:
        """The break of fault "writable": the picked table is never made read-only
        (nor pinned, if it is an L1)."""
        skip = broken["pfn"] if plan["fault"] == "writable" else -1
        listed = ", ".join(f"L{lv} {km.p2m[pfn]:#x}" for lv, pfn in tables)
        s.say(f"fork(): the child's tables below its two L4s are {listed}")
        for level, pfn in tables:
            if pfn == skip:
                continue
            recipe.make_readonly(km, pfn, abi.UVMF_NONE)
            if level == 1:
                recipe.pin_table(km, pfn, 1)

    s.say(f"process {p.pid} calls fork()")
    with (
        s.broken("minikern.build:write_tables", write_tables),
        s.broken("minikern.build:protect_tables", protect_tables),
    ):
        s.attempt(lambda: k.fork(p))
    s.say("fork() did not return: the kernel panicked (its message is withheld)")
    refused = s.first_refusal()
    s.hide_batch_of(refused)
    s.tell(
        f"Process {p.pid} maps a few regions, writes to them and forks. The kernel writes "
        "the child's tables, makes them read-only and pins them in one batch -- and panics: "
        "Xen refused something in that batch. Its verdicts are hidden below (`?`)."
    )
    s.answer(
        operation=s.number(refused),
        errno=abi.errno_name(refused.result),
        rule=refused.rule,
        frame=broken["frame"],
        level=broken["level"],
        slot=broken["slot"],
        step=FAULTS[plan["fault"]],
    )


operation = ask(refused_pin, "operation", points=5, name="operation: the one Xen refused")
errno = ask(refused_pin, "errno", points=1, name="errno: what Xen answered")
rule = ask(refused_pin, "rule", points=1, name="rule: the rule it broke")
frame = ask(refused_pin, "frame", points=5, name="frame: where validation failed")
level = ask(refused_pin, "level", points=1, name="level: that table's level")
slot = ask(refused_pin, "slot", points=5, name="slot: the entry Xen stopped at")
step = ask(refused_pin, "step", points=1, name="step: the recipe step at fault")
