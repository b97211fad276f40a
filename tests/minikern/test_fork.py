"""fork with copy-on-write: isolation, sharing, cost."""

from __future__ import annotations

import pytest
from mkhelpers import BASE, PAGE, boot, hypercalls_since, trapped_since, user_mappings

from minikern import Kernel, SegmentationFault


def _filled(k: Kernel, pages: int) -> object:
    p = k.spawn()
    p.mmap(BASE, pages * PAGE, "rw")
    for i in range(pages):
        p.write(BASE + i * PAGE, b"parent%d" % i)
    return p


def test_child_sees_the_parents_memory(k: Kernel) -> None:
    p = _filled(k, 3)
    c = k.fork(p)
    assert c.read(BASE + 2 * PAGE, 7) == b"parent2"


def test_child_writes_are_invisible_to_the_parent(k: Kernel) -> None:
    p = _filled(k, 3)
    c = k.fork(p)
    c.write(BASE, b"CHILD")
    assert p.read(BASE, 7) == b"parent0"
    assert c.read(BASE, 7) == b"CHILDt0"


def test_parent_writes_are_invisible_to_the_child(k: Kernel) -> None:
    p = _filled(k, 3)
    c = k.fork(p)
    p.write(BASE + PAGE, b"PARENT")
    assert c.read(BASE + PAGE, 7) == b"parent1"


def test_isolation_holds_over_many_pages(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 600 * PAGE, "rw", populate=True)
    for i in range(0, 600, 7):
        p.write(BASE + i * PAGE, b"parent%d" % i)
    c = k.fork(p)
    for i in range(0, 600, 7):
        c.write(BASE + i * PAGE, b"c%d" % i)
    for i in range(0, 600, 7):
        want = b"parent%d" % i
        assert p.read(BASE + i * PAGE, len(want)) == want
        assert c.read(BASE + i * PAGE, 2) == (b"c%d" % i)[:2]


def test_fork_of_a_fork_keeps_three_views(k: Kernel) -> None:
    p = _filled(k, 2)
    c = k.fork(p)
    c.write(BASE, b"child!")
    g = k.fork(c)
    g.write(BASE, b"grand!")
    p.write(BASE + PAGE, b"PARENT")
    assert [x.read(BASE, 6) for x in (p, c, g)] == [b"parent", b"child!", b"grand!"]
    assert [x.read(BASE + PAGE, 6) for x in (p, c, g)] == [b"PARENT", b"parent", b"parent"]


def test_fork_after_partial_writes_copies_only_touched_pages(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 8 * PAGE, "rw")
    p.write(BASE + 3 * PAGE, b"three")
    c = k.fork(p)
    assert list(user_mappings(k, c)) == [BASE + 3 * PAGE]
    c.write(BASE + 5 * PAGE, b"five")
    assert p.read(BASE + 5 * PAGE, 4) == bytes(4)
    assert c.read(BASE + 3 * PAGE, 5) == b"three"


def test_fork_shares_frames_read_only(k: Kernel) -> None:
    p = _filled(k, 2)
    c = k.fork(p)
    pm, cm = user_mappings(k, p), user_mappings(k, c)
    assert pm == cm
    assert all(not flags & 2 for _, flags in pm.values())


def test_a_write_copies_the_page_for_the_writer_alone(k: Kernel) -> None:
    p = _filled(k, 2)
    c = k.fork(p)
    shared = user_mappings(k, p)[BASE][0]
    c.write(BASE, b"x")
    assert user_mappings(k, p)[BASE] == (shared, 0x5)
    assert user_mappings(k, c)[BASE][0] != shared
    p.write(BASE, b"y")
    assert user_mappings(k, p)[BASE] == (shared, 0x7)


def test_read_only_mappings_stay_read_only_in_the_child(k: Kernel) -> None:
    p = _filled(k, 1)
    p.mprotect(BASE, PAGE, "r")
    c = k.fork(p)
    with pytest.raises(SegmentationFault):
        c.write(BASE, b"x")


def test_parent_tlb_is_flushed_after_fork(k: Kernel) -> None:
    p = _filled(k, 1)
    mark = len(k.hypervisor.trace.records)
    k.fork(p)
    flushes = [r for r in k.hypervisor.trace.records[mark:] if r.kind == "tlb_flush"]
    assert flushes[-1].reason == "tlb_flush_local"


@pytest.mark.parametrize("pages", [64, 1024])
def test_batched_fork_costs_pages_over_512_hypercalls_and_no_traps(
    strategy: str, pages: int
) -> None:
    k = boot(strategy=strategy)
    p = k.spawn()
    p.mmap(BASE, pages * PAGE, "rw", populate=True)
    mark = len(k.hypervisor.trace.records)
    k.fork(p)
    assert trapped_since(k, mark) == 0
    assert len(hypercalls_since(k, mark)) <= 2 + pages // 512


def test_linux_fork_traps_once_per_writable_page() -> None:
    k = boot(fork_style="linux")
    p = k.spawn()
    p.mmap(BASE, 100 * PAGE, "rw", populate=True)
    p.mprotect(BASE, 10 * PAGE, "r")
    mark = len(k.hypervisor.trace.records)
    k.fork(p)
    assert trapped_since(k, mark) == 90
    updates = [r for r in hypercalls_since(k, mark) if r.op == "mmu_update"]
    assert len(updates) == -(-100 // 31)


def test_linux_fork_gives_the_same_memory(strategy: str) -> None:
    k = boot(strategy=strategy, fork_style="linux")
    p = _filled(k, 40)
    c = k.fork(p)
    c.write(BASE, b"CHILD")
    assert p.read(BASE, 7) == b"parent0"
    assert c.read(BASE + 39 * PAGE, 8) == b"parent39"
