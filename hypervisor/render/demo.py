"""The interim ``make demo``: build one user address space the way a PV
kernel must, watch Xen refuse a shortcut, fix it, and look at the result.

Run it with ``python -m hypervisor.render.demo`` (it lives in the render
layer, the only part of ``hypervisor`` allowed to draw). The recipe, one small
function per step (spec sections 2.4, 2.7 and 9):

1. take free frames from the domain and zero them;
2. fill them: L4[0] -> L3, L3[0] -> L2, L2[2] -> L1, L1[0..2] -> data pages,
   so user VA 0x400000 maps three pages;
3. try to pin the L1 while the kernel still maps it writable: refused;
4. make every table frame read-only with ``update_va_mapping``;
5. pin the L1, then the L4 (which validates the whole tree), load it as the
   user base and write through it in user mode.
"""

from __future__ import annotations

import attrs
from rich.console import Console

from hypervisor import Domain, HypercallError, Hypervisor, VCpu, abi, render

__all__ = ["USER_VA", "Space", "main"]

P, RW, US, A = abi._PAGE_PRESENT, abi._PAGE_RW, abi._PAGE_USER, abi._PAGE_ACCESSED
USER_VA = 0x400000
"""Where the demo maps its three user pages (L4 0, L3 0, L2 2, L1 0-2)."""


@attrs.frozen
class Space:
    """The frames of the demo's address space, as (pfn, mfn) pairs."""

    l4: tuple[int, int]
    l3: tuple[int, int]
    l2: tuple[int, int]
    l1: tuple[int, int]
    data: tuple[tuple[int, int], ...]

    @property
    def tables(self) -> tuple[tuple[int, int], ...]:
        """Bottom-up, the order in which they are made read-only."""
        return (self.l1, self.l2, self.l3, self.l4)


def kernel_va(dom: Domain, pfn: int) -> int:
    """Where the builder mapped pseudo-physical page ``pfn``."""
    return dom.start_info.virt_base + pfn * abi.PAGE_SIZE


def take_frames(dom: Domain) -> Space:
    """Seven free pages after the bootstrap tables (the guest's allocator, in miniature)."""
    si = dom.start_info
    first = (si.pt_base - si.virt_base) // abi.PAGE_SIZE + si.nr_pt_frames
    pages = [(pfn, dom.initial_p2m[pfn]) for pfn in range(first, first + 7)]
    return Space(pages[0], pages[1], pages[2], pages[3], tuple(pages[4:]))


def zero_frames(dom: Domain, vcpu: VCpu, space: Space) -> None:
    """Zero every new table through its writable kernel mapping."""
    for pfn, _ in space.tables:
        vcpu.write(kernel_va(dom, pfn), bytes(abi.PAGE_SIZE))


def fill_tables(dom: Domain, vcpu: VCpu, space: Space) -> None:
    """Write the entries with plain stores: the frames are still ordinary data."""

    def put(table: tuple[int, int], slot: int, target_mfn: int, flags: int) -> None:
        vcpu.store(kernel_va(dom, table[0]) + 8 * slot, abi.make_pte(target_mfn, flags))

    put(space.l4, 0, space.l3[1], P | RW | US | A)
    put(space.l3, 0, space.l2[1], P | RW | US | A)
    put(space.l2, (USER_VA >> 21) & 511, space.l1[1], P | RW | US | A)
    for i, (_, mfn) in enumerate(space.data):
        put(space.l1, i, mfn, P | RW | US | A)


def pin(vcpu: VCpu, level: int, mfn: int) -> None:
    """MMUEXT_PIN_Ln_TABLE of ``mfn``."""
    vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE + level - 1, mfn)])


def make_read_only(dom: Domain, vcpu: VCpu, space: Space) -> None:
    """Drop RW from each table's kernel mapping (and flush that page)."""
    for pfn, mfn in space.tables:
        vcpu.update_va_mapping(kernel_va(dom, pfn), abi.make_pte(mfn, P | US | A), 2)


def use_as_user_base(vcpu: VCpu, space: Space) -> bytes:
    """Load the L4 as the user base and write, then read, through it in user mode."""
    vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_NEW_USER_BASEPTR, space.l4[1])])
    with vcpu.user_mode():
        vcpu.write(USER_VA + abi.PAGE_SIZE, b"hello from user mode")
        return vcpu.read(USER_VA + abi.PAGE_SIZE, 20)


def main(console: Console | None = None) -> None:
    """Run the demo, printing to ``console`` (a fresh one by default)."""
    out = console if console is not None else Console()
    xen = Hypervisor(total_frames=512)
    dom = xen.create_domain(nr_pages=96)
    vcpu = dom.vcpus[0]
    space = take_frames(dom)
    out.rule("1. zero and fill four frames: L4 -> L3 -> L2 -> L1 -> 3 data pages at 0x400000")
    zero_frames(dom, vcpu, space)
    fill_tables(dom, vcpu, space)
    out.print(render.audit_verdict(xen))
    out.rule("2. pin the L1 while the kernel still maps it writable")
    try:
        pin(vcpu, 1, space.l1[1])
    except HypercallError as exc:
        out.print(render.explain(exc))
    out.rule("3. the fix: make the tables read-only, then pin the L1 and the L4")
    make_read_only(dom, vcpu, space)
    pin(vcpu, 1, space.l1[1])
    pin(vcpu, 4, space.l4[1])
    data = use_as_user_base(vcpu, space)
    out.print(f"user mode wrote and read back {data!r} at {USER_VA + abi.PAGE_SIZE:#x}")
    out.print(render.hypercall_log(xen.trace, xen=xen))
    out.rule("4. what Xen now knows")
    out.print(render.frame_table(xen, domid=dom.domid))
    out.print(render.page_table_tree(xen, space.l4[1]))
    out.print(render.memory_map(xen))
    out.print(render.audit_verdict(xen))


if __name__ == "__main__":
    main()
