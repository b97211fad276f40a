"""The seam: lesson functions by one name, swapped, installed, reset, and blamed."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from mkhelpers import BASE, PAGE

from hypervisor import abi
from hypervisor.abi import Pfn
from minikern import (
    Kernel,
    KernelPanic,
    Process,
    build,
    hypercall,
    kmem,
    pgtable,
    recipe,
    steps,
    vm,
)
from minikern.kmem import KernelMemory


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    steps.reset()


LESSONS = {
    "01_map_a_page": [
        "minikern.kmem:pfn_to_mfn",
        "minikern.kmem:pfn_pte",
        "minikern.kmem:map_page",
    ],
    "02_readonly_l1": [
        "minikern.recipe:fill_table",
        "minikern.recipe:make_readonly",
        "minikern.recipe:pin_table",
    ],
    "03_build_tree": ["minikern.build:write_tables", "minikern.build:protect_tables"],
    "04_pin_and_load": ["minikern.build:pin_tree", "minikern.recipe:load_base"],
    "05_update_mappings": ["minikern.pgtable:set_pte", "minikern.vm:flush_tlb"],
    "06_trapped_writes": ["minikern.pgtable:store_pte"],
    "07_grow_live_tree": [
        "minikern.pgtable:add_table",
        "minikern.recipe:zero_frame",
        "minikern.recipe:link_table",
    ],
    "08_fork_cow": ["minikern.fork:wrprotect_parent", "minikern.fork:fork_mm"],
    "09_cow_fault": ["minikern.vm:copy_on_write"],
    "10_teardown": [
        "minikern.build:release_tree",
        "minikern.recipe:unpin_table",
        "minikern.recipe:make_writable",
        "minikern.recipe:free_frame",
    ],
    "11_batching": ["minikern.hypercall:issue_multicall"],
    "12_pae_guest": [
        "minikern.build:pae_pgd_images",
        "minikern.build:pin_tree_pae",
        "minikern.build:release_tree_pae",
    ],
}


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_every_lesson_function_of_the_docstring_is_registered(lesson: str) -> None:
    doc = steps.__doc__ or ""
    for name in LESSONS[lesson]:
        assert name in steps.REGISTRY
        assert f"``{name}(" in doc, f"{name} is not documented in minikern.steps"


def test_every_registered_function_is_documented_in_the_module_docstring() -> None:
    doc = steps.__doc__ or ""
    missing = [name for name in steps.REGISTRY if f"``{name}(" not in doc]
    assert missing == []


def test_a_lesson_function_is_named_by_its_module_and_its_own_name() -> None:
    rec = steps.lesson_function(build.pin_tree)
    assert rec.name == "minikern.build:pin_tree"
    assert steps.lesson_function("minikern.build:pin_tree") is rec
    assert build.pin_tree.__name__ == "pin_tree"
    assert build.pin_tree.__module__ == "minikern.build"


def test_the_record_keeps_signature_and_docstring_for_the_starter() -> None:
    rec = steps.REGISTRY["minikern.recipe:pin_table"]
    assert list(rec.signature.parameters) == ["km", "pfn", "level"]
    assert "MMUEXT_PIN_Ln_TABLE" in rec.doc
    assert rec.reference.__name__ == "pin_table"


def test_no_lesson_function_has_defaults_or_keyword_only_parameters() -> None:
    for rec in steps.REGISTRY.values():
        for param in rec.signature.parameters.values():
            assert param.default is inspect.Parameter.empty, rec.name
            assert param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, rec.name


def test_an_overridden_function_is_used_by_the_kernel_and_restored(k: Kernel) -> None:
    seen: list[Pfn] = []
    reference = steps.REGISTRY["minikern.recipe:zero_frame"].reference

    def spy_zero(km: KernelMemory, pfn: Pfn) -> None:
        seen.append(pfn)
        reference(km, pfn)

    with steps.override(recipe.zero_frame, spy_zero) as old:
        p = k.spawn()
    assert old is reference
    assert set(seen) == {p.mm.l4, p.mm.user_l4}
    assert not steps.REGISTRY["minikern.recipe:zero_frame"].swapped


def test_a_swap_reaches_callers_that_imported_the_name_directly(k: Kernel) -> None:
    calls: list[tuple[int, ...]] = []

    def spy(km: KernelMemory, vpns: object) -> None:
        calls.append(tuple(vpns))  # type: ignore[arg-type]

    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"x")
    steps.install("minikern.vm:flush_tlb", spy)
    p.munmap(BASE, PAGE)
    assert calls == [(BASE >> 12,)]
    assert vm.flush_tlb is not spy


def test_install_by_name_then_reset_restores_every_reference() -> None:
    steps.install("minikern.kmem:pfn_to_mfn", lambda km, pfn: pfn)
    assert steps.REGISTRY["minikern.kmem:pfn_to_mfn"].swapped
    steps.reset()
    assert not any(rec.swapped for rec in steps.REGISTRY.values())


def test_install_of_an_unknown_name_is_a_key_error_listing_the_names() -> None:
    with pytest.raises(KeyError, match=r"minikern\.build:pin_tree"):
        steps.install("minikern.build:no_such_thing", lambda: None)


def test_install_refuses_a_function_of_the_wrong_arity() -> None:
    with pytest.raises(TypeError, match=r"minikern\.recipe:pin_table.*3 arguments"):
        steps.install("minikern.recipe:pin_table", lambda km, pfn: None)


def test_install_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        steps.install("minikern.recipe:pin_table", 42)  # type: ignore[arg-type]


def test_override_of_a_plain_function_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="not a lesson function"), steps.override(len, len):
        pass


def test_a_broken_make_readonly_panics_naming_the_rule_and_the_refused_pin(k: Kernel) -> None:
    def forgot(km: KernelMemory, pfn: Pfn, uvmf: int) -> None:
        return None

    with steps.override(recipe.make_readonly, forgot), pytest.raises(KernelPanic) as info:
        k.spawn()
    assert info.value.errno
    assert info.value.step == "minikern.recipe:pin_table"
    assert "MMUEXT_PIN_L4_TABLE" in str(info.value)
    assert "minikern.build:pin_tree" in str(info.value)


def test_a_refused_direct_call_names_the_lesson_function_that_queued_it(k: Kernel) -> None:
    def pin_as_l2(km: KernelMemory, pfn: Pfn, level: int) -> None:
        km.hc.ext(abi.MMUEXT_PIN_L2_TABLE, kmem.pfn_to_mfn(km, pfn))

    p = k.spawn()
    with steps.override(recipe.pin_table, pin_as_l2), pytest.raises(KernelPanic) as info:
        recipe.pin_table(k.km, p.mm.user_l4, 4)
    assert info.value.step == "minikern.recipe:pin_table"
    assert info.value.rule
    assert f"[{info.value.rule}]" in str(info.value)


def test_an_ignored_multicall_failure_is_the_students_choice_not_a_crash(k: Kernel) -> None:
    def bad(vcpu: abi.GuestVCpu, calls: object) -> list[tuple[int, int]]:
        return "nothing"  # type: ignore[return-value]

    with steps.override(hypercall.issue_multicall, bad), pytest.raises(KernelPanic) as info:
        k.spawn()
    assert info.value.step == "minikern.hypercall:issue_multicall"


def test_a_kernel_page_fault_in_a_lesson_function_is_a_panic_naming_it(k: Kernel) -> None:
    def write_read_only(km: KernelMemory, pfn: Pfn) -> None:
        km.vcpu.write(km.va(km.boot_l4), b"\\0")

    with steps.override(recipe.zero_frame, write_read_only), pytest.raises(KernelPanic) as info:
        k.spawn()
    assert info.value.step == "minikern.recipe:zero_frame"
    assert "kernel page fault" in str(info.value)


def _with_pages(k: Kernel, n: int) -> Process:
    p = k.spawn()
    p.mmap(BASE, n * PAGE, "rw")
    for i in range(n):
        p.write(BASE + i * PAGE, b"x")
    return p


def _l2_left_writable(km: KernelMemory, tables: build.Tables) -> None:
    for level, pfn in tables:
        if level != 2:
            recipe.make_readonly(km, pfn, abi.UVMF_NONE)
        if level == 1:
            recipe.pin_table(km, pfn, 1)


def test_a_refused_multicall_entry_quotes_xens_console_in_full() -> None:
    k = Kernel.boot(nr_pages=512, strategy="linux")
    p = _with_pages(k, 8)
    with (
        steps.override(build.protect_tables, _l2_left_writable),
        pytest.raises(KernelPanic) as info,
    ):
        k.fork(p)
    text = str(info.value)
    assert info.value.rule == "type.writable-mapped"
    assert info.value.errno == abi.EINVAL
    assert info.value.step == "minikern.recipe:pin_table"
    assert "multicall" in text
    assert "Xen: MMUEXT_PIN_L4_TABLE of mfn 0x" in text
    assert "still mapped writable" in text
    assert "(in minikern.build:pin_tree < minikern.fork:fork_mm)" in text


def test_a_refused_mmu_update_names_the_request_xen_refused_in_hex() -> None:
    k = Kernel.boot(nr_pages=512)
    p = k.spawn()
    p.mmap(BASE, PAGE, "rw")
    p.write(BASE, b"x")
    l1, slot = p.mm.leaf_slot(BASE >> 12)
    with pytest.raises(KernelPanic) as info:
        pgtable.set_pte(k.km, l1, slot, kmem.pfn_pte(k.km, l1, 0x7), abi.MMU_NORMAL_PT_UPDATE)
    assert info.value.rule
    assert f"MMU_NORMAL_PT_UPDATE ptr {k.km.entry_ma(l1, slot):#x}" in str(info.value)
    assert info.value.step == "minikern.pgtable:set_pte"


def test_a_store_into_an_l2_is_a_kernel_panic_naming_store_pte() -> None:
    k = Kernel.boot(nr_pages=512, fork_style="linux")
    p = _with_pages(k, 2)

    def into_the_l2(km: KernelMemory, l1: Pfn, slot: int, pte: int) -> None:
        l2 = p.mm.tables[(2, BASE >> 30)]
        km.vcpu.store(km.va(l2) + 8 * slot, pte)

    with steps.override(pgtable.store_pte, into_the_l2), pytest.raises(KernelPanic) as info:
        k.fork(p)
    assert info.value.step == "minikern.pgtable:store_pte"
    assert "write at 0x" in str(info.value)


def _documented_parameters(doc: str, name: str) -> list[str]:
    """The parameter names the docstring gives ``name``: ``name(a, b: T, ...)``."""
    text = doc[doc.index(f"``{name}(") + len(name) + 3 :]
    depth, params, current = 0, [], ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            params.append(current)
            current = ""
        else:
            current += ch
    params.append(current)
    return [p.split(":")[0].strip() for p in params if p.strip()]


def test_the_docstring_gives_each_function_its_real_parameters() -> None:
    doc = steps.__doc__ or ""
    wrong = {
        name: (_documented_parameters(doc, name), list(rec.signature.parameters))
        for name, rec in steps.REGISTRY.items()
        if _documented_parameters(doc, name) != list(rec.signature.parameters)
    }
    assert wrong == {}


def test_an_installed_function_returning_the_wrong_type_is_a_panic_naming_it() -> None:
    k = Kernel.boot(nr_pages=256)
    steps.install("minikern.kmem:pfn_to_mfn", lambda km, pfn: str(pfn))
    with pytest.raises(
        KernelPanic, match=r"minikern\.kmem:pfn_to_mfn returned '\d+' \(str\), not int"
    ):
        k.spawn()


def test_a_bool_is_not_an_mfn() -> None:
    k = Kernel.boot(nr_pages=256)
    with steps.override(kmem.pfn_to_mfn, lambda km, pfn: True), pytest.raises(KernelPanic):  # type: ignore[arg-type,return-value]
        k.spawn()


def test_an_installed_fork_mm_must_return_an_address_space() -> None:
    k = Kernel.boot(nr_pages=256)
    p = k.spawn()
    steps.install("minikern.fork:fork_mm", lambda km, parent, strategy, style: None)
    with pytest.raises(KernelPanic, match=r"fork_mm returned None .*not AddressSpace") as info:
        k.fork(p)
    assert info.value.step == "minikern.fork:fork_mm"
