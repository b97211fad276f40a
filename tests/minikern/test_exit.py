"""exit: switch away, unpin, make writable, free -- and nothing leaks."""

from __future__ import annotations

import pytest
from mkhelpers import BASE, PAGE, recipe_violations, table_mfns, table_type_count

from hypervisor.abi import Pfn
from minikern import Kernel, KernelPanic, recipe, steps
from minikern.kmem import KernelMemory, pfn_to_mfn


def _workload(k: Kernel) -> list[object]:
    p = k.spawn()
    p.mmap(BASE, 700 * PAGE, "rw")
    p.mmap(0x7FFF_FFF0_0000, 4 * PAGE, "rw")
    for i in range(0, 700, 3):
        p.write(BASE + i * PAGE, b"p")
    p.write(0x7FFF_FFF0_0000, b"top")
    c = k.fork(p)
    c.write(BASE, b"c")
    g = k.fork(c)
    g.write(BASE + 3 * PAGE, b"g")
    return [p, c, g]


def test_all_frames_return_after_every_process_exits(k: Kernel) -> None:
    for p in _workload(k):
        k.exit(p)
    assert k.free_pages() == k.boot_free


def test_exit_in_any_order_returns_all_frames(k: Kernel) -> None:
    procs = _workload(k)
    for p in (procs[1], procs[0], procs[2]):
        k.exit(p)
    assert k.free_pages() == k.boot_free


def test_former_page_tables_lose_their_type(k: Kernel) -> None:
    procs = _workload(k)
    tables = [mfn for p in procs for mfn in table_mfns(k, p)]
    for p in procs:
        k.exit(p)
    assert all(table_type_count(k, mfn) == 0 for mfn in tables)
    assert not any(k.hypervisor.frame(mfn).pinned for mfn in tables)


def test_exit_of_the_parent_keeps_the_childs_memory(k: Kernel) -> None:
    p, c, _g = _workload(k)
    k.exit(p)
    assert c.read(BASE + 3 * PAGE, 1) == b"p"
    assert c.read(BASE, 1) == b"c"


def test_exit_of_the_running_process_switches_to_the_boot_l4_first(k: Kernel) -> None:
    p = k.spawn()
    k.switch_to(p)
    k.exit(p)
    assert k.vcpu.cr3 == pfn_to_mfn(k.km, k.km.boot_l4)
    assert k.vcpu.user_base == 0
    assert recipe_violations(k) == []


def test_switch_loads_both_bases_in_one_mmuext_op(k: Kernel) -> None:
    p = k.spawn()
    mark = len(k.hypervisor.trace.records)
    k.switch_to(p)
    calls = [r for r in k.hypervisor.trace.records[mark:] if r.kind == "hypercall"]
    assert len(calls) == 1
    assert [o.cmd for o in calls[0].args[0]] == [5, 15]
    assert (k.vcpu.cr3, k.vcpu.user_base) == (
        pfn_to_mfn(k.km, p.mm.l4),
        pfn_to_mfn(k.km, p.mm.user_l4),
    )


def test_a_fault_inside_exit_is_a_kernel_panic_naming_the_step_not_a_page_fault(
    k: Kernel,
) -> None:
    def forgot(km: KernelMemory, pfn: Pfn, uvmf: int) -> None:
        return None

    p = k.spawn()
    with steps.override(recipe.make_writable, forgot), pytest.raises(KernelPanic) as info:
        k.exit(p)
    assert info.value.step == "minikern.recipe:free_frame"
    assert "kernel page fault" in str(info.value)
