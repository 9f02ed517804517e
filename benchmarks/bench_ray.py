"""The Ray backend against the local worker process (run by hand; prints figures, asserts nothing).

1. Overhead per run: the same small style transfer (default 128 px, 20 steps, a preview every 2 steps)
   through the worker process and through a Ray actor on a local instance, alternately, several times.
2. Overhead per frame: a task that sends 400 frames as fast as it can (no work), with a small image on
   every 10th, through both.
3. Throughput on a local Ray instance: 4 of the small runs submitted at once to 1 worker with every CPU,
   then to 2 workers with half the CPUs each.

Everything runs on 127.0.0.1; the Ray instances are started and shut down here.

    .venv/bin/python -m benchmarks.bench_ray [--size 128] [--iterations 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only

from benchmarks.common import ROOT
from nst_core import Settings
from nst_core.images import fit, load_image
from nst_core.serve.backends.process import ProcessBackend
from nst_core.serve.backends.ray import RayBackend
from nst_core.serve.job import DONE
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.tasks.still import StyleTask
from tests.tasks import Ticking

SAMPLES = ROOT / "samples"


def run_all(runner: Runner, tasks: list) -> float:
    """Submit all at once; seconds until the last is done."""
    t = time.perf_counter()
    jobs = [runner.submit(task, owner=f"s{i}") for i, task in enumerate(tasks)]
    while any(j.active for j in jobs):
        for j in jobs:
            j.heartbeat()
        time.sleep(0.005)
    assert all(j.state == DONE for j in jobs), [j.reason for j in jobs]
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} cores, Python {platform.python_version()}")
    content = fit(load_image(SAMPLES / "content" / "chelsea.png"), args.size)
    style = fit(load_image(SAMPLES / "styles" / "starry_night.jpg"), args.size)
    small = StyleTask(content, (style,), Settings(size=args.size, iterations=args.iterations, preview_every=2))
    frames = Ticking(400, 0.0, image_every=10)
    limits = Limits()

    t = time.perf_counter()
    process = Runner(ProcessBackend("original", "cpu", limits), limits)
    print(f"worker process ready in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    ray_backend = RayBackend("original", "cpu", limits, num_cpus=cpus)
    ray_runner = Runner(ray_backend, limits)
    print(f"local Ray instance and 1 actor ready in {time.perf_counter() - t:.1f} s ({ray_backend.info['device']})")

    for name, task in (("small run", small), ("400 frames", frames)):
        for runner in (process, ray_runner):  # warm-up
            run_all(runner, [task])
        times = {"process": [], "ray": []}
        for _ in range(args.repeats):  # alternately, so that both see the same machine
            times["process"].append(run_all(process, [task]))
            times["ray"].append(run_all(ray_runner, [task]))
        p, r = statistics.median(times["process"]), statistics.median(times["ray"])
        per = f", {(r - p) / 400 * 1000:+.2f} ms per frame" if task is frames else ""
        print(
            f"{name}: worker process {p:.3f} s, Ray {r:.3f} s (median of {args.repeats}): "
            f"Ray {r / p:.2f}x, {r - p:+.3f} s per run{per}"
        )
    process.backend.close()
    ray_backend.close()

    for workers in (1, 2):
        backend = RayBackend("original", "cpu", Limits(ray_cpus=cpus // workers), num_cpus=cpus)
        runner = Runner(backend, limits)
        run_all(runner, [small] * workers)  # warm-up, every actor
        took = run_all(runner, [small] * 4)
        print(f"throughput, {backend.info['device']}: 4 runs in {took:.1f} s, {4 / took * 60:.1f} runs per minute")
        backend.close()


if __name__ == "__main__":
    main()
