"""The memory a run needs (run by hand; prints figures, asserts nothing).

    .venv/bin/python -m benchmarks.bench_memory [--sizes 128 256 384 512 768] [--precisions float32 bfloat16]
    .venv/bin/python -m benchmarks.bench_memory --cgroup 700 900 1100 [--sizes 128 256 512]

Without --cgroup: for each size and precision, a fresh process loads VGG19, warms up with a 64 px run (as a worker's
cost probe does), then does one run of the default settings (30 evaluations: the top level's L-BFGS history fills)
on Chelsea x The Scream; it prints the run's peak above the warmed-up process (VmHWM after clear_refs, and RssAnon
sampled every 5 ms) against nst_core.serve.memory.run_bytes.

With --cgroup (root, a writable cgroup v1 or v2 memory controller): for each memory size a new memory group whose
limit is that size holds a server-side process (the queue, a worker process started as the app starts it, and
streamlit imported as the real server has it), which then runs each size in turn, smallest first, until one fails.
It prints what the server planned (nst_core.serve.memory.size_cap) and what really painted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_ONE = r"""
import json, sys, threading, time
from nst_core import Settings, load_backbone, load_image
from nst_core.images import fit
from nst_core.transfer import run

size, precision = int(sys.argv[1]), sys.argv[2]
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
bb = load_backbone("original", "cpu")
photo = fit(load_image("samples/content/chelsea.png"), size)
painting = fit(load_image("samples/styles/the_scream.jpg"), size)
run(fit(photo, 64), [fit(painting, 64)], Settings(size=64, iterations=4, scales=1), backbone=bb)
open("/proc/self/clear_refs", "w").write("5")
rss, anon = status("VmRSS"), status("RssAnon")
peak_anon, running = anon, True
def sample():
    global peak_anon
    while running:
        peak_anon = max(peak_anon, status("RssAnon"))
        time.sleep(0.005)
t = threading.Thread(target=sample); t.start()
t0 = time.perf_counter()
run(photo, [painting], Settings(size=size, iterations=30, precision=precision), backbone=bb)
running = False; t.join()
print(json.dumps({"hwm": status("VmHWM") - rss, "anon": peak_anon - anon, "loaded_anon": anon,
                  "seconds": time.perf_counter() - t0, "bf16": bb.uses_bf16(precision),
                  "aspect": min(photo.size) / max(photo.size)}))
"""


def one(size: int, precision: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _ONE, str(size), precision], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(sizes: list[int], precisions: list[str]) -> None:
    from benchmarks.common import machine
    from nst_core import Settings
    from nst_core.serve.memory import MB, run_bytes

    print(f"{machine()}; default settings, 30 evaluations, Chelsea x The Scream; MB above the warmed-up worker")
    print("| size | precision | peak RSS (VmHWM) | peak RssAnon | run_bytes | RssAnon / estimate | run |")
    print("|---|---|---|---|---|---|---|")
    for precision in precisions:
        for size in sizes:
            r = one(size, precision)
            est = run_bytes(Settings(size=size, precision=precision), r["aspect"], "cpu", bf16=r["bf16"])
            print(
                f"| {size} px | {precision} | {r['hwm'] / MB:.0f} | {r['anon'] / MB:.0f} | {est / MB:.0f} | "
                f"{r['anon'] / est:.2f} | {r['seconds']:.1f} s |",
                flush=True,
            )
    print(f"(the worker after loading VGG19 and a 64 px run: RssAnon {r['loaded_anon'] / MB:.0f} MB)")


_SERVER = r"""
import json, sys, time
import streamlit  # the real server has it loaded
from nst_core import Settings, load_image
from nst_core.images import fit
from nst_core.serve.job import DONE
from nst_core.serve.queue import Runner
from nst_core.tasks.still import StyleTask
from nst_core.serve.limits import Limits
from nst_core.serve.memory import host_memory, size_cap
from nst_core.serve.backends.process import ProcessBackend

sizes = [int(s) for s in sys.argv[1:]]
limits = Limits(max_size_cpu=max(sizes), heartbeat_timeout=3600)
try:
    backend = ProcessBackend("original", "auto", limits)
except Exception as e:
    print(json.dumps({"started": False, "why": str(e)}), flush=True)
    raise SystemExit
mem = host_memory()
cap = size_cap(mem, limits, 1)
print(json.dumps({"started": True, "used": mem.used, "room": mem.room(), "cap": cap}), flush=True)
runner = Runner(backend, limits)
photo, painting = load_image("samples/content/chelsea.png"), load_image("samples/styles/the_scream.jpg")
for size in sizes:
    job = runner.submit(StyleTask(fit(photo, size), (fit(painting, size),), Settings(size=size, iterations=30)))
    while job.active:
        job.heartbeat()
        time.sleep(0.2)
    print(json.dumps({"size": size, "state": job.state, "reason": job.reason}), flush=True)
    if job.state != DONE:
        break
backend.close()
"""


def _new_group(mb: int) -> tuple[str, str]:
    """A new memory group limited to `mb` MiB: (its directory, its cgroup.procs). cgroup v2 first, then v1."""
    name = f"nst-bench-{os.getpid()}-{mb}"
    for base, limit_file in (("/sys/fs/cgroup", "memory.max"), ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")):
        if os.path.exists(os.path.join(base, limit_file)) or os.path.exists(os.path.join(base, "memory.stat")):
            d = os.path.join(base, name)
            os.mkdir(d)
            with open(os.path.join(d, limit_file), "w") as f:
                f.write(str(mb * MiB))
            return d, os.path.join(d, "cgroup.procs")
    raise SystemExit("no writable cgroup memory controller here (run as root on Linux)")


MiB = 1 << 20


def in_groups(memories: list[int], sizes: list[int]) -> None:
    from benchmarks.common import machine

    print(f"{machine()}; default settings, 30 evaluations, Chelsea x The Scream; server and worker in one group")
    for mb in memories:
        d, procs = _new_group(mb)
        try:
            cmd = [sys.executable, "-c", _SERVER, *map(str, sizes)]
            # The child joins the group before it starts Python (and its worker is born inside it).
            p = subprocess.run(
                ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *cmd],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
            )
            lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
            start = lines[0] if lines else {"started": False, "why": p.stderr.strip()[-300:]}
            if not start["started"]:
                print(f"{mb} MiB: the worker did not start ({start['why']})", flush=True)
                continue
            painted = [x["size"] for x in lines[1:] if x["state"] == "done"]
            failed = [x for x in lines[1:] if x["state"] != "done"]
            print(
                f"{mb} MiB: server and worker use {start['used'] / MiB:.0f} MiB after start, room "
                f"{start['room'] / MiB:.0f} MiB, size cap planned {start['cap']['size'] or 'none'}; painted "
                f"{', '.join(map(str, painted)) or 'nothing'}"
                + (f"; {failed[0]['size']} px {failed[0]['state']}: {failed[0]['reason']}" if failed else ""),
                flush=True,
            )
        finally:
            time.sleep(0.5)
            os.rmdir(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 384, 512, 768])
    ap.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--cgroup", type=int, nargs="+", help="memory sizes in MiB to try a server and worker in")
    a = ap.parse_args()
    if a.cgroup:
        in_groups(a.cgroup, a.sizes)
    else:
        measure(a.sizes, a.precisions)


if __name__ == "__main__":
    main()
