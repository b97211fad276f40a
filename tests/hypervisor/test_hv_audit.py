"""The audit finds each kind of broken invariant (it is cheap, not blind).

Each test corrupts one thing in Xen's internal state of a freshly built
domain -- something no hypercall can do -- and checks that ``xen.audit()``
names it, with the frame.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hypervisor import Hypervisor, PageType, abi
from hypervisor.mm.frames import PageInfo


def _machine() -> tuple[Hypervisor, int, int, int]:
    """A machine with one domain: its base (L4), a bootstrap L1, a data frame."""
    xen = Hypervisor(total_frames=1024)
    dom = xen.create_domain(300)
    si = dom.start_info
    first_table = (si.pt_base - si.virt_base) >> 12
    l1 = dom.initial_p2m[first_table + si.nr_pt_frames - 1]
    data = dom.initial_p2m[first_table + si.nr_pt_frames]
    return xen, dom.vcpus[0].cr3, l1, data


def _checks(xen: Hypervisor, mfn: int) -> set[str]:
    return {v.check for v in xen.audit() if v.mfn == mfn}


def test_a_fresh_machine_audits_clean() -> None:
    assert _machine()[0].audit() == []


@pytest.mark.parametrize(
    ("check", "corrupt"),
    [
        ("general-count", lambda pg: setattr(pg, "count", pg.count + 1)),
        ("type-count", lambda pg: setattr(pg, "type_count", pg.type_count + 1)),
        ("linear-count", lambda pg: setattr(pg, "linear", 1)),
        ("leak", lambda pg: setattr(pg, "count", 0)),
    ],
)
def test_a_wrong_counter_of_a_data_frame_is_found(
    check: str, corrupt: Callable[[PageInfo], None]
) -> None:
    xen, _base, _l1, data = _machine()
    corrupt(xen.state.frames[data])  # type: ignore[index]
    assert check in _checks(xen, data)


def test_a_table_typed_but_not_validated_is_found() -> None:
    xen, _base, l1, _data = _machine()
    xen.state.frames[l1].validated = False  # type: ignore[index]
    assert "validated" in _checks(xen, l1)


def test_a_pin_without_a_type_reference_is_found() -> None:
    xen, _base, _l1, data = _machine()
    pg = xen.state.frames[data]  # type: ignore[index]
    pg.pinned, pg.type_count, pg.count = True, 0, pg.count + 1
    assert "pinned" in _checks(xen, data)


def test_a_reference_to_a_free_frame_is_found() -> None:
    xen, base, _l1, _data = _machine()
    del xen.state.frames[base]  # type: ignore[arg-type]
    assert "dangling" in _checks(xen, base)


def test_an_rw_mapping_of_a_page_table_is_found() -> None:
    xen, _base, l1, data = _machine()
    pg = xen.state.frames[data]  # type: ignore[index]
    pg.type = PageType.L1  # the data frame, mapped RW by the direct map, "becomes" a table
    assert "safety" in _checks(xen, data)
    assert any(str(l1) in v.message or f"{l1:#x}" in v.message for v in xen.audit())


def test_an_upper_entry_to_the_wrong_level_is_found() -> None:
    xen, base, l1, _data = _machine()
    words = xen.state.mem.words(base)  # type: ignore[arg-type]
    slot = next(s for s in range(512) if not words[s] and not 256 <= s < 272)
    words[slot] = l1 << abi.PAGE_SHIFT | abi._PAGE_PRESENT
    assert "entry-type" in _checks(xen, l1)


def test_a_stale_writable_translation_of_a_table_is_found() -> None:
    xen, _base, _l1, data = _machine()
    vcpu = xen.domains[0].vcpus[0]
    si = xen.domains[0].start_info
    pfn = xen.domains[0].initial_p2m.index(data)
    vcpu.store(si.virt_base + pfn * 4096, 0)  # caches a writable translation
    xen.state.frames[data].type = PageType.L1  # type: ignore[index]
    assert "stale-writable-tlb" in _checks(xen, data)


def test_an_upper_entry_to_an_unvalidated_table_is_found() -> None:
    xen, _base, l1, _data = _machine()
    xen.state.frames[l1].validated = False  # type: ignore[index]
    assert "entry-validated" in _checks(xen, l1)


def test_a_table_changed_since_the_last_audit_is_read_again() -> None:
    """The audit remembers what each table holds by its exact bytes: a store
    that changes a table behind Xen's back is found at the next audit."""
    xen, _base, l1, data = _machine()
    assert xen.audit() == []
    words = xen.state.mem.words(l1)  # type: ignore[arg-type]
    slot = next(s for s in range(512) if not words[s])
    words[slot] = data << abi.PAGE_SHIFT | abi._PAGE_PRESENT  # a reference nobody took
    assert "general-count" in _checks(xen, data)
    words[slot] = 0
    assert xen.audit() == []
