"""One minimal scenario per rule of ``hypervisor.rules``: each breaks exactly
that rule once, on a fresh section 9 world (or a machine of its own), and
returns the machine where the refusal happened. The refusal is then the newest
entry of that machine's consoles.

``test_hv_rule_coverage`` proves the table covers :data:`hypervisor.RULES`
exactly; ``python tests/hypervisor/rule_scenarios.py`` prints every rule's
message, the way a student meets it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from hvworld import PCD, RW, TOTAL_FRAMES, Guest, Pr, World, entry, entry_ptr, pte

from hypervisor import Config, HypercallError, Hypervisor, PageFault, PageType, Refusal, abi

Scenario = Callable[[World], Hypervisor]
SCENARIOS: dict[str, Scenario] = {}
MFN40 = (1 << 40) - 1


def scenario(rule_id: str) -> Callable[[Scenario], Scenario]:
    def deco(fn: Scenario) -> Scenario:
        SCENARIOS[rule_id] = fn
        return fn

    return deco


def attempt(call: Callable[[], object]) -> None:
    """Run a call that is refused (a hypercall) or faults (a trapped write)."""
    try:
        call()
    except (HypercallError, PageFault):
        return
    raise AssertionError("the scenario was not refused")


def newest_refusal(xen: Hypervisor) -> Refusal:
    """The most recent refusal on any domain's console."""
    logged = [r for d in xen.domains for r in xen.console(d.domid)]
    return max(logged, key=lambda r: r.clock)


def op(cmd: int, arg1: int = 0, arg2: int = 0) -> abi.MmuExtOp:
    return abi.MmuExtOp(cmd, arg1, arg2)


def free_mfn(xen: Hypervisor) -> int:
    """A frame nobody owns."""
    return next(m for m in range(xen.total_frames - 1, 0, -1) if xen.frame(m).owner is None)


def pae_guest() -> Guest:
    """A 32-bit PAE guest alone on a small machine."""
    xen = Hypervisor(total_frames=TOTAL_FRAMES)
    return Guest(xen, xen.create_domain(200, guest_width=32).domid)


# -- arguments and calling convention -------------------------------------------------------


@scenario("args.unreadable")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update(5))  # type: ignore[arg-type]
    return w.xen


@scenario("args.out-of-range")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update([(-1, 0)]))
    return w.xen


@scenario("hypercall.user-mode")
def _(w: World) -> Hypervisor:
    with w.a.vcpu.user_mode():
        attempt(lambda: w.a.vcpu.mmuext_op([op(abi.MMUEXT_TLB_FLUSH_LOCAL)]))
    return w.xen


@scenario("hypercall.unknown")
def _(w: World) -> Hypervisor:
    w.a.vcpu.multicall([abi.MulticallEntry(99, ())])
    return w.xen


@scenario("multicall.nested")
def _(w: World) -> Hypervisor:
    w.a.vcpu.multicall([abi.MulticallEntry(abi.HYPERVISOR_multicall, ([],))])
    return w.xen


@scenario("multicall.arity")
def _(w: World) -> Hypervisor:
    w.a.vcpu.multicall([abi.MulticallEntry(abi.HYPERVISOR_mmu_update, ())])
    return w.xen


@scenario("foreigndom.self-id")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmuext_op([op(abi.MMUEXT_TLB_FLUSH_LOCAL)], w.a.dom.domid))
    return w.xen


@scenario("foreigndom.unknown")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update([], 77))
    return w.xen


@scenario("foreigndom.not-privileged")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update([(entry_ptr(w.X, 0), 0)], w.b.dom.domid))
    return w.xen


# -- mmu_update ----------------------------------------------------------------------------------


@scenario("mmu.unknown-command")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update([(entry_ptr(w.P, 0) | 5, 0)]))
    return w.xen


