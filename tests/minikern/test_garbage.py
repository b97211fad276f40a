"""Garbage fed to every public entry point of minikern: a documented error
(TypeError / ValueError naming the argument, SegmentationFault, OutOfMemory,
ProcessLookupError) or success -- never a KernelPanic nor an internal error --
and Xen's audit stays clean."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mkhelpers import BASE, PAGE, assert_audit_clean

from minikern import Kernel, OutOfMemory, Process, SegmentationFault

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DOCUMENTED = (TypeError, ValueError, SegmentationFault, OutOfMemory, ProcessLookupError)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=4),
    st.binary(max_size=8),
    st.lists(st.integers(0, 9), max_size=3),
    st.builds(object),
)
address = st.one_of(junk, st.integers(0, 40).map(lambda i: BASE + i * PAGE - 8 * (i % 3)))
length = st.one_of(junk, st.integers(-1, 6).map(lambda n: n * PAGE), st.integers(0, 9000))
prot = st.one_of(junk, st.sampled_from(["r", "rw", "w", "", "RW"]))
data = st.one_of(junk, st.binary(max_size=64), st.builds(bytearray, st.binary(max_size=9)))


def _kernel() -> tuple[Kernel, Process]:
    k = Kernel.boot(nr_pages=256)
    p = k.spawn()
    p.mmap(BASE, 16 * PAGE, "rw")
    p.write(BASE, b"init")
    return k, p


def _expect_documented(k: Kernel, call: Any, *args: Any, **kwargs: Any) -> None:
    """``call(*args)`` returns or raises a documented error; the audit is clean."""
    message = "ok"
    try:
        call(*args, **kwargs)
    except DOCUMENTED as exc:
        message = str(exc)
    assert message, "an error without a message"
    assert_audit_clean(k)


@SETTINGS
@given(nr_pages=st.one_of(junk, st.integers(-5, 40)), strategy=prot, fork_style=prot)
def test_boot_with_garbage_raises_only_documented_errors(
    nr_pages: Any, strategy: Any, fork_style: Any
) -> None:
    message = "nr_pages: booted"
    try:
        Kernel.boot(nr_pages=nr_pages, strategy=strategy, fork_style=fork_style)
    except (TypeError, ValueError) as exc:
        message = str(exc)
    assert any(a in message for a in ("nr_pages", "strategy", "fork_style"))


@SETTINGS
@given(hypervisor=junk)
def test_boot_on_something_not_a_hypervisor_is_a_type_error(hypervisor: Any) -> None:
    with pytest.raises(TypeError, match="hypervisor"):
        Kernel.boot(nr_pages=64, hypervisor=hypervisor if hypervisor is not None else 0)


@SETTINGS
@given(va=address, n=length, prot=prot, populate=junk)
def test_mmap_munmap_mprotect_with_garbage(va: Any, n: Any, prot: Any, populate: Any) -> None:
    k, p = _kernel()
    _expect_documented(k, p.mmap, va, n, prot, populate=populate)
    _expect_documented(k, p.mprotect, va, n, prot)
    _expect_documented(k, p.munmap, va, n)
    # What is still mapped at BASE keeps its bytes (munmap may have taken it away).
    assert not p.mm.vmas.find(BASE >> 12) or p.read(BASE, 4) in (b"init", b"\0\0\0\0")


@SETTINGS
@given(va=address, n=length, payload=data)
def test_read_and_write_with_garbage(va: Any, n: Any, payload: Any) -> None:
    k, p = _kernel()
    _expect_documented(k, p.write, va, payload)
    _expect_documented(k, p.read, va, n)


@SETTINGS
@given(who=junk)
def test_kernel_calls_on_what_is_not_a_process_are_type_errors(who: Any) -> None:
    k, _p = _kernel()
    for call in (k.fork, k.exit, k.switch_to):
        with pytest.raises(TypeError, match="Process"):
            call(who)
    assert_audit_clean(k)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda p: p.write(BASE, 5), "data"),
        (lambda p: p.read(BASE, "5"), "n"),
        (lambda p: p.read(-1, 5), "va"),
        (lambda p: p.mmap(BASE, PAGE, "rw", populate="yes"), "populate"),
        (lambda p: p.mmap(BASE + 1, PAGE, "rw"), "va"),
        (lambda p: p.mmap(BASE, 1.5, "rw"), "length"),
        (lambda p: p.mprotect(BASE, PAGE, 3), "prot"),
        (lambda p: p.munmap(BASE, -PAGE), "length"),
    ],
)
def test_a_wrong_argument_is_named_in_the_error(call: Any, argument: str) -> None:
    _k, p = _kernel()
    with pytest.raises((TypeError, ValueError), match=argument):
        call(p)


def test_boot_with_nr_pages_as_a_string_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="nr_pages"):
        Kernel.boot(nr_pages="2048")  # type: ignore[arg-type]


def test_boot_too_small_to_build_is_a_value_error_naming_nr_pages() -> None:
    with pytest.raises(ValueError, match="nr_pages"):
        Kernel.boot(nr_pages=5)


def test_exit_of_an_exited_process_is_process_lookup_error() -> None:
    k, p = _kernel()
    k.exit(p)
    with pytest.raises(ProcessLookupError):
        k.exit(p)
