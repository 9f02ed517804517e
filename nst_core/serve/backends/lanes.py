"""Several runs at once on one GPU (a worker process's lanes): how many pay, measured when the worker starts, and
the CUDA stream each lane works on.

One 512 px evaluation leaves most of a GPU idle: its kernels are short and much of a step is Python and the
optimiser's own bookkeeping. Runs side by side, each in a thread on its lane's stream over the one read-only VGG19,
overlap that. Each run's result stays what it would be alone: it shares no tensor with another, only the weights.
Batching several runs into one pass was the other way to fill a GPU; it needs the runs of a batch to have one size
and to step together, and on a CPU it does not pay (a CPU's throughput comes from fewer pixel-evaluations, not
from wider passes; docs/benchmarks.md). benchmarks/bench_gpu.py measures both, lanes and a batched pass, to choose
by.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

CANDIDATES = (1, 2, 4, 8)
MEMORY_SHARE = 0.8  # of the GPU's free memory, for the runs at their largest size
BARRIER_TIMEOUT = 600.0  # a lane that never reaches the start line (a hung kernel): the measuring fails, not hangs


class Streams:
    """A CUDA stream per lane, reused run after run. PyTorch's caching allocator reuses a freed block only for
    the stream it was allocated on: with a new stream per run (torch hands them out from a pool of 32) each run's
    blocks would stay cached for a stream the next run does not use, and reserved memory would grow until a failed
    allocation empties the whole cache (a stall for every lane). As many runs at once as lanes take as many streams.

    `make` and `enter` (a new stream; the context that makes it current) are there for tests; on a CPU there is no
    stream and a lane is a plain context."""

    def __init__(self, device, make: Callable | None = None, enter: Callable | None = None):
        self.cuda = device.type == "cuda" or make is not None
        if device.type == "cuda":
            import torch

            make = make or (lambda: torch.cuda.Stream(device))
            enter = enter or torch.cuda.stream
        self._make, self._enter = make, enter
        self._idle: list = []
        self._lock = threading.Lock()
        self.made = 0

    @contextlib.contextmanager
    def lane(self):
        """Work in this context goes to an idle lane's stream (a new one only when every one made is in use)."""
        if not self.cuda:
            yield None
            return
        with self._lock:
            if self._idle:
                stream = self._idle.pop()
            else:
                stream, self.made = self._make(), self.made + 1
        try:
            with self._enter(stream):
                yield stream
        finally:
            with self._lock:
                self._idle.append(stream)


_streams: dict[str, Streams] = {}
_streams_lock = threading.Lock()


def streams_for(device) -> Streams:
    """This process's lanes' streams on `device` (one set per device, for every run and the measuring alike)."""
    with _streams_lock:
        return _streams.setdefault(str(device), Streams(device))


def own_stream(backbone):
    """A run's work on a lane's stream of its device (on a CPU, nothing to do)."""
    return streams_for(backbone.device).lane()


def evaluation(backbone, size: int) -> Callable[[], None]:
    """One objective evaluation (forward and backward) at `size` px, ready to repeat: what throughput() times."""
    import torch

    from ...settings import Settings
    from ...transfer import Objective

    x = torch.rand(1, 3, size, size, device=backbone.device)
    obj = Objective(backbone, Settings(), x, [x])
    y = x.clone().requires_grad_(True)

    def step() -> None:
        y.grad = None
        obj(y)["total"].backward()

    return step


