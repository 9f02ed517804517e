"""What the worker-process and Ray backends share: the worker's start-up, the server's loop over one run, and
the pool of idle slots.

A slot is one worker (a process, an actor) that has loaded VGG19 and runs one task at a time. The server's side
of a run is the same for both: send "stop" once when the page asks, wait for the next message, hand each shot on,
until the worker says the run has ended (or fails).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

from ..errors import WorkerHung, one_line

END = object()  # what a slot's receive() returns when the run has ended


# A GPU worker's lanes allocate blocks of many sizes, each run on its own stream, and the caching allocator reuses a
# block only on the stream it was made for and never merges free blocks across its fixed-size segments: reserved
# memory fragments until an allocation fails and the whole cache is emptied (a stall for every lane). Expandable
# segments grow one mapping instead of adding a segment per miss, which keeps that fragmentation down. torch reads
# the setting once, when CUDA's allocator first starts, so it goes into the environment before anything touches the
# GPU; an operator's own setting is kept.
GPU_ALLOC_CONF = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}


def worker_env(device: str, environ=os.environ) -> dict[str, str]:
    """What a worker for `device` adds to `environ`, its own environment, before it loads VGG19 (nothing on a CPU;
    nothing where the setting is there already: on a Ray node, the node's own)."""
    if any(k in environ for k in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")):
        return {}
    if device == "auto":
        from ...backbone import default_device

        device = default_device().type
    return dict(GPU_ALLOC_CONF) if device.startswith("cuda") else {}


def start(weights: str, device: str, threads: int):
    """A worker's (a process's, a Ray actor's) first act: its allocator setting into its own environment while
    nothing has touched the GPU yet, then prepare()."""
    os.environ.update(worker_env(device))
    return prepare(weights, device, threads)


def prepare(weights: str, device: str, threads: int):
    """What every worker (a process, a Ray actor) does once: load VGG19, probe the cost model. Returns the
    backbone and the info the server shows and plans with."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from ...backbone import configure_cuda, describe_device, load_backbone, unused_gpu
    from ..cost import CostModel

    backbone = load_backbone(weights, device)
    if backbone.device.type == "cuda":
        configure_cuda()  # the one place a worker sets its process-wide CUDA flags (backbone.cuda_flags: why)
    described = describe_device(backbone.device, backbone.native_bf16)
    unused = unused_gpu() if device == "auto" and backbone.device.type == "cpu" else None
    if unused:  # say it where the operator looks: the server's log and the pages' device caption
        print(f"nst worker: serving from the CPU: {unused}", file=sys.stderr, flush=True)
        described = f"{described} ({unused})"
    cost = CostModel.probe(backbone)
    return backbone, {
        "device": described,
        "device_type": backbone.device.type,
        "gpus": torch.cuda.device_count() if backbone.device.type == "cuda" else 0,
        "weights": backbone.source,
        "rate": cost.rate,
        "per_step": cost.per_step,
    }


def forget_failure(backbone) -> None:
    """After a failed run: give its GPU memory back for the next one."""
    if backbone.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


# The messages of CUDA errors after which the process's GPU context is unusable: every later call fails the same way
# (a device-side assert, an illegal address, a launch failure, ...). Only a new process gets a working GPU again.
# An out-of-memory error is not one of them: the next run works once the failed one's memory is given back.
_BROKEN = ("cuda error", "cudnn_status_execution_failed", "cublas_status_execution_failed", "cudaerror")


def context_broken(e: BaseException) -> bool:
    """Whether `e` leaves this process's GPU unusable (then its worker reports the error and ends)."""
    import torch

    text = str(e).lower()
    if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in text:
        return False
    return isinstance(e, getattr(torch, "AcceleratorError", ())) or any(k in text for k in _BROKEN)


def clean_up(backbone, cleanup: Callable = forget_failure) -> None:
    """After a failed run has been reported: `cleanup(backbone)`, whose own failure is only logged. Called outside
    the `except` that caught the run's error, so that its traceback (which holds the run's tensors) is gone and the
    memory can really be given back."""
    try:
        cleanup(backbone)
    except Exception as e:
        print(f"nst worker: cleanup after a failed run failed: {one_line(e)}", file=sys.stderr, flush=True)


def relay(
    receive: Callable, stop: Callable[[], None], emit: Callable, cancelled, silence: float, poll: float = 0.1
) -> None:
    """The server's side of one run on a slot. receive(timeout) returns a Shot, None (nothing yet) or END, and
    raises RunFailed (or WorkerDied) for a run that failed; stop() asks the worker to stop after its step.
    A worker that sends nothing for `silence` seconds is hung (WorkerHung): its backend kills it."""
    stop_sent, heard = False, time.monotonic()
    while True:
        if cancelled.is_set() and not stop_sent:
            stop()
            stop_sent = True
        shot = receive(poll)
        if shot is END:
            return
        if shot is not None:
            emit(shot)
            heard = time.monotonic()
        elif time.monotonic() - heard > silence:
            raise WorkerHung(
                f"the worker sent nothing for {silence:.0f} s (the time limit per run and its grace: NST_MAX_SECONDS "
                "and NST_HANG_GRACE); it was stopped and starts again for the next run"
            )


def silence_limit(limits) -> float:
    """How long a worker may send nothing before it counts as hung."""
    return limits.max_seconds + limits.hang_grace


class Pool:
    """A backend's idle slots. The runner never runs more than `slots` at once, so take() always finds one.
    After close(), a slot that comes back from its run is closed instead of kept."""

    def __init__(self, slots: list, close_slot: Callable):
        self._idle, self._close_slot = list(slots), close_slot
        self._lock = threading.Lock()
        self.closed = False

    def take(self, pick: Callable[[list], object] | None = None):
        with self._lock:
            slot = pick(self._idle) if pick else self._idle[-1]
            self._idle.remove(slot)
            return slot

    def put(self, slot) -> None:
        with self._lock:
            if not self.closed:
                self._idle.append(slot)
                return
        self._close_slot(slot)

    def idle(self) -> list:
        with self._lock:
            return list(self._idle)

    def close(self) -> None:
        """Close the idle slots now; a busy one is closed when its run has stopped and it comes back."""
        with self._lock:
            self.closed, idle, self._idle = True, self._idle, []
        for slot in idle:
            self._close_slot(slot)
