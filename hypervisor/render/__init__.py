"""rich renderables for people, drawn from the public model objects.

Nothing in the core imports this package; it only reads ``Hypervisor``
(``frame``, ``read_frame``, ``audit``, ``trace``) and, for speed,
``xen.state.frames``::

    from rich.console import Console
    from hypervisor import render
    console = Console()
    console.print(render.frame_table(xen))
    console.print(render.page_table_tree(xen, dom.vcpus[0].cr3))
    console.print(render.memory_map(xen))
    console.print(render.hypercall_log(xen.trace, xen=xen))
    console.print(render.audit_verdict(xen))
"""

from __future__ import annotations

from hypervisor.render.calls import audit_verdict, decode_args, explain, hypercall_log, to_svg
from hypervisor.render.frames import frame_table, memory_map
from hypervisor.render.tree import page_table_tree, va_range

__all__ = [
    "audit_verdict",
    "decode_args",
    "explain",
    "frame_table",
    "hypercall_log",
    "memory_map",
    "page_table_tree",
    "to_svg",
    "va_range",
]