def run_steps(backbone, size: int) -> Callable[[], None]:
    """Steps of a real run at `size` px, ready to repeat: what a lane does (the optimiser, the step's host sync and
    the previews at their usual cadence included, which bare evaluations would leave out of the measuring)."""
    import numpy as np
    from PIL import Image

    from ...settings import Settings
    from ...transfer import stylize

    rng = np.random.default_rng(0)
    photo, painting = (Image.fromarray(rng.integers(0, 255, (size * 3 // 4, size, 3), dtype=np.uint8)) for _ in "ab")
    frames = stylize(photo, [painting], Settings(size=size, iterations=100_000, scales=1), backbone)
    return lambda: next(frames)


def throughput(
    backbone, lanes: int, size: int = 512, evals: int = 6, streams: Streams | None = None, setup=run_steps
) -> float:
    """Steps per second (one evaluation each) with `lanes` real runs side by side, each on its lane's stream.
    A lane that fails fails the measuring at once (it breaks the start line the others wait at) with its error."""
    import torch

    streams = streams or streams_for(backbone.device)
    barrier = threading.Barrier(lanes + 1, timeout=BARRIER_TIMEOUT)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with streams.lane():
                step = setup(backbone, size)
                step()  # warm-up (and the run's targets)
                barrier.wait()
                for _ in range(evals):
                    step()
                if backbone.device.type == "cuda":
                    torch.cuda.current_stream().synchronize()
        except threading.BrokenBarrierError:
            pass  # another lane failed (its error is the one to tell)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=one, name="nst-lane-measure", daemon=True) for _ in range(lanes)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    if barrier.broken:
        raise RuntimeError(f"measuring {lanes} lanes: a lane did not start within {BARRIER_TIMEOUT:.0f} s")
    return lanes * evals / (time.perf_counter() - start)


def run_memory(backbone, size: int = 512) -> int:
    """Bytes of GPU memory one evaluation at `size` px takes at its peak."""
    import torch

    torch.cuda.synchronize(backbone.device)
    torch.cuda.reset_peak_memory_stats(backbone.device)
    base = torch.cuda.memory_allocated(backbone.device)
    evaluation(backbone, size)()
    torch.cuda.synchronize(backbone.device)
    return torch.cuda.max_memory_allocated(backbone.device) - base


def fits(per_run_bytes: float, free_bytes: float) -> int:
    """How many runs at the worst settings the GPU's free memory holds (at least one: a smaller run may fit)."""
    return max(1, int(MEMORY_SHARE * free_bytes // max(per_run_bytes, 1)))


def choose(measured: dict[int, float], per_run_bytes: float, free_bytes: float) -> int:
    """The fewest lanes within 5% of the best throughput measured, and no more than the memory holds."""
    best = max(measured.values())
    lanes = min(k for k, v in measured.items() if v >= 0.95 * best)
    return max(1, min(lanes, fits(per_run_bytes, free_bytes)))


def out_of_memory(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# What the caching allocator and cuDNN's workspaces add to a run's own tensors on a GPU (benchmarks/gpu_check.py
# measures a run's real peak against this estimate).
GPU_SLACK = 1.25


def worst_settings(max_size: int):
    """The settings a lane must have room for: the largest size, float32 (twice bf16's activations), the painting
    at twice the photo's size (its target pass can be a run's peak) and L-BFGS's default history."""
    from ...settings import Settings

    return Settings(size=max_size, precision="float32", style_scale=2.0, lbfgs_history=10)


def worst_run_bytes(backbone, max_size: int) -> float:
    """GPU memory of one run at worst_settings(): serve/memory.py's estimate from VGG19's layer shapes, with the
    allocator's slack; where that module is missing, one evaluation at 512 px measured and scaled by the pixels
    (which leaves out float32's activations, a painting scaled up and the optimiser's history)."""
    try:
        from ..memory import run_bytes
    except ImportError:
        return run_memory(backbone) * (max_size / 512) ** 2
    return GPU_SLACK * run_bytes(worst_settings(max_size), 1.0, "cuda")


def measure_up_to(backbone, most: int, measure: Callable[[int], float]) -> dict[int, float]:
    """measure(k) for each candidate k up to `most` (1 always): a candidate that runs out of memory ends the
    measuring at the one before it (a GPU shared with another process, or smaller than the estimate assumed), its
    blocks given back first; any other error is raised. Running out of memory with one lane is raised too."""
    import gc

    import torch

    measured: dict[int, float] = {}
    for k in CANDIDATES:
        if k > max(1, most):
            break
        short = False
        try:
            measured[k] = measure(k)
        except Exception as e:
            if k == 1 or not out_of_memory(e):
                raise
            short = True
        if short:
            # Outside the `except`: its traceback (through the lanes' frames) held the failed runs' tensors. Those
            # frames sit in reference cycles, so only a collection frees them before the cache can be emptied.
            gc.collect()
            if backbone.device.type == "cuda":
                torch.cuda.synchronize(backbone.device)
            torch.cuda.empty_cache()
            break
    return measured


def measure_lanes(backbone, max_size: int = 2048, streams: Streams | None = None) -> tuple[int, dict[int, float]]:
    """(lanes, evaluations per second for each candidate measured): in a GPU worker when it starts (a few seconds),
    on the streams its runs will use. Only as many lanes as the free memory holds at the worst settings are measured:
    eight real runs at once on a 16 GB card, or beside another process's memory, would run out of it."""
    import torch

    streams = streams or streams_for(backbone.device)
    per_run = worst_run_bytes(backbone, max_size)
    torch.cuda.synchronize(backbone.device)
    torch.cuda.empty_cache()  # blocks cached by loading the weights and the cost probe are free for the runs
    free, _ = torch.cuda.mem_get_info(backbone.device)
    measured = measure_up_to(backbone, fits(per_run, free), lambda k: throughput(backbone, k, streams=streams))
    return choose(measured, per_run, free), measured
