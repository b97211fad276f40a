"""The recipe's order in the trace and the two strategies."""

from __future__ import annotations

import pytest
from mkhelpers import BASE, PAGE, boot, recipe_violations, user_mappings

from hypervisor import abi
from minikern import Kernel, KernelPanic
from minikern.kmem import pfn_to_mfn


def _script(k: Kernel) -> list[object]:
    p = k.spawn()
    p.mmap(BASE, 600 * PAGE, "rw")
    p.mmap(0x4000_0000, 2 * PAGE, "r")
    for i in range(0, 600, 5):
        p.write(BASE + i * PAGE, b"%d" % i)
    p.read(0x4000_0000, 1)
    c = k.fork(p)
    c.write(BASE + 5 * PAGE, b"child")
    p.mprotect(BASE, 10 * PAGE, "r")
    c.munmap(BASE + 500 * PAGE, 100 * PAGE)
    g = k.fork(c)
    return [p, c, g]


def test_recipe_order_holds_in_the_trace(k: Kernel) -> None:
    procs = _script(k)
    k.switch_to(procs[1])
    for p in procs:
        k.exit(p)
    assert recipe_violations(k) == []


def test_strategies_give_the_same_memory_and_mappings() -> None:
    kernels = [boot(strategy=s) for s in ("linux", "minios")]
    views = []
    for k in kernels:
        procs = _script(k)
        memory = [p.read(BASE, 500 * PAGE) for p in procs]
        views.append((memory, [user_mappings(k, p) for p in procs]))
    assert views[0] == views[1]


def test_linux_strategy_pins_the_child_tree_in_one_batch() -> None:
    k = boot(strategy="linux")
    p = k.spawn()
    p.mmap(BASE, 1024 * PAGE, "rw", populate=True)
    mark = len(k.hypervisor.trace.records)
    k.fork(p)
    ops = [
        r.op for r in k.hypervisor.trace.records[mark:] if r.kind == "hypercall" and r.depth == 0
    ]
    assert ops == ["multicall"]


def test_minios_strategy_links_each_read_only_frame_into_a_live_tree() -> None:
    k = boot(strategy="minios")
    p = k.spawn()
    mark = len(k.hypervisor.trace.records)
    p.mmap(BASE, PAGE, "rw", populate=True)
    subs = [r for r in k.hypervisor.trace.records[mark:] if r.kind == "hypercall" and r.depth]
    kinds = [r.op for r in subs]
    assert kinds[:2] == ["update_va_mapping", "mmu_update"]
    assert recipe_violations(k) == []


def test_a_refused_direct_hypercall_carries_the_rule(k: Kernel) -> None:
    pfn = k.km.alloc.free_list[-1]
    with pytest.raises(KernelPanic) as info:
        k.km.hc.now((abi.MMUEXT_UNPIN_TABLE, pfn_to_mfn(k.km, pfn)))
    assert info.value.rule == "unpin.not-pinned"
