"""A simulated machine running Xen's paravirtualised-MMU rules.

Start here::

    from hypervisor import Hypervisor, abi
    xen = Hypervisor(total_frames=16384)
    dom = xen.create_domain(nr_pages=1024)
    vcpu = dom.vcpus[0]
    vcpu.mmuext_op([abi.MmuExtOp(abi.MMUEXT_PIN_L1_TABLE, mfn)])

Layers: ``abi`` (what a guest sees) / ``hypercalls`` (one ``do_*`` per call) ->
``mm`` (Xen's mm.c: types, counts, validation) -> ``hw`` (memory, page walk,
TLB); ``rules``, ``errors``, ``trace`` and ``config`` beside them.
"""

from hypervisor import abi
from hypervisor.config import Config
from hypervisor.console import Refusal
from hypervisor.errors import HypercallError, PageFault
from hypervisor.machine import Domain, Hypervisor, Stats
from hypervisor.mm.audit import Violation
from hypervisor.mm.frames import FrameInfo, PageType
from hypervisor.rules import RULES, Rule
from hypervisor.trace import Tracer
from hypervisor.vcpu import VCpu

__all__ = [
    "RULES",
    "Config",
    "Domain",
    "FrameInfo",
    "HypercallError",
    "Hypervisor",
    "PageFault",
    "PageType",
    "Refusal",
    "Rule",
    "Stats",
    "Tracer",
    "VCpu",
    "Violation",
    "abi",
]
