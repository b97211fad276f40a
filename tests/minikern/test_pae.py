"""minikern on a 32-bit PAE guest (``Kernel.boot(guest_width=32)``): the L3 on
top pinned with PIN_L3, a kernel L2 of its own per tree, one base per vCPU,
user/kernel separation by the USER bit and the 3 GiB split; and the pitfall of
lesson 12: PIN_L4 on a PAE guest is a silent no-op (spec 3.8, Xen's
``do_mmuext_op``: ``MMUEXT_PIN_L4_TABLE`` breaks out early for a 32-bit
domain), so a tree "pinned" with it is not pinned."""

from __future__ import annotations

import errno
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from mkhelpers import BASE, PAGE, boot, recipe_violations, table, table_type_count

from hypervisor import Hypervisor, abi, replay
from hypervisor.abi import Pfn
from hypervisor.errors import PageFault
from minikern import Kernel, KernelPanic, Process, SegmentationFault, build, steps
from minikern.boot import PAE_XEN_L2_FIRST, kernel_l2_of
from minikern.kmem import KernelMemory, pfn_to_mfn
from minikern.recipe import link_table, make_readonly, pin_table

TOP = 0xC000_0000
"""The PAE user limit (Linux ``TASK_SIZE``) and the start of the direct map."""


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    steps.reset()


@pytest.fixture
def k(strategy: str) -> Kernel:
    """A freshly booted 32-bit PAE kernel, once per strategy."""
    return boot(strategy=strategy, guest_width=32)


def mfn(k: Kernel, pfn: Pfn) -> int:
    return pfn_to_mfn(k.km, pfn)


def frame(k: Kernel, pfn: Pfn) -> Any:
    return k.hypervisor.frame(mfn(k, pfn))


def pin_tree_with_pin_l4(km: KernelMemory, l3: Pfn, kernel_l2: Pfn) -> None:
    """The lesson's break: the 64-bit pin command on a PAE guest."""
    make_readonly(km, kernel_l2, abi.UVMF_NONE)
    make_readonly(km, l3, abi.UVMF_TLB_FLUSH)
    pin_table(km, l3, 4)


# -- boot --------------------------------------------------------------------------------


def test_pae_kernel_boots_on_a_32bit_domain_with_the_l3_on_top(k: Kernel) -> None:
    assert k.domain.guest_width == 32
    assert k.km.pae
    top = k.hypervisor.frame(k.vcpu.cr3)
    assert (top.type.name, top.pinned) == ("L3", True)
    assert k.vcpu.cr3 == mfn(k, k.km.boot_l4)


def test_pae_kernel_remembers_only_guest_slots_of_the_boot_kernel_l2(k: Kernel) -> None:
    boot_l2 = kernel_l2_of(k.km, k.km.boot_l4)
    assert k.hypervisor.frame(mfn(k, boot_l2)).pae_xen_l2
    assert k.km.kernel_half
    assert max(k.km.kernel_half) < PAE_XEN_L2_FIRST
    assert k.km.kernel_half == {
        s: e for s, e in enumerate(table(k, mfn(k, boot_l2))[:PAE_XEN_L2_FIRST]) if e
    }


def test_boot_refuses_a_guest_width_other_than_32_or_64() -> None:
    with pytest.raises(ValueError, match="guest_width"):
        Kernel.boot(guest_width=16)


# -- a process's tree --------------------------------------------------------------------


def test_spawn_pins_an_l3_whose_slot_3_is_its_own_kernel_l2(k: Kernel) -> None:
    p = k.spawn()
    l3, l2 = frame(k, p.mm.l3), frame(k, p.mm.kernel_l2)
    assert (l3.type.name, l3.pinned, l3.type_count) == ("L3", True, 1)
    assert (l2.type.name, l2.pae_xen_l2, l2.pinned) == ("L2", True, False)
    assert p.mm.kernel_l2 != kernel_l2_of(k.km, k.km.boot_l4)
    assert abi.pte_mfn(table(k, mfn(k, p.mm.l3))[3]) == mfn(k, p.mm.kernel_l2)


def test_process_kernel_l2_copies_the_kernel_slots_and_gets_xen_slots(k: Kernel) -> None:
    p = k.spawn()
    entries = table(k, mfn(k, p.mm.kernel_l2))
    boot_entries = table(k, mfn(k, kernel_l2_of(k.km, k.km.boot_l4)))
    assert entries[:PAE_XEN_L2_FIRST] == boot_entries[:PAE_XEN_L2_FIRST]
    assert entries[PAE_XEN_L2_FIRST] & abi._PAGE_PRESENT


