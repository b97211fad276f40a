"""mmap, munmap, mprotect, demand-zero faults and bad input."""

from __future__ import annotations

import pytest
from mkhelpers import BASE, PAGE, boot, table_mfns, table_type_count, user_mappings

from minikern import Kernel, OutOfMemory, SegmentationFault


def test_written_bytes_read_back(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 3 * PAGE, "rw")
    p.write(BASE + 10, b"hello")
    assert p.read(BASE + 10, 5) == b"hello"


def test_a_write_may_cross_pages(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 2 * PAGE, "rw")
    p.write(BASE + PAGE - 3, b"abcdef")
    assert p.read(BASE + PAGE - 3, 6) == b"abcdef"


def test_untouched_pages_read_as_zero(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "r")
    assert p.read(BASE, 16) == bytes(16)


def test_mmap_alone_allocates_nothing(k: Kernel) -> None:
    p = k.spawn()
    before = k.free_pages()
    p.mmap(BASE, 64 * PAGE, "rw")
    assert k.free_pages() == before
    assert user_mappings(k, p) == {}


def test_first_touch_maps_one_zeroed_frame(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 64 * PAGE, "rw")
    p.write(BASE + 5 * PAGE, b"x")
    assert list(user_mappings(k, p)) == [BASE + 5 * PAGE]


def test_freed_frames_are_junk_filled(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"secret")
    mfn = user_mappings(k, p)[BASE][0]
    p.munmap(BASE, PAGE)
    assert k.hypervisor.read_frame(mfn) == b"\x01" * PAGE


def test_reused_frames_read_as_zero(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"secret")
    p.munmap(BASE, PAGE)
    p.mmap(BASE, PAGE, "rw")
    assert p.read(BASE, 6) == bytes(6)


def test_populate_maps_every_page(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 600 * PAGE, "rw", populate=True)
    assert len(user_mappings(k, p)) == 600


def test_munmap_returns_frames_and_emptied_tables(k: Kernel) -> None:
    p = k.spawn()
    before = k.free_pages()
    p.mmap(BASE, 600 * PAGE, "rw", populate=True)
    old_tables = table_mfns(k, p)
    p.munmap(BASE, 600 * PAGE)
    assert k.free_pages() == before
    assert user_mappings(k, p) == {}
    for mfn in set(old_tables) - set(table_mfns(k, p)):
        assert table_type_count(k, mfn) == 0
        assert not k.hypervisor.frame(mfn).pinned


def test_munmap_of_part_keeps_the_rest(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 4 * PAGE, "rw")
    p.write(BASE, b"a" * (4 * PAGE))
    p.munmap(BASE + PAGE, 2 * PAGE)
    assert p.read(BASE, 4) == b"aaaa"
    assert p.read(BASE + 3 * PAGE, 4) == b"aaaa"
    with pytest.raises(SegmentationFault):
        p.read(BASE + PAGE, 1)


def test_mprotect_read_only_stops_writes(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 2 * PAGE, "rw")
    p.write(BASE, b"keep")
    p.mprotect(BASE, 2 * PAGE, "r")
    with pytest.raises(SegmentationFault):
        p.write(BASE, b"lose")
    assert p.read(BASE, 4) == b"keep"


def test_mprotect_back_to_rw_allows_writes(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"one")
    p.mprotect(BASE, PAGE, "r")
    p.mprotect(BASE, PAGE, "rw")
    p.write(BASE, b"two")
    assert p.read(BASE, 3) == b"two"


def test_mprotect_preserves_accessed_and_dirty(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"x")
    l1, slot = p.mm.leaf_slot(BASE >> 12)
    before = k.km.load_entry(l1, slot) & 0x60
    p.mprotect(BASE, PAGE, "r")
    assert before == 0x60
    assert k.km.load_entry(l1, slot) & 0x60 == 0x60


def test_many_page_mprotect_flushes_the_whole_tlb(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 40 * PAGE, "rw", populate=True)
    mark = len(k.hypervisor.trace.records)
    p.mprotect(BASE, 40 * PAGE, "r")
    flushes = [r for r in k.hypervisor.trace.records[mark:] if r.kind == "tlb_flush"]
    assert [f.scope for f in flushes] == ["all"]


