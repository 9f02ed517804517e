"""What a small upload costs the server (run by hand; prints figures, asserts nothing): a 16-bit grey PNG of about
100 kB that decodes to 30 million pixels, and an 8-bit one of the same size, through load_image as the Studio
calls it (max_side: twice the largest output side), against the conversion before (float64 arrays), side by side.
Memory twice: the process's resident peak above where it started (Linux's VmHWM, reset before each case: all of it,
Pillow's own buffers included) and what Python allocates (tracemalloc: numpy's arrays and Python's byte strings,
not Pillow's image memory); time is the wall clock.

    .venv/bin/python -m benchmarks.bench_upload [--side 5500]
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import time
import tracemalloc

import numpy as np
from PIL import Image

from benchmarks.common import machine, mem_mb
from nst_core.images import load_image


def before(im: Image.Image) -> Image.Image:
    """The conversion of 16-bit pictures before (commit 2c191f2's images.to_rgb), and no working size."""
    a = np.asarray(im, dtype=np.float64)
    hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
    return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")


def resident(key: str) -> float:
    """MB of this process's resident memory: VmRSS (now) or VmHWM (the peak since the last reset)."""
    return mem_mb(os.getpid(), key)


def measure(fn) -> tuple[float, float, float]:
    """(resident peak above the start in MB, tracemalloc's peak in MB, seconds) of fn()."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    start = resident("VmRSS")
    tracemalloc.start()
    t = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return resident("VmHWM") - start, peak / 1e6, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=5500)
    a = ap.parse_args()
    n = a.side
    grey16 = np.full((n, n), 40000, dtype=np.uint16)
    grey16[: n // 2] = 12000
    for name, array in (("16-bit", grey16), ("8-bit", (grey16 >> 8).astype(np.uint8))):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, "PNG", optimize=True)
        data = buf.getvalue()
        print(f"{machine()}; a {len(data) / 1e3:.0f} kB {name} PNG of {n}x{n} ({n * n / 1e6:.0f} megapixels)")
        if name == "16-bit":
            old = measure(lambda: before(Image.open(io.BytesIO(data))))
            print(
                f"  before (float64, full size kept): resident peak +{old[0]:.0f} MB, {old[1]:.0f} MB allocated by "
                f"Python, {old[2]:.2f} s"
            )
        new = measure(lambda: load_image(data, max_side=1536))
        print(
            f"  load_image(max_side=1536): resident peak +{new[0]:.0f} MB, {new[1]:.0f} MB allocated by Python, "
            f"{new[2]:.2f} s; kept 1536 px"
        )


if __name__ == "__main__":
    main()
