"""Helpers for the hypervisor's example-based tests: the world of spec section 9.

The world (``World``, the ``world`` fixture of conftest) is a small machine of
:data:`TOTAL_FRAMES` frames:

* dom0 (domid 0, privileged, :data:`DOM0_PAGES` pages);
* domain A (domid 1, 64-bit, :data:`A_PAGES` pages, ``writable_pagetables`` on);
* domain B (domid 2, :data:`B_PAGES` pages).

Every page count is deliberately *not* a multiple of 512, so the last bootstrap
L1 of each domain has unused slots right after the last pfn: those VAs form the
*scratch window* (``world.w``), covered by a validated L1 reachable from the
current base without any further set-up.

Frames P, Q, R, S, T, C, M, K2, K3 are free pfns of A made "allocated, type
count 0, unmapped" by removing their RW direct-map mapping; M is then pinned as
an (empty) L2 and K2, K3 as (empty) L4s. X is a free frame of B, unmapped the
same way in B. K is A's current base (``vcpus[0].cr3``).

Every helper that makes a hypercall checks ``xen.audit() == []`` right after
it, and :meth:`World.refused` does the same after a refusal, so every step of
every scenario is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from hypervisor import FrameInfo, HypercallError, Hypervisor, PageType, abi
from hypervisor.hypercalls.update_va_mapping import guest_l1e
from hypervisor.vcpu import VCpu

TOTAL_FRAMES = 1024
DOM0_PAGES = 100
A_PAGES = 200
B_PAGES = 100
PAE_PAGES = 200

Pr, RW, US, PWT, PCD, A_, D_, BIT7, G = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
NX = 1 << 63
L1, L2, L3, L4 = PageType.L1, PageType.L2, PageType.L3, PageType.L4
WRITABLE = PageType.WRITABLE
PIN = {1: abi.MMUEXT_PIN_L1_TABLE, 2: abi.MMUEXT_PIN_L2_TABLE, 3: abi.MMUEXT_PIN_L3_TABLE}
PIN[4] = abi.MMUEXT_PIN_L4_TABLE

FRAME_FIELDS = ("owner", "type", "type_count", "count", "validated", "pinned", "linear")


def pte(mfn: int, flags: int) -> int:
    """A page-table entry mapping ``mfn`` with ``flags``."""
    return mfn << abi.PAGE_SHIFT | flags


GUEST_KERNEL = 1 << 52
"""Xen's private ``_PAGE_GUEST_KERNEL`` (x86_64/page.h): pte bit 52."""


def stored(e: int) -> int:
    """A present L1 entry of a 64-bit guest as Xen stores it (pv/mm.h
    ``adjust_guest_l1e``): without USER it gains USER|GUEST_KERNEL; without
    GUEST_KERNEL it gains GLOBAL|USER."""
    if not e & Pr:
        return e
    if not e & US:
        e |= GUEST_KERNEL | US
    if not e & GUEST_KERNEL:
        e |= G | US
    return e


def entry_ptr(table: int, slot: int, cmd: int = abi.MMU_NORMAL_PT_UPDATE) -> int:
    """The mmu_update ``ptr`` of entry ``slot`` of table frame ``table``."""
    return table << abi.PAGE_SHIFT | slot * 8 | cmd


def audit_clean(xen: Hypervisor) -> None:
    """Assert the audit finds nothing, showing what it found if it does."""
    violations = xen.audit()
    assert violations == [], "\n".join(v.message for v in violations)


def snapshot(xen: Hypervisor) -> list[FrameInfo]:
    """Every frame's metadata, for before/after comparisons."""
    return [xen.frame(m) for m in range(xen.total_frames)]


def assert_frame(xen: Hypervisor, mfn: int, **expected: Any) -> None:
    """Assert the named FrameInfo fields of ``mfn`` (``type``, ``type_count``...)."""
    info = xen.frame(mfn)
    actual = {k: getattr(info, k) for k in expected}
    assert actual == expected, f"mfn {mfn:#x}: {info}"


def frame_key(xen: Hypervisor, mfn: int) -> tuple[Any, ...]:
    """The fields of spec section 9's "State after" column, as one tuple."""
    info = xen.frame(mfn)
    return tuple(getattr(info, k) for k in FRAME_FIELDS)


def entry(xen: Hypervisor, table: int, slot: int) -> int:
    """Entry ``slot`` of ``table`` as the machine holds it."""
    raw = xen.read_frame(table)[slot * 8 : slot * 8 + 8]
    return int.from_bytes(raw, "little")


def refused_with(
    xen: Hypervisor,
    call: Callable[[], object],
    errno: int,
    *,
    done: int | None = 0,
    rule: str | None = None,
) -> HypercallError:
    """Run ``call``, which must be refused with ``errno`` (and ``done``, ``rule``
    when given); audit afterwards. Returns the error for further checks."""
    with pytest.raises(HypercallError) as info:
        call()
    err = info.value
    assert err.errno == errno, f"errno {err.errno} != {errno}: {err}"
    if done is not None:
        assert err.done == done, f"done {err.done} != {done}: {err}"
    if rule is not None:
        assert err.rule == rule, f"rule {err.rule!r} != {rule!r}: {err}"
    audit_clean(xen)
    return err


