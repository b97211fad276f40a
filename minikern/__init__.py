"""minikern: a toy paravirtualised guest kernel for the simulated Xen.

Start here::

    from minikern import Kernel
    k = Kernel.boot(nr_pages=2048)
    p = k.spawn()
    p.mmap(0x400000, 3 * 4096, "rw")
    p.write(0x400000, b"hello")
    child = k.fork(p)

It reaches the hypervisor only through ``hypervisor.abi`` and the vCPU it is
handed at boot (``minikern.toolstack`` plays the toolstack). The page-table
kernel functions a lesson asks a student to write are swappable, each by one
``module:function`` name: see ``minikern.steps``.
"""

from minikern import steps
from minikern.errors import KernelPanic, OutOfMemory, SegmentationFault
from minikern.kernel import Kernel
from minikern.process import Process

__all__ = ["Kernel", "KernelPanic", "OutOfMemory", "Process", "SegmentationFault", "steps"]
