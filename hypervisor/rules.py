"""Every rule the hypervisor enforces, as data.

Each rule is a module constant named after its id (``TYPE_WRITABLE_MAPPED`` is
``"type.writable-mapped"``): code raises ``GuestError(rules.TYPE_MISMATCH, ...)``,
so mypy catches a misspelt rule. Error messages quote the rule's principle and
fix, and the docs and graders read the same table (:data:`RULES`, keyed by id).
Rule ids are stable: hints, feedback and tutorial pages are keyed to them.

The per-level disallow masks and "what an entry at level n may point to" also
live here (spec section 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from hypervisor import abi
from hypervisor import abi as E  # noqa: N812 -- reads like the C names

__all__ = [
    "ARGS_OUT_OF_RANGE",
    "ARGS_UNREADABLE",
    "BASEPTR_FOREIGN",
    "BASEPTR_NOT_OWNED",
    "BASEPTR_NO_USER_BASE_32",
    "BASE_DISALLOW_MASK",
    "ENTRY_DISALLOWED_FLAGS",
    "ENTRY_TARGET_NOT_OWNED",
    "ENTRY_TARGET_WRONG_TYPE",
    "FASTPATH_COMPARE",
    "FOREIGNDOM_NOT_PRIVILEGED",
    "FOREIGNDOM_SELF_ID",
    "FOREIGNDOM_UNKNOWN",
    "HYPERCALL_UNKNOWN",
    "HYPERCALL_USER_MODE",
    "L1_CACHE_ATTRS",
    "L1_CACHE_ATTR_XEN_HEAP",
    "L1_DISALLOW_MASK",
    "L1_FOREIGN_FRAME",
    "L1_FREE_FRAME",
    "L1_INVALID_MFN",
    "L1_IO_NO_PERMISSION",
    "L1_WRITABLE_PAGETABLE",
    "L2_DISALLOW_MASK",
    "L2_PAE_XEN_SLOT",
    "L3_DISALLOW_MASK",
    "L3_PAE_ABOVE_4G",
    "L3_PAE_DISALLOW_MASK",
    "L3_PAE_MISSING_XEN_L2",
    "L3_PAE_SLOT",
    "L3_PAE_XEN_L2_SHARED",
    "L4_DISALLOW_MASK",
    "L4_XEN_SLOT",
    "LINEAR_CHAIN",
    "LINEAR_DISABLED",
    "LINEAR_WRITABLE",
    "MACHPHYS_FOREIGN_PFD",
    "MACHPHYS_NOT_OWNED",
    "MMUEXT_BAD_LDT",
    "MMUEXT_CACHE_FLUSH_DENIED",
    "MMUEXT_FOREIGN_OP",
    "MMUEXT_NO_SUPERPAGES",
    "MMUEXT_UNKNOWN_COMMAND",
    "MMU_FOREIGN_UPPER_LEVEL",
    "MMU_PTR_FRAME_WRONG_TYPE",
    "MMU_PTR_FRAME_NOT_OWNED",
    "MMU_UNKNOWN_COMMAND",
    "MULTICALL_ARITY",
    "MULTICALL_NESTED",
    "PAGE_NOT_OWNED",
    "PIN_ALREADY_PINNED",
    "PIN_NOT_OWNED",
    "RULES",
    "Rule",
    "TARGETS",
    "TYPE_IN_USE",
    "TYPE_MISMATCH",
    "TYPE_WRITABLE_MAPPED",
    "UNPIN_NOT_OWNED",
    "UNPIN_NOT_PINNED",
    "UVM_BAD_VCPUMASK",
    "UVM_BAD_VA",
    "UVM_NO_L1",
    "VM_ASSIST_BAD_CMD",
    "VM_ASSIST_BAD_TYPE",
    "rule",
]


@attrs.frozen
class Rule:
    """One rule: its stable id, Xen's errno, the principle in plain words, what
    to do about it, and where Xen enforces it."""

    id: str
    errno: int
    principle: str
    fix: str
    xen: str

    @property
    def errno_name(self) -> str:
        return abi.errno_name(self.errno)


_ALL: list[Rule] = []


def _r(id: str, errno: int, principle: str, fix: str, xen: str) -> Rule:
    """Define a rule and add it to :data:`RULES`."""
    r = Rule(id, errno, principle, fix, xen)
    _ALL.append(r)
    return r


# -- arguments and calling convention ---------------------------------
ARGS_UNREADABLE: Final = _r(
    "args.unreadable",
    E.EFAULT,
    "the argument cannot be read as the C structure Xen expects",
    "pass a list of request records (or tuples of ints)",
    "copy_from_guest",
)
ARGS_OUT_OF_RANGE: Final = _r(
    "args.out-of-range",
    E.EINVAL,
    "a field holds a value outside its C width",
    "use non-negative integers that fit the field",
    "copy_from_guest",
)
HYPERCALL_USER_MODE: Final = _r(
    "hypercall.user-mode",
    E.EPERM,
    "only the guest kernel may issue hypercalls",
    "leave user mode before calling Xen",
    "pv_hypercall",
)
HYPERCALL_UNKNOWN: Final = _r(
    "hypercall.unknown",
    E.ENOSYS,
    "there is no hypercall with that number",
    "use one of the HYPERVISOR_* numbers",
    "hypercall_table",
)
MULTICALL_NESTED: Final = _r(
    "multicall.nested",
    E.EINVAL,
    "a multicall may not contain another multicall",
    "flatten the batch",
    "do_multicall",
)
MULTICALL_ARITY: Final = _r(
    "multicall.arity",
    E.EINVAL,
    "the entry has the wrong number of arguments for its hypercall",
    "pass exactly the hypercall's positional arguments",
    "do_multicall",
)
FOREIGNDOM_SELF_ID: Final = _r(
    "foreigndom.self-id",
    E.ESRCH,
    "a domain names itself with DOMID_SELF, not its numeric id",
    "use DOMID_SELF",
    "get_pg_owner",
)
FOREIGNDOM_UNKNOWN: Final = _r(
    "foreigndom.unknown",
    E.ESRCH,
    "foreigndom must name an existing domain",
    "use DOMID_SELF, or the id of a running domain",
    "get_pg_owner / rcu_lock_domain_by_any_id",
)
FOREIGNDOM_NOT_PRIVILEGED: Final = _r(
    "foreigndom.not-privileged",
    E.EPERM,
    "only the control domain may act on another domain's memory",
    "use DOMID_SELF, or issue the call from dom0",
    "xsm_mmu_update / xsm_mmuext_op",
)
# -- mmu_update ----------------------------------------------------------
MMU_UNKNOWN_COMMAND: Final = _r(
    "mmu.unknown-command",
    E.ENOSYS,
    "ptr & 7 selects the command; only 0-3 exist",
    "align ptr to 8 bytes and OR in one of the MMU_* commands",
    "do_mmu_update",
)
MMU_PTR_FRAME_NOT_OWNED: Final = _r(
    "mmu.ptr-frame-not-owned",
    E.EINVAL,
    "the entry being written must lie in a frame owned by the page-table owner",
    "point ptr at one of your own frames (machine address, not virtual)",
    "do_mmu_update",
)
MMU_PTR_FRAME_WRONG_TYPE: Final = _r(
    "mmu.ptr-frame-wrong-type",
    E.EINVAL,
    "mmu_update writes page-table entries or plain writable memory, nothing else",
    "do not target descriptor or shared pages",
    "do_mmu_update",
)
MMU_FOREIGN_UPPER_LEVEL: Final = _r(
    "mmu.foreign-upper-level",
    E.EINVAL,
    "L2-L4 entries may only be updated with the data owner equal to the table owner",
    "use DOMID_SELF for updates of upper-level tables",
    "do_mmu_update",
)
MACHPHYS_FOREIGN_PFD: Final = _r(
    "machphys.foreign-pfd",
    E.EPERM,
    "MMU_MACHPHYS_UPDATE may only be issued for yourself",
    "leave the page-table owner half of foreigndom at 0",
    "do_mmu_update",
)
MACHPHYS_NOT_OWNED: Final = _r(
    "machphys.not-owned",
    E.EINVAL,
    "only the owner of a frame may set its M2P entry",
    "update M2P entries of your own frames",
    "do_mmu_update",
)
# -- entry rules -----------------------------------------------------------
ENTRY_DISALLOWED_FLAGS: Final = _r(
    "entry.disallowed-flags",
    E.EINVAL,
    "a present entry may only carry the flags Xen allows at its level (no cache attributes, "
    "no superpages, G only in an L1)",
    "clear the disallowed bits",
    "l1_disallow_mask / L2..L4_DISALLOW_MASK",
)
L1_IO_NO_PERMISSION: Final = _r(
    "l1.io-no-permission",
    E.EPERM,
    "mapping I/O memory needs I/O privileges",
    "map RAM you own instead",
    "get_page_from_l1e",
)
L1_INVALID_MFN: Final = _r(
    "l1.invalid-mfn",
    E.EINVAL,
    "INVALID_MFN (all ones) marks a missing frame and can never be mapped",
    "map a real frame",
    "get_page_from_l1e",
)
L1_FREE_FRAME: Final = _r(
    "l1.free-frame",
    E.EBUSY,
    "a free frame cannot be mapped: Xen may hand it to another domain at any time",
    "map only frames your domain owns",
    "get_page_from_l1e",
)
L1_FOREIGN_FRAME: Final = _r(
    "l1.foreign-frame",
    E.EBUSY,
    "a guest may only map frames it owns unless it names the owner as foreigndom "
    "(and is privileged)",
    "map your own frames, or (dom0) pass the owner's domid as foreigndom",
    "get_page_from_l1e",
)
L1_WRITABLE_PAGETABLE: Final = _r(
    "l1.writable-pagetable",
    E.EBUSY,
    "a frame in use as a page table (or descriptor page) may never be mapped writable",
    "map it read-only, or first release every use of it as a table so its type count drops to 0",
    "get_page_from_l1e -> get_page_type(PGT_writable_page)",
)
L1_CACHE_ATTR_XEN_HEAP: Final = _r(
    "l1.cache-attr-xen-heap",
    E.EACCES,
    "Xen-heap pages may only be mapped with write-back caching",
    "clear PWT/PCD/PAT",
    "get_page_from_l1e",
)
ENTRY_TARGET_NOT_OWNED: Final = _r(
    "entry.target-not-owned",
    E.EINVAL,
    "an L2-L4 entry may only point at a table frame owned by the same domain",
    "link only your own, allocated frames",
    "get_page_from_l2e/l3e/l4e",
)
ENTRY_TARGET_WRONG_TYPE: Final = _r(
    "entry.target-wrong-type",
    E.EINVAL,
    "an entry at level n must point at a table of level n-1",
    "link a table of the right level (or a read-only same-level linear entry)",
    "_get_page_type",
)
LINEAR_DISABLED: Final = _r(
    "linear.disabled",
    E.EINVAL,
    "same-level (linear) entries are disabled in this Xen",
    "point the entry at a table of the next level down",
    "get_lN_linear_pagetable",
)
LINEAR_WRITABLE: Final = _r(
    "linear.writable",
    E.EINVAL,
    "a linear (same-level) entry must be read-only",
    "clear RW in the entry",
    "get_lN_linear_pagetable",
)
LINEAR_CHAIN: Final = _r(
    "linear.chain",
    E.EINVAL,
    "linear page tables are single-level: a linear target may not have linear entries, "
    "and a table with linear entries may not be a linear target (XSA-240)",
    "keep the recursive mapping to one level",
    "inc_linear_entries / inc_linear_uses",
)
L4_XEN_SLOT: Final = _r(
    "l4.xen-slot",
    E.EINVAL,
    "L4 slots 256-271 belong to Xen and may never be written",
    "use guest slots 0-255 and 272-511",
    "mod_l4_entry / is_guest_l4_slot",
)
L2_PAE_XEN_SLOT: Final = _r(
    "l2.pae-xen-slot",
    E.EPERM,
    "the top slots of a 32-bit guest's Xen L2 belong to Xen",
    "use slots below l2_table_offset(HYPERVISOR_COMPAT_VIRT_START)",
    "mod_l2_entry",
)
L3_PAE_SLOT: Final = _r(
    "l3.pae-slot",
    E.EINVAL,
    "a 32-bit PAE L3 may only be updated in slots 0-2 (slot 3 holds Xen's L2)",
    "update slots 0-2 only",
    "mod_l3_entry",
)
L3_PAE_MISSING_XEN_L2: Final = _r(
    "l3.pae-missing-xen-l2",
    E.EINVAL,
    "a 32-bit PAE L3 must have slot 3 present: it holds the L2 with Xen's mappings",
    "fill slot 3 before using the L3",
    "promote_l3_table",
)
L3_PAE_XEN_L2_SHARED: Final = _r(
    "l3.pae-xen-l2-shared",
    E.EINVAL,
    "the L2 in slot 3 of a PAE L3 cannot be shared by several L3s or pinned",
    "give each L3 its own slot-3 L2",
    "pae_xen_mappings_check",
)
L3_PAE_ABOVE_4G: Final = _r(
    "l3.pae-above-4g",
    E.ERANGE,
    "a PAE L3 above 4 GiB needs VMASST_TYPE_pae_extended_cr3",
    "enable the assist or use a frame below 4 GiB",
    "promote_l3_table",
)
# -- types, pins, bases -----------------------------------------------------
TYPE_WRITABLE_MAPPED: Final = _r(
    "type.writable-mapped",
    E.EINVAL,
    "a frame used as a page table must have no writable mappings",
    "make those mappings read-only first",
    "_get_page_type",
)
TYPE_MISMATCH: Final = _r(
    "type.mismatch",
    E.EINVAL,
    "a frame has one type at a time, and the type can change only when its type count is 0",
    "use the frame at the level it already has, or first release every use named",
    "_get_page_type",
)
TYPE_IN_USE: Final = _r(
    "type.in-use",
    E.EINVAL,
    "a frame in use as a page table or descriptor page cannot be written as plain memory",
    "first release every use named (unpin it, load another base, clear the entries pointing at it)",
    "_get_page_type(PGT_writable_page)",
)
PIN_NOT_OWNED: Final = _r(
    "pin.not-owned",
    E.EINVAL,
    "only frames owned by the domain can be pinned",
    "pin one of your own frames",
    "do_mmuext_op: get_page_from_gfn",
)
PIN_ALREADY_PINNED: Final = _r(
    "pin.already-pinned",
    E.EINVAL,
    "pins are not nested: a table is pinned at most once",
    "pin each table once",
    "do_mmuext_op: MMUEXT_PIN_*",
)
UNPIN_NOT_OWNED: Final = _r(
    "unpin.not-owned",
    E.EINVAL,
    "only frames owned by the domain can be unpinned",
    "unpin one of your own frames",
    "do_mmuext_op: MMUEXT_UNPIN_TABLE",
)
UNPIN_NOT_PINNED: Final = _r(
    "unpin.not-pinned",
    E.EINVAL,
    "only a pinned table can be unpinned",
    "unpin only what you pinned",
    "do_mmuext_op: MMUEXT_UNPIN_TABLE",
)
BASEPTR_FOREIGN: Final = _r(
    "baseptr.foreign",
    E.EPERM,
    "a vCPU's base pointer can only be set by its own domain",
    "use DOMID_SELF",
    "do_mmuext_op: MMUEXT_NEW_BASEPTR",
)
BASEPTR_NOT_OWNED: Final = _r(
    "baseptr.not-owned",
    E.EINVAL,
    "the new base must be a frame owned by the domain",
    "load one of your own top-level tables",
    "new_guest_cr3",
)
BASEPTR_NO_USER_BASE_32: Final = _r(
    "baseptr.no-user-base-32",
    E.EINVAL,
    "32-bit guests have no separate user base",
    "use MMUEXT_NEW_BASEPTR",
    "do_mmuext_op: MMUEXT_NEW_USER_BASEPTR",
)
MMUEXT_FOREIGN_OP: Final = _r(
    "mmuext.foreign-op",
    E.EPERM,
    "this command only acts on the calling domain itself",
    "issue it with DOMID_SELF",
    "do_mmuext_op",
)
MMUEXT_UNKNOWN_COMMAND: Final = _r(
    "mmuext.unknown-command",
    E.ENOSYS,
    "there is no mmuext_op command with that number",
    "use one of the MMUEXT_* commands",
    "do_mmuext_op",
)
MMUEXT_NO_SUPERPAGES: Final = _r(
    "mmuext.no-superpages",
    E.EOPNOTSUPP,
    "PV superpages were removed in Xen 4.10",
    "map 4 KiB pages",
    "do_mmuext_op: MMUEXT_MARK_SUPER",
)
MMUEXT_CACHE_FLUSH_DENIED: Final = _r(
    "mmuext.cache-flush-denied",
    E.EACCES,
    "only domains with I/O privileges may flush caches",
    "do not flush caches from an unprivileged guest",
    "do_mmuext_op: MMUEXT_FLUSH_CACHE",
)
MMUEXT_BAD_LDT: Final = _r(
    "mmuext.bad-ldt",
    E.EINVAL,
    "the LDT must be page aligned, inside guest space, and hold at most 8192 entries",
    "fix the base or the entry count",
    "do_mmuext_op: MMUEXT_SET_LDT",
)
PAGE_NOT_OWNED: Final = _r(
    "page.not-owned",
    E.EINVAL,
    "the frame must be owned by the domain",
    "use one of your own frames",
    "do_mmuext_op: CLEAR_PAGE / COPY_PAGE",
)
# -- update_va_mapping -------------------------------------------------------
UVM_BAD_VCPUMASK: Final = _r(
    "uvm.bad-vcpumask",
    E.EFAULT,
    "with a flush type and a scope other than UVMF_LOCAL/UVMF_ALL, flags & ~3 is the "
    "guest address of a vCPU bitmap, and it must be readable",
    "pass UVMF_LOCAL or UVMF_ALL, or the address of a mapped bitmap",
    "__do_update_va_mapping: vcpumask_to_pcpumask",
)
UVM_BAD_VA: Final = _r(
    "uvm.bad-va",
    E.EINVAL,
    "update_va_mapping acts on guest virtual addresses only",
    "use a canonical address outside Xen's hole",
    "__do_update_va_mapping",
)
UVM_NO_L1: Final = _r(
    "uvm.no-l1",
    E.EINVAL,
    "update_va_mapping needs an existing, validated L1 for the address in the current tables",
    "link an L1 for that address first",
    "map_guest_l1e",
)
# -- vm_assist -----------------------------------------------------------------
VM_ASSIST_BAD_CMD: Final = _r(
    "vm_assist.bad-cmd",
    E.ENOSYS,
    "vm_assist commands are enable (0) and disable (1)",
    "use VMASST_CMD_enable or VMASST_CMD_disable",
    "do_vm_assist",
)
VM_ASSIST_BAD_TYPE: Final = _r(
    "vm_assist.bad-type",
    E.EINVAL,
    "this guest has no such assist",
    "use one of the VMASST_TYPE_* values",
    "do_vm_assist",
)


RULES: Mapping[str, Rule] = {r.id: r for r in _ALL}


def rule(rule_id: str) -> Rule:
    """The rule with this id (a ``KeyError`` here is a hypervisor bug)."""
    return RULES[rule_id]


# -- flag masks (spec 3.1) -------------------------------------------------------

_ALLOWED_BASE = (
    abi._PAGE_PRESENT
    | abi._PAGE_RW
    | abi._PAGE_USER
    | abi._PAGE_ACCESSED
    | abi._PAGE_DIRTY
    | abi._PAGE_AVAIL
    | abi._PAGE_AVAIL_HIGH
    | abi._PAGE_NX
)
_FLAG_BITS = 0xFFF | (0xFFF << 52)
BASE_DISALLOW_MASK = _FLAG_BITS & ~_ALLOWED_BASE
"""Flags refused at every level (mm.c base_disallow_mask)."""
L1_DISALLOW_MASK = BASE_DISALLOW_MASK & ~abi._PAGE_GLOBAL
"""L1: base minus G (release build)."""
L1_CACHE_ATTRS = abi._PAGE_PWT | abi._PAGE_PCD | abi._PAGE_PAT
"""Cache attributes, allowed in an L1 only with I/O privileges."""
L2_DISALLOW_MASK = BASE_DISALLOW_MASK
L3_DISALLOW_MASK = BASE_DISALLOW_MASK
L3_PAE_DISALLOW_MASK = (0xFFFFF198 & 0xFFF) | ((0xFFFFF198 >> 12) & 0xFFF) << 52
"""Xen's 0xFFFFF198 is a 24-bit flag word (pte bits 0-11, then 52-63): a PAE L3
entry may carry only P, RW, US, A, D and AVAIL."""
L4_DISALLOW_MASK = BASE_DISALLOW_MASK

FASTPATH_FLAG_WHITELIST = (
    abi._PAGE_NX
    | abi._PAGE_AVAIL_HIGH
    | abi._PAGE_AVAIL
    | abi._PAGE_GLOBAL
    | abi._PAGE_DIRTY
    | abi._PAGE_ACCESSED
    | abi._PAGE_USER
)
_ALL64 = (1 << 64) - 1
FASTPATH_COMPARE: Mapping[str, tuple[int, int]] = {
    # (bits compared for L1, bits compared for L2-L4)
    "modern": (_ALL64 & ~FASTPATH_FLAG_WHITELIST, _ALL64 & ~FASTPATH_FLAG_WHITELIST),
    "pre-4.8": (
        abi.PTE_MFN_MASK | abi._PAGE_PRESENT | abi._PAGE_RW,
        abi.PTE_MFN_MASK | abi._PAGE_PRESENT,
    ),
}
"""Bits an update must leave unchanged to take the no-refcount fast path."""

TARGETS: Mapping[int, str] = {
    1: "any RAM frame owned by FD; with RW it must be able to take the writable type",
    2: "an L1 (validated on first use), or read-only: itself or another validated L2",
    3: "an L2 (validated on first use), or read-only: itself or another validated L3",
    4: "an L3 (validated on first use), or read-only: itself or another validated L4",
}
"""What a present entry at each level may point to (spec 3.7)."""