@scenario("mmu.ptr-frame-not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update([(entry_ptr(w.X, 0), 0)]))
    return w.xen


@scenario("mmu.ptr-frame-wrong-type")
def _(w: World) -> Hypervisor:
    # No hypercall of the simulator makes a descriptor page (there is no
    # set_gdt), so S is made one white-box, as a GDT would hold it, and
    # restored afterwards so the audit can account for every reference.
    pg = w.xen.state.frames[w.S]
    pg.type, pg.type_count, pg.validated = PageType.SEG_DESC, 1, True
    pg.count += 1
    try:
        attempt(lambda: w.a.vcpu.mmu_update([(entry_ptr(w.S, 0), 0x1234)]))
    finally:
        pg.type, pg.type_count = PageType.WRITABLE, 0
        pg.count -= 1
    return w.xen


@scenario("mmu.foreign-upper-level")
def _(w: World) -> Hypervisor:
    l2 = w.dom0.fresh()
    w.dom0.pin(2, l2)
    attempt(lambda: w.dom0.vcpu.mmu_update([(entry_ptr(l2, 0), 0)], w.b.dom.domid))
    return w.xen


@scenario("machphys.foreign-pfd")
def _(w: World) -> Hypervisor:
    pfd = (w.b.dom.domid + 1) << 16 | abi.DOMID_SELF
    ptr = w.X << 12 | abi.MMU_MACHPHYS_UPDATE
    attempt(lambda: w.dom0.vcpu.mmu_update([(ptr, 7)], pfd))
    return w.xen


@scenario("machphys.not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.mmu_update([(w.X << 12 | abi.MMU_MACHPHYS_UPDATE, 7)]))
    return w.xen


# -- entry rules -----------------------------------------------------------------------------------


@scenario("entry.disallowed-flags")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.map_at(w.w(0), w.Q, Pr | PCD))
    return w.xen


@scenario("l1.io-no-permission")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.map_at(w.w(0), 0x10, Pr))
    return w.xen


@scenario("l1.invalid-mfn")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.map_at(w.w(0), abi.INVALID_MFN, Pr))
    return w.xen


@scenario("l1.free-frame")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.map_at(w.w(0), free_mfn(w.xen), Pr))
    return w.xen


@scenario("l1.foreign-frame")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.map_at(w.w(0), w.X, Pr))
    return w.xen


@scenario("l1.writable-pagetable")
def _(w: World) -> Hypervisor:
    w.a.pin(1, w.P)
    attempt(lambda: w.a.map_at(w.w(0), w.P, Pr | RW))
    return w.xen


@scenario("l1.cache-attr-xen-heap")
def _(w: World) -> Hypervisor:
    shinfo = w.dom0.dom.start_info.shared_info >> abi.PAGE_SHIFT
    attempt(lambda: w.dom0.map_at(w.dom0.w(0), shinfo, Pr | PCD))
    return w.xen


@scenario("entry.target-not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.set_entry(w.M, 0, pte(w.X, Pr)))
    return w.xen


@scenario("entry.target-wrong-type")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.set_entry(w.M, 0, pte(w.K2, Pr)))
    return w.xen


@scenario("linear.disabled")
def _(w: World) -> Hypervisor:
    off = World(Hypervisor(total_frames=TOTAL_FRAMES, config=Config(linear_pt=False)))
    attempt(lambda: off.a.set_entry(off.K2, 0, pte(off.K3, Pr)))
    return off.xen


@scenario("linear.writable")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.set_entry(w.K2, 0, pte(w.K2, Pr | RW)))
    return w.xen


@scenario("linear.chain")
def _(w: World) -> Hypervisor:
    w.a.set_entry(w.K2, 0, pte(w.K3, Pr))
    attempt(lambda: w.a.set_entry(w.K3, 0, pte(w.K, Pr)))
    return w.xen


@scenario("l4.xen-slot")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.set_entry(w.K, 256, 0))
    return w.xen


@scenario("l2.pae-xen-slot")
def _(w: World) -> Hypervisor:
    g = pae_guest()
    xen_l2 = entry(g.xen, g.vcpu.cr3, 3) >> 12 & MFN40
    attempt(lambda: g.set_entry(xen_l2, 500, 0))
    return g.xen


@scenario("l3.pae-slot")
def _(w: World) -> Hypervisor:
    g = pae_guest()
    attempt(lambda: g.set_entry(g.vcpu.cr3, 3, 0))
    return g.xen


@scenario("l3.pae-missing-xen-l2")
def _(w: World) -> Hypervisor:
    g = pae_guest()
    attempt(lambda: g.pin(3, g.fresh()))
    return g.xen


@scenario("l3.pae-xen-l2-shared")
def _(w: World) -> Hypervisor:
    g = pae_guest()
    l3 = g.fresh()
    g.set_entry(l3, 3, entry(g.xen, g.vcpu.cr3, 3))
    attempt(lambda: g.pin(3, l3))
    return g.xen


