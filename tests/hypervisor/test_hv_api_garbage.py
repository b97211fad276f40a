"""Garbage fed to every public entry point of the hypervisor package.

The host-side API (the machine, its introspection, the tracer, the config,
the pictures, the replayer) answers a wrong type or value with ``TypeError``
or ``ValueError`` naming the argument, and nothing else escapes: no internal
``IndexError``, ``AttributeError``, ``ZeroDivisionError`` or ``KeyError``.
A guest's memory accesses at a garbage address are page faults, as on the
hardware (and a guest's hypercall arguments get Xen's errno, tested in
``test_hv_bad_input``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypervisor import Config, HypercallError, Hypervisor, PageFault, render, replay
from hypervisor.trace import TraceFormatError

GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 600),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3),
    st.tuples(st.integers(0, 3)),
    st.sampled_from([object(), ..., int, "x", b"", [], {}, -1, 0, 1 << 64]),
)


def _machine() -> Hypervisor:
    xen = Hypervisor(total_frames=1024)
    xen.create_domain(200)
    return xen


def _va(xen: Hypervisor) -> int:
    return xen.domains[0].start_info.virt_base + 100 * 4096


def _trace(xen: Hypervisor) -> replay.Trace:
    return replay.parse(xen.trace.to_jsonl())


Entry = Callable[[Hypervisor, Any], object]
ENTRIES: dict[str, tuple[str, Entry]] = {
    # the machine
    "Hypervisor(total_frames)": ("total_frames", lambda x, g: Hypervisor(total_frames=g)),
    "Hypervisor(config)": ("config", lambda x, g: Hypervisor(total_frames=512, config=g)),
    "create_domain(nr_pages)": ("nr_pages", lambda x, g: x.create_domain(g)),
    "create_domain(privileged)": ("privileged", lambda x, g: x.create_domain(50, privileged=g)),
    "create_domain(guest_width)": ("guest_width", lambda x, g: x.create_domain(50, guest_width=g)),
    "create_domain(vcpus)": ("vcpus", lambda x, g: x.create_domain(50, vcpus=g)),
    "domain": ("domid", lambda x, g: x.domain(g)),
    "frame": ("mfn", lambda x, g: x.frame(g)),
    "m2p": ("mfn", lambda x, g: x.m2p(g)),
    "read_frame": ("mfn", lambda x, g: x.read_frame(g)),
    "console(domid)": ("domid", lambda x, g: x.console(g)),
    "console(clear)": ("clear", lambda x, g: x.console(0, clear=g)),
    # a vCPU's memory
    "load(va)": ("va", lambda x, g: x.domains[0].vcpus[0].load(g)),
    "load(size)": ("size", lambda x, g: x.domains[0].vcpus[0].load(_va(x), g)),
    "store(va)": ("va", lambda x, g: x.domains[0].vcpus[0].store(g, 0)),
    "store(value)": ("value", lambda x, g: x.domains[0].vcpus[0].store(_va(x), g)),
    "store(size)": ("size", lambda x, g: x.domains[0].vcpus[0].store(_va(x), 0, g)),
    "read(va)": ("va", lambda x, g: x.domains[0].vcpus[0].read(g, 8)),
    "read(n)": ("n", lambda x, g: x.domains[0].vcpus[0].read(_va(x), g)),
    "write(va)": ("va", lambda x, g: x.domains[0].vcpus[0].write(g, b"ab")),
    "write(data)": ("data", lambda x, g: x.domains[0].vcpus[0].write(_va(x), g)),
    # the tracer and the config
    "trace.emit": ("record", lambda x, g: x.trace.emit(g)),
    "trace.add_listener": ("listener", lambda x, g: x.trace.add_listener(g)),
    "trace.remove_listener": ("listener", lambda x, g: x.trace.remove_listener(g)),
    "Config(linear_pt)": ("linear_pt", lambda x, g: Config(linear_pt=g)),
    "Config(linear_single_level)": (
        "linear_single_level",
        lambda x, g: Config(linear_single_level=g),
    ),
    "Config(fastpath)": ("fastpath", lambda x, g: Config(fastpath=g)),
    "Config(flush_on_l2plus_update)": (
        "flush_on_l2plus_update",
        lambda x, g: Config(flush_on_l2plus_update=g),
    ),
    # the pictures
    "memory_map(xen)": ("xen", lambda x, g: render.memory_map(g)),
    "memory_map(width)": ("width", lambda x, g: render.memory_map(x, width=g)),
    "page_table_tree(xen)": ("xen", lambda x, g: render.page_table_tree(g, 0x110)),
    "page_table_tree(root_mfn)": ("root_mfn", lambda x, g: render.page_table_tree(x, g)),
    "page_table_tree(levels)": (
        "levels",
        lambda x, g: render.page_table_tree(x, x.domains[0].vcpus[0].cr3, levels=g),
    ),
    "page_table_tree(max_children)": (
        "max_children",
        lambda x, g: render.page_table_tree(x, x.domains[0].vcpus[0].cr3, max_children=g),
    ),
    "frame_table(xen)": ("xen", lambda x, g: render.frame_table(g)),
    "frame_table(mfns)": ("mfns", lambda x, g: render.frame_table(x, g)),
    "frame_table(domid)": ("domid", lambda x, g: render.frame_table(x, domid=g)),
    "hypercall_log(records)": ("records", lambda x, g: render.hypercall_log(g)),
    "hypercall_log(xen)": ("xen", lambda x, g: render.hypercall_log(x.trace, xen=g)),
    "audit_verdict": ("xen", lambda x, g: render.audit_verdict(g)),
    "explain": ("exc", lambda x, g: render.explain(g)),
    "decode_args": ("rec", lambda x, g: render.decode_args(g)),
    "to_svg(renderable)": ("renderable", lambda x, g: render.to_svg(g)),
    "to_svg(width)": ("width", lambda x, g: render.to_svg("x", width=g)),
    "to_svg(title)": ("title", lambda x, g: render.to_svg("x", title=g)),
    "va_range(prefix)": ("prefix", lambda x, g: render.va_range(g, 1, 0, 4)),
    "va_range(level)": ("level", lambda x, g: render.va_range(0, g, 0, 4)),
    "va_range(slot)": ("slot", lambda x, g: render.va_range(0, 1, g, 4)),
    "va_range(levels)": ("levels", lambda x, g: render.va_range(0, 1, 0, g)),
    # the replayer
    "replay.parse": ("text", lambda x, g: replay.parse(g)),
    "replay.machine": ("header", lambda x, g: replay.machine(g)),
    "replay.run(trace)": ("trace", lambda x, g: replay.run(g)),
    "replay.run(at)": ("at", lambda x, g: replay.run(_trace(x), at=g)),
    "replay.run(xen)": ("xen", lambda x, g: replay.run(_trace(x), xen=g)),
    "replay.replay(records)": ("records", lambda x, g: replay.replay(g, _machine())),
    "replay.replay(xen)": ("xen", lambda x, g: replay.replay([], g)),
}

GUEST_ADDRESSES = {"va"}
"""Arguments a guest controls: garbage there is a page fault, as on the hardware."""


def _call_with_garbage(name: str, garbage: Any) -> None:
    argument, call = ENTRIES[name]
    try:
        call(_machine(), garbage)
    except TraceFormatError:
        assert argument == "text"  # an unreadable trace says which line
    except (TypeError, ValueError) as exc:
        if argument not in str(exc):
            pytest.fail(f"{name}({garbage!r}): {exc!r} does not name {argument!r}")
    except PageFault:
        # a length reaching past the last mapped page faults, as on the hardware
        if argument not in GUEST_ADDRESSES and argument != "n":
            pytest.fail(f"{name}({garbage!r}) faulted")
    except HypercallError as exc:  # pragma: no cover - a failure message
        pytest.fail(f"{name}({garbage!r}) is not a hypercall, yet: {exc}")


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(name=st.sampled_from(sorted(ENTRIES)), garbage=GARBAGE)
def test_garbage_gives_a_type_or_value_error_naming_the_argument(name: str, garbage: Any) -> None:
    _call_with_garbage(name, garbage)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_each_entry_point_refuses_an_object_of_no_use(name: str) -> None:
    argument, call = ENTRIES[name]
    if argument in GUEST_ADDRESSES:
        with pytest.raises(PageFault):
            call(_machine(), object())
        return
    with pytest.raises((TypeError, ValueError), match=argument):
        call(_machine(), object())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: Hypervisor(total_frames="x"), "total_frames must be an int"),
        (lambda x: x.domain(7), "domid 7: there is no domain 7"),
        (lambda x: render.memory_map(x, width=0), "width must be 8..1024"),
        (lambda x: render.explain(ValueError("no")), "exc must be a HypercallError"),
        (lambda x: x.domains[0].vcpus[0].read(_va(x), -1), "n must be at least 0"),
        (lambda x: x.domains[0].vcpus[0].write(_va(x), 5), "data must be bytes"),
        (lambda x: x.create_domain(5000), "nr_pages 5000"),
    ],
    ids=["total_frames", "no-domain", "width-0", "explain-other", "negative-n", "data-int", "big"],
)
def test_the_issues_examples_name_what_is_wrong(
    call: Callable[[Hypervisor], object], message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        call(_machine())
