"""Public tests of 01_map_a_page: one kernel page remapped, then processes at work."""

from __future__ import annotations

import random

from hypervisor import abi
from lessons.lab.testing import Guest, Machine, Plan, check, expect, workload
from minikern.kmem import KERNEL_PROT

NR_PAGES = 512


def two_frames(rng: random.Random) -> Plan:
    """Two frames at the top of memory (free after boot) and what each holds."""
    a, b = rng.sample(range(NR_PAGES - 64, NR_PAGES), 2)
    return {
        "a": a,
        "b": b,
        "data_a": rng.randbytes(16).hex(),
        "data_b": rng.randbytes(16).hex(),
    }


@workload(plan=two_frames, nr_pages=NR_PAGES)
def remap(g: Guest, plan: Plan) -> None:
    """Fill frames A and B, then map A's direct-map address to B (with an INVLPG)."""
    from minikern.kmem import map_page

    k = g.boot()
    km = k.km
    va_a = km.va(plan["a"])
    km.vcpu.write(va_a, bytes.fromhex(plan["data_a"]))
    km.vcpu.write(km.va(plan["b"]), bytes.fromhex(plan["data_b"]))
    km.vcpu.read(va_a, 16)
    map_page(km, va_a, plan["b"], KERNEL_PROT, abi.UVMF_INVLPG)
    km.hc.flush()
    km.vcpu.read(va_a, 16)


def _va(m: Machine, pfn: int) -> int:
    return int(m.domain.start_info.virt_base) + pfn * abi.PAGE_SIZE


def _leaf(m: Machine, plan: Plan) -> int:
    expect(m.completed, "the workload did not finish")
    leaf = m.walk(m.vcpu.cr3, _va(m, plan["a"]), user=False)
    expect(leaf is not None, f"{_va(m, plan['a']):#x} is not mapped at all any more")
    return int(leaf or 0)


@check(remap, points=10, name="map: the address now maps B's machine frame")
def maps_b(m: Machine, plan: Plan) -> None:
    leaf = _leaf(m, plan)
    want = m.mfn_of(plan["b"])
    got = abi.pte_mfn(leaf)
    expect(
        got == want,
        f"the entry holds frame {got:#x}; B is machine frame {want:#x} (pfn {plan['b']:#x})",
        "lesson.wrong-frame",
    )


@check(remap, points=5, name="pte: present, writable, the flags asked for")
def flags_as_asked(m: Machine, plan: Plan) -> None:
    leaf = _leaf(m, plan)
    flags = leaf & 0xFFF
    need = KERNEL_PROT & ~abi._PAGE_ACCESSED
    expect(flags & need == need, f"the entry's flags are {flags:#x}; {KERNEL_PROT:#x} was asked")
    expect(
        abi.pte_mfn(leaf) == m.mfn_of(plan["b"]),
        "the entry maps the wrong frame",
        "lesson.wrong-frame",
    )


@check(remap, points=10, name="tlb: the CPU reads B's bytes at A's address")
def reads_b(m: Machine, plan: Plan) -> None:
    _leaf(m, plan)
    got = m.vcpu.read(_va(m, plan["a"]), 16)
    want = bytes.fromhex(plan["data_b"])
    expect(
        got == want,
        f"the CPU reads {got.hex()} at A's address, B holds {want.hex()}: "
        "a stale translation survived",
        "lesson.stale-tlb",
    )


PAGE = abi.PAGE_SIZE


def some_pages(rng: random.Random) -> Plan:
    pages = rng.randint(1, 5)
    return {
        "base": rng.randrange(0x400, 0x40000) * PAGE,
        "data": [rng.randbytes(rng.randint(1, 32)).hex() for _ in range(pages)],
    }


@workload(plan=some_pages, nr_pages=NR_PAGES)
def one_process(g: Guest, plan: Plan) -> None:
    """A process maps pages and writes them: every entry goes through your functions."""
    k = g.boot()
    p = k.spawn()
    p.mmap(plan["base"], len(plan["data"]) * PAGE, "rw")
    for i, hexdata in enumerate(plan["data"]):
        p.write(plan["base"] + i * PAGE, bytes.fromhex(hexdata))


@check(one_process, points=10, name="kernel: a process reads back what it wrote")
def process_reads_back(m: Machine, plan: Plan) -> None:
    expect(1 in m.processes and m.completed, "the process did not run to the end")
    for i, hexdata in enumerate(plan["data"]):
        want = bytes.fromhex(hexdata)
        got = m.read_user(1, plan["base"] + i * PAGE, len(want))
        expect(
            got == want,
            f"page {i}: the process reads {got!r}, it wrote {want!r}",
            "lesson.wrong-frame",
        )
    expect(not m.audit(), "the audit is not clean")
