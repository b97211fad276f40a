"""Golden tests of the hypercall log, the audit verdict and explain()."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from renderkit import US, A, P, check_golden, first_free_pfn
from rich.console import Console

from hypervisor import Domain, HypercallError, Hypervisor, abi, render
from hypervisor.trace import HypercallRecord

BOOT_L1 = 0x115
"""The bootstrap L1 of the tiny machine's domain."""


def busy_trace(xen: Hypervisor, dom: Domain) -> None:
    """A batch of three L1 updates, an m2p update, a refused pin, and a multicall."""
    vcpu = dom.vcpus[0]
    first = first_free_pfn(dom)
    frames = [dom.initial_p2m[pfn] for pfn in range(first, first + 3)]
    vcpu.mmu_update(
        [
            abi.MmuUpdate(BOOT_L1 << 12 | 8 * pfn, mfn << 12 | P | US | A)
            for pfn, mfn in zip(range(first, first + 3), frames, strict=True)
        ]
    )
    vcpu.mmu_update([(frames[0] << 12 | abi.MMU_MACHPHYS_UPDATE, first)])
    with pytest.raises(HypercallError):
        vcpu.mmuext_op(
            [
                abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, frames[0]),
                abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, dom.initial_p2m[first + 3]),
            ]
        )
    vcpu.multicall(
        [
            abi.MulticallEntry(
                abi.HYPERVISOR_vm_assist,
                (abi.VMASST_CMD_enable, abi.VMASST_TYPE_writable_pagetables),
            ),
            abi.MulticallEntry(
                abi.HYPERVISOR_mmuext_op, ([abi.MmuExtOp(abi.MMUEXT_TLB_FLUSH_LOCAL)],)
            ),
        ]
    )


def test_hypercall_log_decodes_batches_refusals_and_multicalls(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, dom = tiny
    busy_trace(xen, dom)
    assert xen.audit() == []

    text = draw(render.hypercall_log(xen.trace, xen=xen))

    check_golden("hypercall_log", text)


def test_hypercall_log_shows_unreadable_arguments_as_python_wrote_them(
    tiny: tuple[Hypervisor, Domain],
) -> None:
    xen, dom = tiny
    with pytest.raises(HypercallError):
        dom.vcpus[0].mmu_update("not a list")  # type: ignore[arg-type]
    (rec,) = xen.trace.hypercalls()
    assert isinstance(rec, HypercallRecord)

    assert render.decode_args(rec) == "('not a list', 32752)"


def test_audit_verdict_of_a_consistent_machine_is_one_line(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, _ = tiny

    text = draw(render.audit_verdict(xen))

    assert text == "audit: 0 violations, 0 frames leaked\n"


def test_audit_verdict_lists_each_violation(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, _ = tiny
    xen.state.frames[BOOT_L1].count += 1  # white-box: break one count

    text = draw(render.audit_verdict(xen))

    assert text == (
        "audit: 1 violation, 0 frames leaked\n"
        "  general-count: mfn 0x115 (L1): count 4, expected 3\n"
    )


def test_explain_shows_op_errno_rule_and_message(
    tiny: tuple[Hypervisor, Domain], draw: Callable[..., str]
) -> None:
    xen, dom = tiny
    mfn = dom.initial_p2m[first_free_pfn(dom)]
    with pytest.raises(HypercallError) as caught:
        dom.vcpus[0].mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, mfn)])
    assert xen.audit() == []

    text = draw(render.explain(caught.value))

    check_golden("explain_pin_writable_l1", text)


def test_to_svg_draws_the_renderable_as_an_svg_screenshot(
    tiny: tuple[Hypervisor, Domain],
) -> None:
    xen, _ = tiny

    svg = render.to_svg(render.audit_verdict(xen), width=60)

    assert svg.startswith("<svg")
    assert "audit:" in svg


def test_demo_prints_the_refusal_the_fix_and_a_clean_audit() -> None:
    from hypervisor.render import demo

    console = Console(width=100, color_system=None, record=True, file=io.StringIO())

    demo.main(console)

    text = console.export_text()
    assert "refused: mmuext_op" in text
    assert "type.writable-mapped" in text
    assert "b'hello from user mode'" in text
    assert text.rstrip().endswith("audit: 0 violations, 0 frames leaked")
