"""What checks read a replayed machine with: :class:`lessons.lab.testing.Machine`'s
table helpers, on a kernel booted here."""

from __future__ import annotations

import pytest

from hypervisor import abi
from lessons.lab.testing import Machine
from minikern import Kernel, Process
from minikern.kmem import pfn_to_mfn


@pytest.fixture(scope="module")
def booted() -> tuple[Kernel, Process, Machine]:
    k = Kernel.boot(nr_pages=2048)
    p = k.spawn()
    p.mmap(0x400000, 3 * 4096, populate=True)
    p.mmap(0x7F0000000000, 4096, populate=True)
    return k, p, Machine(k.hypervisor, {}, True)


def test_entries_are_the_tables_512_entries_as_entry_reads_them(
    booted: tuple[Kernel, Process, Machine],
) -> None:
    k, p, m = booted
    l4 = pfn_to_mfn(k.km, p.mm.user_l4)
    assert m.entries(l4) == [m.entry(l4, slot) for slot in range(512)]


def test_entries_of_a_frame_beyond_memory_are_zero(
    booted: tuple[Kernel, Process, Machine],
) -> None:
    _, _, m = booted
    assert m.entries(m.xen.total_frames) == [0] * 512


def test_tables_below_finds_each_user_table_once_with_its_level(
    booted: tuple[Kernel, Process, Machine],
) -> None:
    k, p, m = booted
    found = m.tables_below(pfn_to_mfn(k.km, p.mm.user_l4))
    want = {(level, pfn_to_mfn(k.km, pfn)) for (level, _), pfn in p.mm.tables.items()}
    assert sorted(found) == sorted(want)


def test_tables_below_lists_parents_before_their_children(
    booted: tuple[Kernel, Process, Machine],
) -> None:
    k, p, m = booted
    l4 = pfn_to_mfn(k.km, p.mm.user_l4)
    listed: list[int] = [l4]
    for _, mfn in m.tables_below(l4):
        children = {abi.pte_mfn(e) for t in listed for e in m.entries(t)}
        assert mfn in children, f"{mfn:#x} is listed before the table that points at it"
        listed.append(mfn)