def test_spawn_issues_pin_l3_and_never_pin_l4(k: Kernel) -> None:
    mark = len(k.hypervisor.trace.records)
    p = k.spawn()
    pins = [
        (o.cmd, o.arg1)
        for r in k.hypervisor.trace.records[mark:]
        if r.kind == "hypercall" and r.op == "mmuext_op"
        for o in r.args[0]
        if o.cmd <= abi.MMUEXT_PIN_L4_TABLE
    ]
    assert pins == [(abi.MMUEXT_PIN_L3_TABLE, mfn(k, p.mm.l3))]


def test_switch_to_loads_the_l3_alone_without_a_user_base(k: Kernel) -> None:
    p = k.spawn()
    mark = len(k.hypervisor.trace.records)
    k.switch_to(p)
    ops = [
        [(o.cmd, o.arg1) for o in r.args[0]]
        for r in k.hypervisor.trace.records[mark:]
        if r.kind == "hypercall" and r.op == "mmuext_op"
    ]
    assert ops == [[(abi.MMUEXT_NEW_BASEPTR, mfn(k, p.mm.l3))]]
    assert k.vcpu.cr3 == mfn(k, p.mm.l3)


def test_mmap_at_3gib_is_refused(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(ValueError, match="below 0xc0000000"):
        p.mmap(TOP, PAGE, "rw")


def test_mmap_across_3gib_is_refused(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(ValueError, match="end by 0xc0000000"):
        p.mmap(TOP - PAGE, 2 * PAGE, "rw")


def test_the_top_page_of_user_space_works(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(TOP - PAGE, PAGE, "rw")
    p.write(TOP - 8, b"top")
    assert p.read(TOP - 8, 3) == b"top"


# -- isolation ---------------------------------------------------------------------------


def test_processes_see_only_their_own_memory(k: Kernel) -> None:
    a, b = k.spawn(), k.spawn()
    for p, data in ((a, b"alpha"), (b, b"beta!")):
        p.mmap(BASE, PAGE, "rw")
        p.write(BASE, data)
    assert (a.read(BASE, 5), b.read(BASE, 5)) == (b"alpha", b"beta!")


def test_user_code_cannot_read_the_kernel_direct_map(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(SegmentationFault):
        p.read(k.km.va(p.mm.l3), 8)


def test_kernel_entries_lack_user_so_the_hardware_refuses_user_mode(k: Kernel) -> None:
    p = k.spawn()
    k.switch_to(p)
    va = k.km.va(p.mm.l3)
    k.vcpu.load(va)  # the ring-1 kernel reads it
    with pytest.raises(PageFault), k.vcpu.user_mode():
        k.vcpu.load(va)


def test_a_process_cannot_read_an_address_another_process_mapped(k: Kernel) -> None:
    a, b = k.spawn(), k.spawn()
    a.mmap(BASE, PAGE, "rw")
    a.write(BASE, b"secret")
    with pytest.raises(SegmentationFault):
        b.read(BASE, 6)


# -- fork, copy-on-write, exit -----------------------------------------------------------


def test_fork_shares_pages_until_a_write_copies_them(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 2 * PAGE, "rw")
    p.write(BASE, b"parent")
    c = k.fork(p)
    assert c.read(BASE, 6) == b"parent"
    assert p.mm.ptes[BASE >> 12] == c.mm.ptes[BASE >> 12]
    c.write(BASE, b"child!")
    assert (p.read(BASE, 6), c.read(BASE, 6)) == (b"parent", b"child!")
    assert p.mm.ptes[BASE >> 12] != c.mm.ptes[BASE >> 12]


def test_last_user_of_a_cow_page_reuses_it(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"x")
    c = k.fork(p)
    c.write(BASE, b"y")
    before = p.mm.ptes[BASE >> 12]
    p.write(BASE, b"z")
    assert p.mm.ptes[BASE >> 12] == before


def test_fork_gives_the_child_its_own_l3_and_kernel_l2(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw", populate=True)
    c = k.fork(p)
    assert {c.mm.l3, c.mm.kernel_l2}.isdisjoint({p.mm.l3, p.mm.kernel_l2})
    assert frame(k, c.mm.l3).pinned


def test_mprotect_and_munmap_work_on_pae(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 3 * PAGE, "rw", populate=True)
    p.mprotect(BASE, PAGE, "r")
    with pytest.raises(SegmentationFault):
        p.write(BASE, b"no")
    p.munmap(BASE + PAGE, 2 * PAGE)
    with pytest.raises(SegmentationFault):
        p.read(BASE + PAGE, 1)


def _busy(k: Kernel) -> list[Process]:
    p = k.spawn()
    p.mmap(BASE, 40 * PAGE, "rw", populate=True)
    p.mmap(0x4000_0000, 2 * PAGE, "rw")  # a second L3 slot
    p.write(0x4000_0000, b"far")
    c = k.fork(p)
    c.write(BASE, b"child")
    p.mprotect(BASE, 10 * PAGE, "r")
    c.munmap(BASE + 20 * PAGE, 10 * PAGE)
    return [p, c, k.fork(c)]


def test_exit_leaks_no_frame_and_leaves_no_table_typed(k: Kernel) -> None:
    procs = _busy(k)
    k.switch_to(procs[1])
    tables = [pfn for p in procs for pfn in p.mm.all_table_pfns()]
    for p in procs:
        k.exit(p)
    assert k.free_pages() == k.boot_free
    assert [pfn for pfn in tables if table_type_count(k, mfn(k, pfn))] == []
    assert k.vcpu.cr3 == mfn(k, k.km.boot_l4)


def test_exit_of_the_loaded_process_switches_to_the_boot_l3_first(k: Kernel) -> None:
    p = k.spawn()
    k.switch_to(p)
    k.exit(p)
    assert k.vcpu.cr3 == mfn(k, k.km.boot_l4)
    assert k.vcpu.user_base == 0


def test_a_pae_kernel_trace_replays_byte_for_byte() -> None:
    """What a grader does with lesson 12's trace: the header rebuilds a 32-bit domain."""
    xen = Hypervisor(total_frames=4096)
    k = Kernel.boot(nr_pages=1024, hypervisor=xen, guest_width=32)
    _busy(k)
    text = xen.trace.to_jsonl()
    run = replay.run(replay.parse(text))
    assert run.divergences == []
    assert run.xen.trace.to_jsonl() == text


# -- the recipe's order, from the trace --------------------------------------------------


def pin_l3_violations(k: Kernel, kernel_l2: Mapping[int, int]) -> list[str]:
    """PAE's order in the trace: before each PIN_L3 the L3 and its kernel L2
    (``kernel_l2``: L3 mfn -> kernel L2 mfn) are read-only, the last
    update_va_mapping of the L3 flushing the TLB; no PIN_L4, no
    NEW_USER_BASEPTR; a kernel L2 is made writable only once its L3 is unpinned."""
    km, bad = k.km, []
    rw: dict[int, tuple[bool, int]] = {}
    unpinned: set[int] = set()
    for r in k.hypervisor.trace.records:
        if r.kind != "hypercall" or r.op == "multicall":
            continue
        if r.op == "update_va_mapping":
            m = mfn(k, Pfn((r.args[0] - km.virt_base) >> 12))
            rw[m] = (bool(r.args[1] & abi._PAGE_RW), r.args[2])
            owner = [l3 for l3, l2 in kernel_l2.items() if l2 == m]
            if rw[m][0] and owner and owner[0] not in unpinned:
                bad.append(f"clock {r.clock}: kernel L2 {m:#x} made writable while pinned")
        elif r.op == "mmuext_op":
            for o in r.args[0]:
                if o.cmd == abi.MMUEXT_PIN_L3_TABLE:
                    l2 = kernel_l2[o.arg1]
                    unpinned.discard(o.arg1)
                    if rw.get(o.arg1, (True, 0)) != (False, abi.UVMF_TLB_FLUSH):
                        bad.append(f"clock {r.clock}: L3 {o.arg1:#x} pinned without RO+flush")
                    if rw.get(l2, (True, 0))[0]:
                        bad.append(f"clock {r.clock}: L3 {o.arg1:#x} pinned, its L2 writable")
                elif o.cmd in (abi.MMUEXT_PIN_L4_TABLE, abi.MMUEXT_NEW_USER_BASEPTR):
                    bad.append(f"clock {r.clock}: 64-bit-only command {o.cmd} on PAE")
                elif o.cmd == abi.MMUEXT_UNPIN_TABLE:
                    unpinned.add(o.arg1)
    return bad


def test_recipe_order_holds_in_the_trace(k: Kernel) -> None:
    procs = _busy(k)
    k.switch_to(procs[1])
    for p in procs:
        k.exit(p)
    assert recipe_violations(k) == []


def _pairs(k: Kernel, procs: list[Process]) -> dict[int, int]:
    return {mfn(k, p.mm.l3): mfn(k, p.mm.kernel_l2) for p in procs}


def test_pin_l3_order_holds_in_the_trace(k: Kernel) -> None:
    procs = _busy(k)
    pairs = _pairs(k, [*procs, *(k.spawn() for _ in range(2))])
    k.switch_to(procs[2])
    for p in list(k.processes):
        k.exit(p)
    assert pin_l3_violations(k, pairs) == []


def test_the_pin_l3_order_check_catches_an_l3_pinned_before_its_kernel_l2_is_ro(
    k: Kernel,
) -> None:
    def l2_late(km: KernelMemory, l3: Pfn, kernel_l2: Pfn) -> None:
        make_readonly(km, l3, abi.UVMF_TLB_FLUSH)
        pin_table(km, l3, 3)
        make_readonly(km, kernel_l2, abi.UVMF_NONE)

    l3, l2 = k.km.alloc.free_list[-1], k.km.alloc.free_list[-2]  # spawn's two frames
    with steps.override(build.pin_tree_pae, l2_late), pytest.raises(KernelPanic):
        k.spawn()
    assert any("its L2 writable" in v for v in pin_l3_violations(k, {mfn(k, l3): mfn(k, l2)}))


def test_sharing_the_boot_kernel_l2_is_refused_by_xen(k: Kernel) -> None:
    """An L2 in slot 3 belongs to one L3 only (Xen ``pae_xen_mappings_check``)."""

    def shared(
        km: KernelMemory, l3: Pfn, kernel_l2: Pfn, kernel_pmd: Mapping[int, int]
    ) -> dict[Pfn, dict[int, int]]:
        return {l3: {3: km.load_entry(km.boot_l4, 3)}, kernel_l2: {}}

    with steps.override(build.pae_pgd_images, shared), pytest.raises(KernelPanic) as info:
        k.spawn()
    assert info.value.errno == errno.EINVAL
    assert k.hypervisor.console(k.domain.domid)[-1].rule == "l3.pae-xen-l2-shared"


# -- the pitfall: PIN_L4 on a PAE guest is a silent no-op ----------------------------------


def test_pin_l4_on_a_pae_guest_succeeds_and_pins_nothing(k: Kernel) -> None:
    with steps.override(build.pin_tree_pae, pin_tree_with_pin_l4):
        p = k.spawn()  # no error at all
    l3 = frame(k, p.mm.l3)
    assert (l3.pinned, l3.type_count) == (False, 0)
    assert l3.type.name != "L3"


def test_a_tree_pinned_with_pin_l4_loses_its_validation_when_switched_away(k: Kernel) -> None:
    with steps.override(build.pin_tree_pae, pin_tree_with_pin_l4):
        p = k.spawn()
    q = k.spawn()
    k.switch_to(p)  # loading validates it (the base holds the type) ...
    assert frame(k, p.mm.l3).validated
    k.switch_to(q)  # ... and nothing holds it once another tree is loaded
    l3 = frame(k, p.mm.l3)
    assert (l3.type_count, l3.validated) == (0, False)


def test_xen_checks_nothing_written_into_a_tree_pinned_with_pin_l4(k: Kernel) -> None:
    """A data frame, writable in the direct map, linked as an L2: Xen refuses it
    in a pinned L3; in a tree "pinned" with PIN_L4 it is a raw, unchecked write."""
    with steps.override(build.pin_tree_pae, pin_tree_with_pin_l4):
        p = k.spawn()
    data = k.km.alloc.alloc()
    link_table(k.km, p.mm.l3, 1, data)
    k.km.hc.flush()
    assert abi.pte_mfn(table(k, mfn(k, p.mm.l3))[1]) == mfn(k, data)


def test_the_same_link_into_a_pinned_l3_is_refused(k: Kernel) -> None:
    p = k.spawn()
    data = k.km.alloc.alloc()
    with pytest.raises(KernelPanic) as info:
        link_table(k.km, p.mm.l3, 1, data)  # outside a lazy batch: issued at once
    assert info.value.rule == "type.writable-mapped"
    assert table(k, mfn(k, p.mm.l3))[1] == 0


def test_a_tree_pinned_with_pin_l4_is_refused_at_exit(k: Kernel) -> None:
    with steps.override(build.pin_tree_pae, pin_tree_with_pin_l4):
        p = k.spawn()
    with pytest.raises(KernelPanic) as info:
        k.exit(p)
    assert info.value.errno == errno.EINVAL
    assert info.value.step == "minikern.recipe:unpin_table"
    assert "minikern.build:release_tree_pae" in str(info.value)
