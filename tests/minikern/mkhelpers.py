"""Reading Xen's view of a process (tests only: the guest never does this)."""

from __future__ import annotations

import struct
from typing import Any

from hypervisor import abi
from minikern import Kernel, Process
from minikern.kmem import TABLE_PROT, pfn_to_mfn

PAGE = abi.PAGE_SIZE
NR_PAGES = 2048
BASE = 0x400000


def assert_audit_clean(k: Kernel) -> None:
    """The hypervisor's audit finds nothing wrong."""
    violations = k.hypervisor.audit()
    assert violations == [], violations


def boot(nr_pages: int = NR_PAGES, **kwargs: Any) -> Kernel:
    """Boot a kernel and check the machine right away."""
    k = Kernel.boot(nr_pages=nr_pages, **kwargs)
    assert_audit_clean(k)
    return k


def table(k: Kernel, mfn: int) -> tuple[int, ...]:
    return struct.unpack("<512Q", k.hypervisor.read_frame(mfn))


def user_mappings(k: Kernel, p: Process) -> dict[int, tuple[int, int]]:
    """va -> (data mfn, P|RW|US flags) of every leaf under the user L4, as Xen holds them."""
    out: dict[int, tuple[int, int]] = {}

    def walk(mfn: int, level: int, va: int) -> None:
        for slot, e in enumerate(table(k, mfn)):
            if not e & abi._PAGE_PRESENT or (level == 4 and slot >= 256):
                continue
            sub = va | slot << (12 + 9 * (level - 1))
            if level == 1:
                out[sub] = (abi.pte_mfn(e), e & 0x7)
            else:
                walk(abi.pte_mfn(e), level - 1, sub)

    walk(pfn_to_mfn(k.km, p.mm.user_l4), 4, 0)
    return out


def table_mfns(k: Kernel, p: Process) -> list[int]:
    """Machine frames of every page-table frame of ``p``."""
    return [pfn_to_mfn(k.km, pfn) for pfn in p.mm.all_table_pfns()]


def hypercalls_since(k: Kernel, mark: int) -> list[object]:
    """Top-level hypercall records after trace position ``mark``."""
    return [
        r
        for r in k.hypervisor.trace.records[mark:]
        if getattr(r, "kind", "") == "hypercall" and getattr(r, "depth", 1) == 0
    ]


def trapped_since(k: Kernel, mark: int) -> int:
    return sum(getattr(r, "kind", "") == "trapped_write" for r in k.hypervisor.trace.records[mark:])


def recipe_violations(k: Kernel) -> list[str]:
    """Replay the trace and check the recipe's order: no frame pinned or linked
    while its direct-map mapping is writable, a base loaded only once pinned,
    no L4 unpinned while it is a base, no pinned frame made writable."""
    km = k.km
    boot_tables = {pfn_to_mfn(km, km.boot_l4 + i) for i in range(k.domain.start_info.nr_pt_frames)}
    writable: dict[int, bool] = {}
    pinned = {pfn_to_mfn(km, km.boot_l4)}
    base, user_base = pfn_to_mfn(km, km.boot_l4), 0
    bad: list[str] = []

    def rw(mfn: int) -> bool:
        return writable.get(mfn, mfn not in boot_tables)

    for r in k.hypervisor.trace.records:
        if getattr(r, "kind", "") != "hypercall" or r.op == "multicall":  # type: ignore[attr-defined]
            continue
        op, args = r.op, r.args  # type: ignore[attr-defined]
        if op == "update_va_mapping":
            mfn = pfn_to_mfn(km, (args[0] - km.virt_base) >> 12)
            writable[mfn] = bool(args[1] & abi._PAGE_RW)
            if writable[mfn] and mfn in pinned:
                bad.append(f"clock {r.clock}: pinned mfn {mfn:#x} made writable")
        elif op == "mmu_update":
            for req in args[0]:
                target = abi.pte_mfn(req.val)
                if req.val & 0xFFF == TABLE_PROT and rw(target):
                    bad.append(f"clock {r.clock}: mfn {target:#x} linked while writable")
        elif op == "mmuext_op":
            for o in args[0]:
                if o.cmd <= abi.MMUEXT_PIN_L4_TABLE:
                    if rw(o.arg1):
                        bad.append(f"clock {r.clock}: mfn {o.arg1:#x} pinned while writable")
                    pinned.add(o.arg1)
                elif o.cmd == abi.MMUEXT_UNPIN_TABLE:
                    if o.arg1 in (base, user_base):
                        bad.append(f"clock {r.clock}: mfn {o.arg1:#x} unpinned while loaded")
                    pinned.discard(o.arg1)
                elif o.cmd == abi.MMUEXT_NEW_BASEPTR:
                    if o.arg1 not in pinned:
                        bad.append(f"clock {r.clock}: base {o.arg1:#x} loaded unvalidated")
                    base = o.arg1
                elif o.cmd == abi.MMUEXT_NEW_USER_BASEPTR:
                    if o.arg1 and o.arg1 not in pinned:
                        bad.append(f"clock {r.clock}: user base {o.arg1:#x} loaded unvalidated")
                    user_base = o.arg1
    return bad


def table_type_count(k: Kernel, mfn: int) -> int:
    """The frame's type count *as a page table* (0 when it is not typed L1-L4).
    A frame back in the allocator is mapped RW by the direct map, so it holds
    the writable type with count 1, like every data frame at boot."""
    info = k.hypervisor.frame(mfn)
    return info.type_count if info.type.name in ("L1", "L2", "L3", "L4") else 0