@scenario("l3.pae-above-4g")
def _(w: World) -> Hypervisor:
    xen = Hypervisor(total_frames=0x100000 + 4096)
    g = Guest(xen, xen.create_domain(200, guest_width=32).domid)
    g.vcpu.vm_assist(abi.VMASST_CMD_disable, abi.VMASST_TYPE_pae_extended_cr3)
    st = xen.state
    st._next_fresh = 0x100000  # the next frame handed out lies above 4 GiB
    (high,) = st.alloc_frames(g.dom.domid, 1)
    attempt(lambda: g.pin(3, high))
    return xen


# -- types, pins, bases ---------------------------------------------------------------------------


@scenario("type.writable-mapped")
def _(w: World) -> Hypervisor:
    w.a.map_at(w.w(0), w.P, Pr | RW)
    attempt(lambda: w.a.pin(1, w.P))
    return w.xen


@scenario("type.mismatch")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.pin(1, w.M))
    return w.xen


@scenario("type.in-use")
def _(w: World) -> Hypervisor:
    w.a.pin(1, w.P)
    attempt(lambda: w.a.mmuext([op(abi.MMUEXT_CLEAR_PAGE, w.P)]))
    return w.xen


@scenario("pin.not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.pin(1, w.X))
    return w.xen


@scenario("pin.already-pinned")
def _(w: World) -> Hypervisor:
    w.a.pin(1, w.P)
    attempt(lambda: w.a.pin(1, w.P))
    return w.xen


@scenario("unpin.not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.unpin(w.X))
    return w.xen


@scenario("unpin.not-pinned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.unpin(w.P))
    return w.xen


@scenario("baseptr.foreign")
def _(w: World) -> Hypervisor:
    new_base = op(abi.MMUEXT_NEW_BASEPTR, w.K2)
    attempt(lambda: w.dom0.vcpu.mmuext_op([new_base], w.a.dom.domid))
    return w.xen


@scenario("baseptr.not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.new_baseptr(w.X))
    return w.xen


@scenario("baseptr.no-user-base-32")
def _(w: World) -> Hypervisor:
    g = pae_guest()
    attempt(lambda: g.mmuext([op(abi.MMUEXT_NEW_USER_BASEPTR, g.vcpu.cr3)]))
    return g.xen


@scenario("mmuext.foreign-op")
def _(w: World) -> Hypervisor:
    flush = op(abi.MMUEXT_TLB_FLUSH_LOCAL)
    attempt(lambda: w.dom0.vcpu.mmuext_op([flush], w.a.dom.domid))
    return w.xen


@scenario("mmuext.unknown-command")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.mmuext([op(14)]))
    return w.xen


@scenario("mmuext.no-superpages")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.mmuext([op(abi.MMUEXT_MARK_SUPER, w.P)]))
    return w.xen


@scenario("mmuext.cache-flush-denied")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.mmuext([op(abi.MMUEXT_FLUSH_CACHE)]))
    return w.xen


@scenario("mmuext.bad-ldt")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.mmuext([op(abi.MMUEXT_SET_LDT, 0x1001, 1)]))
    return w.xen


@scenario("page.not-owned")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.mmuext([op(abi.MMUEXT_CLEAR_PAGE, w.X)]))
    return w.xen


# -- update_va_mapping and vm_assist ---------------------------------------------------------------


@scenario("uvm.bad-vcpumask")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.update_va_mapping(w.w(0), 0, abi.UVMF_TLB_FLUSH | 8))
    return w.xen


@scenario("uvm.bad-va")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.update_va_mapping(1 << 63, 0))
    return w.xen


@scenario("uvm.no-l1")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.update_va_mapping(0x1000, 0))
    return w.xen


@scenario("vm_assist.bad-cmd")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.vm_assist(2, abi.VMASST_TYPE_writable_pagetables))
    return w.xen


@scenario("vm_assist.bad-type")
def _(w: World) -> Hypervisor:
    attempt(lambda: w.a.vcpu.vm_assist(abi.VMASST_CMD_enable, 31))
    return w.xen


def main() -> None:
    """Print every rule's message as a student meets it."""
    for rule_id in sorted(SCENARIOS):
        xen = SCENARIOS[rule_id](World(Hypervisor(total_frames=TOTAL_FRAMES)))
        r = newest_refusal(xen)
        sys.stdout.write(f"{rule_id}\n    {r.message}\n")


if __name__ == "__main__":
    main()
