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
recipe's steps live in ``minikern.steps``, one registry, swappable.
"""

from minikern import steps
from minikern.errors import KernelPanic, OutOfMemory, SegmentationFault
from minikern.kernel import Kernel
from minikern.process import Process

__all__ = ["Kernel", "KernelPanic", "OutOfMemory", "Process", "SegmentationFault", "steps"]
