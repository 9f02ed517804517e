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


def test_measuring_lanes_fails_at_once_with_the_error_of_a_lane_that_raises_before_the_start_line():
    """A lane that fails before it reaches the start line: the others, and the worker starting, would wait there
    for ever (the server said "out of memory?" after 300 s)."""
    from nst_core.serve import lanes

    calls = []

    def setup(backbone, size):
        calls.append(size)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return lambda: None

    outcome = []

    def measure():
        try:
            lanes.throughput(CPU, 4, size=64, evals=2, setup=setup)
        except Exception as e:
            outcome.append(e)

    t = threading.Thread(target=measure, daemon=True)
    t.start()
    t.join(timeout=120)  # a guard against hanging the suite: the fixed code returns as soon as the lane fails
    assert not t.is_alive(), "the measuring hangs at the start line"
    assert [type(e).__name__ for e in outcome] == ["OutOfMemoryError"] and len(calls) <= 4


def test_each_lane_keeps_one_stream_and_every_run_works_on_its_lanes_stream():
    """With a recording stand-in for CUDA streams: twelve runs, two at a time (as two lanes run them) and then one
    at a time, use two streams in all; each run makes every tensor on the stream it took, and two runs at once never
    share one. (A new stream per run: PyTorch's allocator would cache each run's blocks for a stream no one reuses.)"""
    import contextlib

    from nst_core.serve.lanes import Streams

    current = threading.local()

    @contextlib.contextmanager
    def enter(stream):
        old, current.stream = getattr(current, "stream", None), stream
        try:
            yield
        finally:
            current.stream = old

    made = []
    streams = Streams(torch.device("cpu"), make=lambda: made.append(object()) or made[-1], enter=enter)
    seen: dict[int, set] = {}
    busy, clash = set(), []
    lock = threading.Lock()
    both = threading.Barrier(2)

    def run(i: int, paired: bool) -> None:
        with streams.lane() as stream:
            with lock:
                clash.append(stream in busy)
                busy.add(stream)
            for _ in range(3):  # "make a tensor": note the stream it is made on
                seen.setdefault(i, set()).add(current.stream)
                if paired:
                    both.wait()  # the two runs of a pair are on their streams at the same time
            with lock:
                busy.discard(stream)
        assert current.__dict__.get("stream") is None  # and the stream is no longer current after the run

    for pair in range(4):
        ts = [threading.Thread(target=run, args=(2 * pair + k, True)) for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    for i in range(8, 12):
        run(i, False)
    assert len(made) == 2 and streams.made == 2
    assert all(len(s) == 1 and next(iter(s)) in made for s in seen.values()) and len(seen) == 12
    assert not any(clash)
