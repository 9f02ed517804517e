"""The memory a run needs (run by hand; prints figures, asserts nothing): for each size, a fresh worker process
(the app's default backend) runs one default-settings run, and the worker's peak RSS (VmHWM) is read after it;
the server side (this process: the queue, the run's PNG previews, the GIF) is read before and after.

    .venv/bin/python -m benchmarks.bench_memory [--sizes 256 512 768] [--iterations 20]

The peak comes in the top level's evaluations, so a short run (a few evaluations there) reaches it.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import SAMPLES, machine, mem_mb
from nst_core import Settings, load_image
from nst_core.animation import make_animation
from nst_core.images import fit
from nst_core.serve.jobs import DONE, Runner, StyleTask
from nst_core.serve.limits import Limits
from nst_core.serve.process_backend import ProcessBackend


def one(size: int, iterations: int) -> dict:
    backend = ProcessBackend("original", "auto", Limits(max_size_cpu=4096))
    worker = backend.pool.idle()[0].proc.pid
    loaded = mem_mb(worker, "VmHWM")
    runner = Runner(backend, Limits(max_size_cpu=4096, heartbeat_timeout=3600))
    s = Settings(size=size, iterations=iterations, preview_every=max(1, iterations // 10))
    photo, painting = load_image(SAMPLES / "content" / "chelsea.png"), load_image(SAMPLES / "styles" / "the_scream.jpg")
    before = mem_mb(os.getpid())
    t = time.perf_counter()
    job = runner.submit(StyleTask(fit(photo, size), (fit(painting, size),), s))
    while job.active:
        job.heartbeat()
        time.sleep(0.1)
    gif = make_animation("gif", [f.image() for f in job.final_frames()])
    out = {
        "state": job.state,
        "seconds": time.perf_counter() - t,
        "worker_loaded": loaded,
        "worker_peak": mem_mb(worker, "VmHWM"),
        "server_delta": mem_mb(os.getpid()) - before,
        "gif_mb": len(gif) / 1e6,
    }
    backend.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768])
    ap.add_argument("--iterations", type=int, default=20)
    a = ap.parse_args()
    print(f"{machine()}; default settings but {a.iterations} evaluations; Chelsea x The Scream")
    for size in a.sizes:
        r = one(size, a.iterations)
        assert r["state"] == DONE, r
        print(
            f"{size} px: worker {r['worker_loaded']:.0f} MB after loading VGG19, peak {r['worker_peak']:.0f} MB "
            f"during the run ({r['seconds']:.1f} s); server +{r['server_delta']:.0f} MB for the run's previews and "
            f"its GIF ({r['gif_mb']:.2f} MB)",
            flush=True,
        )


if __name__ == "__main__":
    main()