class Guest:
    """One domain's kernel, with helpers named after what they do. Every
    successful hypercall is followed by an audit."""

    def __init__(self, xen: Hypervisor, domid: int) -> None:
        self.xen = xen
        self.dom = xen.domain(domid)
        self.vcpu: VCpu = self.dom.vcpus[0]
        si = self.dom.start_info
        self._next_free_pfn = (si.pt_base - si.virt_base) // abi.PAGE_SIZE + si.nr_pt_frames
        self.scratch_base = si.virt_base + si.nr_pages * abi.PAGE_SIZE
        """The first VA after the bootstrap region: an unused slot of the last
        bootstrap L1 (the scratch window)."""

    # -- addresses ---------------------------------------------------------------

    def va_of_pfn(self, pfn: int) -> int:
        return self.dom.start_info.virt_base + pfn * abi.PAGE_SIZE

    def w(self, i: int) -> int:
        """The ``i``-th scratch VA."""
        return self.scratch_base + i * abi.PAGE_SIZE

    def l1_slot(self, va: int) -> tuple[int, int]:
        """(L1 mfn, slot) of the entry that maps ``va`` in the current tables."""
        return guest_l1e(self.xen.state, self.vcpu._v, va)

    def slot_ptr(self, va: int, cmd: int = abi.MMU_NORMAL_PT_UPDATE) -> int:
        """The mmu_update ``ptr`` of the L1 entry that maps ``va``."""
        l1, slot = self.l1_slot(va)
        return entry_ptr(l1, slot, cmd)

    def l1e(self, va: int) -> int:
        """The L1 entry that maps ``va``, as stored."""
        return entry(self.xen, *self.l1_slot(va))

    # -- frames --------------------------------------------------------------------

    def fresh(self) -> int:
        """The next free pfn's frame, unmapped: allocated, type count 0, zero-filled."""
        pfn = self._next_free_pfn
        assert pfn < self.dom.start_info.nr_pages, "out of free pfns"
        self._next_free_pfn += 1
        self.update_va_mapping(self.va_of_pfn(pfn), 0, abi.UVMF_INVLPG)
        return self.dom.initial_p2m[pfn]

    # -- hypercalls (audited) ------------------------------------------------------

    audit_each_step = True
    """Audit after every successful hypercall (off only while the fixture is built)."""

    def _audited(self, result: Any) -> Any:
        if self.audit_each_step:
            audit_clean(self.xen)
        return result

    def mmu_update(self, reqs: Sequence[Any], foreigndom: int = abi.DOMID_SELF) -> int:
        return self._audited(self.vcpu.mmu_update(reqs, foreigndom))

    def mmuext(self, ops: Sequence[Any], foreigndom: int = abi.DOMID_SELF) -> int:
        return self._audited(self.vcpu.mmuext_op(ops, foreigndom))

    def update_va_mapping(self, va: int, val: int, flags: int = abi.UVMF_NONE) -> None:
        self._audited(self.vcpu.update_va_mapping(va, val, flags))

    def map_at(self, va: int, mfn: int, flags: int, foreigndom: int = abi.DOMID_SELF) -> int:
        """map(mfn, flags) at ``va``: an mmu_update of the L1 slot for ``va``."""
        return self.mmu_update([(self.slot_ptr(va), pte(mfn, flags))], foreigndom)

    def unmap(self, va: int) -> int:
        return self.mmu_update([(self.slot_ptr(va), 0)])

    def set_entry(self, table: int, slot: int, val: int) -> int:
        """One mmu_update of entry ``slot`` of ``table``."""
        return self.mmu_update([(entry_ptr(table, slot), val)])

    def pin(self, level: int, mfn: int, foreigndom: int = abi.DOMID_SELF) -> int:
        return self.mmuext([abi.MmuExtOp(PIN[level], mfn)], foreigndom)

    def unpin(self, mfn: int) -> int:
        return self.mmuext([abi.MmuExtOp(abi.MMUEXT_UNPIN_TABLE, mfn)])

    def new_baseptr(self, mfn: int) -> int:
        return self.mmuext([abi.MmuExtOp(abi.MMUEXT_NEW_BASEPTR, mfn)])

    def copy_page(self, dst: int, src: int) -> int:
        return self.mmuext([abi.MmuExtOp(abi.MMUEXT_COPY_PAGE, dst, src)])


class World:
    """The section 9 fixture: dom0, A, B and A's named frames."""

    def __init__(self, xen: Hypervisor) -> None:
        self.xen = xen
        self.dom0 = Guest(xen, xen.create_domain(DOM0_PAGES, privileged=True).domid)
        self.a = Guest(xen, xen.create_domain(A_PAGES).domid)
        self.b = Guest(xen, xen.create_domain(B_PAGES).domid)
        guests = (self.dom0, self.a, self.b)
        for g in guests:
            g.audit_each_step = False  # one audit at the end of set-up is enough
        self.a.vcpu.vm_assist(abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables)
        self.K = self.a.vcpu.cr3
        self.P, self.Q, self.R, self.S, self.T, self.C = (self.a.fresh() for _ in range(6))
        self.M = self.a.fresh()
        self.a.pin(2, self.M)
        self.K2, self.K3 = self.a.fresh(), self.a.fresh()
        self.a.pin(4, self.K2)
        self.a.pin(4, self.K3)
        self.X = self.b.fresh()
        for g in guests:
            g.audit_each_step = True
        audit_clean(xen)

    @property
    def w(self) -> Callable[[int], int]:
        """A's scratch VAs: ``world.w(0)``, ``world.w(1)``..."""
        return self.a.w

    def refused(
        self,
        call: Callable[[], object],
        errno: int,
        *,
        done: int | None = 0,
        rule: str | None = None,
    ) -> HypercallError:
        return refused_with(self.xen, call, errno, done=done, rule=rule)

    @contextmanager
    def unchanged(self, *mfns: int) -> Iterator[None]:
        """Assert the listed frames' metadata (or, with none, every frame's) is
        the same after the block as before it."""
        if mfns:
            before: list[Any] = [frame_key(self.xen, m) for m in mfns]
        else:
            before = snapshot(self.xen)
        yield
        after = [frame_key(self.xen, m) for m in mfns] if mfns else snapshot(self.xen)
        changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        assert not changed, f"frames changed (before, after): {changed}"
