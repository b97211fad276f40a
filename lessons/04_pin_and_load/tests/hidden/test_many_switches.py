"""Hidden tests of 04_pin_and_load: several processes, switches, an exit."""

from __future__ import annotations

import random

from hypervisor.mm.frames import PageType
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload

PAGE = 4096


def many(rng: random.Random) -> Plan:
    n = rng.randint(3, 5)
    return {
        "n": n,
        "va": rng.randrange(0x400, 0x40000) * PAGE,
        "order": [rng.randrange(n) for _ in range(rng.randint(4, 10))],
        "gone": rng.randrange(n),
    }


@workload(plan=many)
def switch_around(g: Guest, plan: Plan) -> None:
    """n processes each write their pid; switch between them; one exits."""
    k = g.boot()
    procs = [k.spawn() for _ in range(plan["n"])]
    for p in procs:
        p.mmap(plan["va"], PAGE, "rw")
        p.write(plan["va"], bytes([p.pid]) * 8)
    for i in plan["order"]:
        procs[i].read(plan["va"], 8)
    gone = procs[plan["gone"]]
    g.remember(gone)
    k.exit(gone)
    last = procs[plan["order"][-1]]
    if last is gone:
        last = procs[(plan["gone"] + 1) % plan["n"]]
    last.read(plan["va"], 8)


def _last(plan: Plan) -> int:
    last = int(plan["order"][-1])
    if last == plan["gone"]:
        last = (plan["gone"] + 1) % plan["n"]
    return last + 1


@check(switch_around, points=10, name="switch: the CPU ends on the last process's L4s")
def ends_on_last(m: Machine, plan: Plan) -> None:
    view = m.process(_last(plan))
    expect(
        m.vcpu.cr3 == view.l4 and m.vcpu.user_base == view.user_l4,
        f"the bases are {m.vcpu.cr3:#x}/{m.vcpu.user_base:#x}, process {view.pid}'s L4s "
        f"are {view.l4:#x}/{view.user_l4:#x}",
        "lesson.wrong-base",
    )


@check(switch_around, points=10, name="isolation: every live process reads its own pid")
def own_pages(m: Machine, plan: Plan) -> None:
    live = [pid for pid in range(1, plan["n"] + 1) if pid != plan["gone"] + 1]
    for pid in live:
        got = m.read_user(pid, plan["va"], 8)
        expect(got == bytes([pid]) * 8, f"process {pid} reads {got!r}")
        f = m.frame(m.process(pid).l4)
        expect(
            f.pinned and f.type == PageType.L4,
            f"process {pid}'s L4 is not pinned",
            "lesson.not-pinned",
        )


@check(switch_around, points=5, name="exit: the exited process's L4s are unpinned and free")
def exited_unpinned(m: Machine, plan: Plan) -> None:
    gone = m.process(plan["gone"] + 1)
    expect(m.completed and len(m.processes) == plan["n"], "the workload did not finish")
    for mfn in (gone.l4, gone.user_l4):
        f = m.frame(mfn)
        expect(not f.pinned and not f.type.is_pagetable, f"frame {mfn:#x} is still pinned or typed")
    expect(not m.audit(), "the audit is not clean")
