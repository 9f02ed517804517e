"""The GPU's serving logic on a CPU, through small seams: the worker's error path after a CUDA error, lane measuring
that fails, the device flags a worker sets, the bf16 choice, the plan for several GPUs, one stream per lane, and the
host syncs of a step."""

import gc
import threading
import types
import weakref

import torch

from tests.gpu_tasks import ILLEGAL_ADDRESS
from tests.tasks import Ticking

CPU = types.SimpleNamespace(device=torch.device("cpu"))  # a backbone as the worker's run path sees it


class Failing(Ticking):
    """Two frames, then `error`; holds a tensor in the run's frame until then (what a real run's traceback holds)."""

    def __init__(self, error: type, message: str):
        super().__init__(2, 0.0)
        self.error, self.message, self.held = error, message, None

    def frames(self, backbone):
        big = torch.zeros(1000)
        self.held = weakref.ref(big)
        yield from Ticking(2, 0.0).frames(backbone)
        raise self.error(self.message)


def serve(task, cleanup):
    from nst_core.serve.process_backend import serve_run

    events = []
    serve_run(7, task, CPU, events.append, threading.Event(), cleanup, exit=lambda code: events.append(("exit", code)))
    return events


def test_after_a_cuda_error_the_worker_reports_it_and_then_ends_though_its_cleanup_raises_again():
    from nst_core.serve.process_backend import CONTEXT_BROKEN

    def cleanup(backbone):  # as torch.cuda.empty_cache() does on a broken context
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    events = serve(Failing(RuntimeError, ILLEGAL_ADDRESS), cleanup)
    assert [e[0] for e in events] == ["shot", "shot", "error", "exit"]
    assert events[2] == ("error", 7, "RuntimeError: CUDA error: an illegal memory access was encountered", "ending")
    assert events[3] == ("exit", CONTEXT_BROKEN)


def test_after_another_error_the_worker_reports_it_first_and_cleans_up_once_the_traceback_is_gone():
    """An out-of-memory error: the message goes first; then the cleanup runs, outside the `except`, when the run's
    tensors (held by the traceback until then) are gone; a cleanup that raises is only logged; the worker lives on."""
    seen = []
    task = Failing(torch.cuda.OutOfMemoryError, "CUDA out of memory. Tried to allocate 2.00 GiB")

    def cleanup(backbone):
        gc.collect()  # (only reference counting should be needed; this rules out a cycle kept by chance)
        seen.append(task.held() is None)
        raise RuntimeError("cleanup failed too")

    events = serve(task, cleanup)
    assert [e[0] for e in events] == ["shot", "shot", "error"]
    assert events[2] == ("error", 7, "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert seen == [True]


def test_which_errors_break_the_gpu_context():
    from nst_core.serve.slots import context_broken

    assert context_broken(RuntimeError(ILLEGAL_ADDRESS))
    assert context_broken(RuntimeError("CUDA error: device-side assert triggered"))
    assert context_broken(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert not context_broken(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not context_broken(RuntimeError("CUDA error: out of memory"))
    assert not context_broken(ValueError("need at least one style image"))
