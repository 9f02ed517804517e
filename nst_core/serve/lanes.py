"""Several runs at once on one GPU (a worker process's lanes): how many pay, measured when the worker starts, and
the CUDA stream each run works on.

One 512 px evaluation leaves most of a GPU idle: its kernels are short and much of a step is Python and the
optimiser's own bookkeeping. Runs side by side, each in a thread with its own stream over the one read-only VGG19,
overlap that. Each run's result stays what it would be alone: it shares no tensor with another, only the weights.
Batching several runs into one pass was the other way to fill a GPU; it needs the runs of a batch to have one size
and to step together, and on a CPU it does not pay at all (issue 22: 1.21x at 128 px, 0.52x at 512 px).
benchmarks/bench_gpu.py measures both, lanes and a batched pass, to choose by.
"""

from __future__ import annotations

import contextlib
import threading
import time

CANDIDATES = (1, 2, 4, 8)
MEMORY_SHARE = 0.8  # of the GPU's memory, for the runs at their largest size


@contextlib.contextmanager
def own_stream(backbone):
    """A run's work on a CUDA stream of its own (on a CPU, nothing to do)."""
    if backbone.device.type != "cuda":
        yield
        return
    import torch

    with torch.cuda.stream(torch.cuda.Stream(backbone.device)):
        yield


def throughput(backbone, lanes: int, size: int = 512, evals: int = 6) -> float:
    """Objective evaluations per second with `lanes` runs evaluating side by side, each on its own stream."""
    import torch

    from ..settings import Settings
    from ..transfer import Objective

    def one(barrier: threading.Barrier) -> None:
        with own_stream(backbone):
            x = torch.rand(1, 3, size, size, device=backbone.device)
            obj = Objective(backbone, Settings(), x, [x])
            y = x.clone().requires_grad_(True)
            obj(y)["total"].backward()  # warm-up (and cudnn's choice of kernels)
            barrier.wait()
            for _ in range(evals):
                y.grad = None
                obj(y)["total"].backward()
            if backbone.device.type == "cuda":
                torch.cuda.current_stream().synchronize()

    barrier = threading.Barrier(lanes + 1)
    threads = [threading.Thread(target=one, args=(barrier,)) for _ in range(lanes)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return lanes * evals / (time.perf_counter() - start)


def run_memory(backbone, size: int = 512) -> int:
    """Bytes of GPU memory one evaluation at `size` px takes at its peak."""
    import torch

    from ..settings import Settings
    from ..transfer import Objective

    torch.cuda.synchronize(backbone.device)
    torch.cuda.reset_peak_memory_stats(backbone.device)
    base = torch.cuda.memory_allocated(backbone.device)
    x = torch.rand(1, 3, size, size, device=backbone.device)
    obj = Objective(backbone, Settings(), x, [x])
    y = x.clone().requires_grad_(True)
    obj(y)["total"].backward()
    torch.cuda.synchronize(backbone.device)
    return torch.cuda.max_memory_allocated(backbone.device) - base


def choose(measured: dict[int, float], per_run_bytes: float, free_bytes: float) -> int:
    """The fewest lanes within 5% of the best throughput measured, and no more than the memory holds."""
    best = max(measured.values())
    lanes = min(k for k, v in measured.items() if v >= 0.95 * best)
    fits = max(1, int(MEMORY_SHARE * free_bytes // max(per_run_bytes, 1)))
    return max(1, min(lanes, fits))


def measure_lanes(backbone, max_size: int = 2048) -> tuple[int, dict[int, float]]:
    """(lanes, evaluations per second for each candidate): in a GPU worker when it starts (a few seconds)."""
    import torch

    measured = {k: throughput(backbone, k) for k in CANDIDATES}
    per_run = run_memory(backbone) * (max_size / 512) ** 2  # memory grows with the pixels
    free, _ = torch.cuda.mem_get_info(backbone.device)
    return choose(measured, per_run, free), measured
