"""One ``do_*`` entry point per hypercall, dispatched through :data:`TABLE`."""

from hypervisor.hypercalls import (  # noqa: F401 -- importing registers the handlers
    mmu_update,
    mmuext_op,
    multicall,
    update_va_mapping,
    vm_assist,
)
from hypervisor.hypercalls.dispatch import TABLE, invoke

__all__ = ["TABLE", "invoke"]
