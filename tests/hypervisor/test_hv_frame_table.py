"""The frame table makes the records of frames handed out in bulk on first
use, and every read behaves as if they all existed."""

from __future__ import annotations

import copy
import pickle

from hypothesis import given
from hypothesis import strategies as st

from hypervisor.abi import Mfn
from hypervisor.mm.frames import FrameTable, PageInfo, PageInfoArgs, PageType

FRESH: PageInfoArgs = (3, 1, PageType.NONE, 0, False, False, True)
MAPPED: PageInfoArgs = (3, 2, PageType.WRITABLE, 1, True, False, True)


def _table(mfns: range = range(100, 110), args: PageInfoArgs = FRESH) -> FrameTable:
    t = FrameTable()
    t.add_bulk([Mfn(m) for m in mfns], args)
    return t


def _fields(pg: PageInfo) -> tuple[object, ...]:
    return (pg.owner, pg.count, pg.type, pg.type_count, pg.validated, pg.pinned, pg.allocated)


def test_bulk_frame_record_is_made_on_lookup_with_its_arguments() -> None:
    assert _fields(_table(args=MAPPED)[Mfn(104)]) == MAPPED


def test_bulk_frame_lookup_returns_the_same_record_each_time() -> None:
    t = _table()
    t[Mfn(104)].count += 1
    assert t.get(Mfn(104)).count == 2  # type: ignore[union-attr]


def test_len_and_membership_count_records_not_made_yet() -> None:
    t = _table()
    assert (len(t), Mfn(109) in t, Mfn(110) in t) == (10, True, False)


def test_get_of_a_frame_not_in_use_returns_the_default() -> None:
    assert _table().get(Mfn(7)) is None


def test_iteration_sees_every_bulk_frame() -> None:
    t = _table()
    t[Mfn(105)]
    assert sorted(t) == list(range(100, 110))
    assert len(t.items()) == 10


def test_deleting_a_bulk_frame_never_looked_at_frees_it() -> None:
    t = _table()
    del t[Mfn(103)]
    assert (Mfn(103) in t, len(t)) == (False, 9)


def test_setting_a_bulk_frame_replaces_its_pending_record() -> None:
    t = _table()
    pg = PageInfo(None)
    t[Mfn(101)] = pg
    assert (t[Mfn(101)] is pg, len(t)) == (True, 10)


def test_deepcopy_copies_pending_records_too() -> None:
    t = _table()
    clone = copy.deepcopy(t)
    clone[Mfn(102)].count = 9
    assert (type(clone), len(clone), t[Mfn(102)].count) == (FrameTable, 10, 1)


def test_pickle_round_trip_keeps_every_record() -> None:
    clone = pickle.loads(pickle.dumps(_table(args=MAPPED)))
    assert {m: _fields(pg) for m, pg in clone.items()} == dict.fromkeys(range(100, 110), MAPPED)


def test_copy_holds_the_same_records_and_equals_the_original() -> None:
    t = _table()
    t[Mfn(100)]
    clone = t.copy()
    assert clone == t
    assert clone[Mfn(107)] is t[Mfn(107)]


OPS = st.lists(
    st.tuples(st.sampled_from(["get", "del", "bulk", "set", "in", "pop"]), st.integers(0, 12)),
    max_size=60,
)


@given(OPS)
def test_frame_table_behaves_like_a_dict_of_every_record(ops: list[tuple[str, int]]) -> None:
    """Random lookups, deletions, bulk additions and stores: the table always
    reads as the plain dict of the records it stands for."""
    t, model = FrameTable(), {}
    for op, m in ops:
        mfn = Mfn(m)
        if op == "bulk" and mfn not in model:
            t.add_bulk([mfn], FRESH)
            model[mfn] = FRESH
        elif op == "set":
            pg = PageInfo(1, count=m)
            t[mfn] = pg
            model[mfn] = _fields(pg)
        elif op == "del" and mfn in model:
            del t[mfn]
            del model[mfn]
        elif op == "pop":
            got = t.pop(mfn, None)
            want = model.pop(mfn, None)
            assert (got and _fields(got)) == want
        elif op == "get":
            got = t.get(mfn)
            assert (got and _fields(got)) == model.get(mfn)
        else:
            assert (mfn in t) == (mfn in model)
        assert len(t) == len(model)
    assert {m: _fields(pg) for m, pg in t.items()} == model