def test_few_page_munmap_invalidates_page_by_page(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, 3 * PAGE, "rw", populate=True)
    p.mmap(BASE + 10 * PAGE, PAGE, "rw", populate=True)
    mark = len(k.hypervisor.trace.records)
    p.munmap(BASE, 3 * PAGE)
    flushes = [r for r in k.hypervisor.trace.records[mark:] if r.kind == "tlb_flush"]
    assert [f.scope for f in flushes] == ["va"] * 3


def test_mmap_over_a_mapping_replaces_it(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"old")
    p.mmap(BASE, PAGE, "r")
    assert p.read(BASE, 3) == bytes(3)


# -- bad input -----------------------------------------------------------------------


def test_reading_unmapped_memory_is_a_segfault(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(SegmentationFault):
        p.read(BASE, 1)


def test_writing_read_only_memory_is_a_segfault(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "r")
    with pytest.raises(SegmentationFault):
        p.write(BASE, b"x")


def test_user_code_cannot_touch_kernel_memory(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(SegmentationFault):
        p.read(k.km.va(k.km.boot_l4), 8)
    with pytest.raises(SegmentationFault):
        p.write(k.km.virt_base + 0x1000 * 2000, b"x")


def test_non_canonical_addresses_are_a_segfault(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(SegmentationFault):
        p.read(0x0000_9000_0000_0000, 1)


def test_munmap_of_never_mapped_memory_is_a_segfault(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    with pytest.raises(SegmentationFault):
        p.munmap(BASE, 2 * PAGE)
    p.write(BASE, b"still mapped")


def test_mprotect_of_never_mapped_memory_is_a_segfault(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(SegmentationFault):
        p.mprotect(BASE, PAGE, "r")


@pytest.mark.parametrize(
    ("va", "length", "prot"),
    [(BASE + 1, PAGE, "rw"), (BASE, 0, "rw"), (BASE, PAGE, "x"), (1 << 47, PAGE, "r")],
)
def test_mmap_refuses_bad_arguments(k: Kernel, va: int, length: int, prot: str) -> None:
    p = k.spawn()
    with pytest.raises(ValueError):
        p.mmap(va, length, prot)


def test_running_dry_is_out_of_memory_and_changes_nothing() -> None:
    k = boot(nr_pages=512)
    p = k.spawn()
    free = k.free_pages()
    with pytest.raises(OutOfMemory):
        p.mmap(BASE, (free + 1) * PAGE, "rw", populate=True)
    assert k.free_pages() == free
    assert isinstance(OutOfMemory(1, 0), MemoryError)


def test_demand_faults_running_dry_are_out_of_memory() -> None:
    k = boot(nr_pages=512)
    p = k.spawn()
    p.mmap(BASE, 1024 * PAGE, "rw")

    def touch_all() -> None:
        for i in range(1024):
            p.write(BASE + i * PAGE, b"x")

    with pytest.raises(OutOfMemory):
        touch_all()
    p.munmap(BASE, 1024 * PAGE)
    k.exit(p)
    assert k.free_pages() == k.boot_free


def test_using_an_exited_process_is_refused(k: Kernel) -> None:
    p = k.spawn()
    k.exit(p)
    with pytest.raises(ProcessLookupError):
        p.mmap(BASE, PAGE, "rw")
    with pytest.raises(ProcessLookupError):
        k.fork(p)


def test_mmap_of_all_user_space_returns_at_once_and_maps_nothing_yet(k: Kernel) -> None:
    p = k.spawn()
    free = k.free_pages()
    p.mmap(0, 1 << 47, "rw")
    assert k.free_pages() == free
    assert len(p.mm.vmas) == 1


def test_munmap_and_mprotect_of_a_huge_range_cost_the_pages_present(k: Kernel) -> None:
    p = k.spawn()
    p.mmap(0, 1 << 47, "rw")
    p.write(0x1234_5000, b"here")
    p.mprotect(0, 1 << 47, "r")
    assert p.read(0x1234_5000, 4) == b"here"
    p.munmap(0, 1 << 47)
    assert len(p.mm.vmas) == 0
    assert not p.mm.ptes


def test_mmap_populate_of_more_than_memory_is_out_of_memory_at_once(k: Kernel) -> None:
    p = k.spawn()
    with pytest.raises(OutOfMemory):
        p.mmap(0, 1 << 40, "rw", populate=True)
    assert len(p.mm.vmas) == 0
