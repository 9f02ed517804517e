"""Picklable test tasks for the GPU's failure paths, run on a CPU: a CUDA error as torch raises it."""

from tests.tasks import Ticking

# What torch raises after a kernel fails on the device: the process's GPU context is unusable from then on.
ILLEGAL_ADDRESS = "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously ..."


class CudaBroken(Ticking):
    """Two frames, then the error a broken GPU context raises."""

    def frames(self, backbone):
        yield from Ticking(2, 0.01).frames(backbone)
        raise RuntimeError(ILLEGAL_ADDRESS)
