"""float32 against bfloat16 for the VGG19 passes (run by hand; prints figures, asserts nothing).

1. One objective evaluation (forward + backward, default settings) at 128, 256 and 512 px in each precision,
   alternated, median of 5: the time ratio, and how far the bf16 gradient is from the float32 one.
2. With --runs: the default 512 px run through the CLI in each precision, alternated, with the final pictures
   scored under the default objective in float32 (the schedule's own figures come from bench_schedule.py).

    .venv/bin/python -m benchmarks.bench_precision [--runs]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, levels, machine, run_cli_in, score
from nst_core import Settings, load_backbone, load_image
from nst_core.transfer import Objective, level_targets

CONTENT = ROOT / "samples/content/rocket.jpg"
STYLE = ROOT / "samples/styles/the_scream.jpg"


def evaluations(bb) -> None:
    photo, painting = load_image(CONTENT), load_image(STYLE)
    for size in (128, 256, 512):
        times, grads = {"float32": [], "bfloat16": []}, {}
        for _ in range(5):
            for precision in times:
                s = Settings(precision=precision)
                c, st, _ = level_targets(photo, [painting], s, size)
                obj = Objective(bb, s, c, st)
                x = (0.8 * c + 0.1).requires_grad_(True)
                obj(x)["total"].backward()  # warm-up
                x.grad = None
                t = time.perf_counter()
                obj(x)["total"].backward()
                times[precision].append(time.perf_counter() - t)
                grads[precision] = x.grad.flatten()
        f32, b16 = (statistics.median(times[p]) for p in ("float32", "bfloat16"))
        g, h = grads["float32"], grads["bfloat16"]
        rel = float((h - g).norm() / g.norm())
        cos = float(torch.nn.functional.cosine_similarity(g, h, dim=0))
        print(
            f"{size} px ({c.shape[-1]}x{c.shape[-2]}): float32 {f32 * 1000:.0f} ms, bfloat16 {b16 * 1000:.0f} ms "
            f"({b16 / f32:.2f}x); gradient: relative difference {rel:.3f}, cosine {cos:.4f}"
        )


def runs() -> None:
    sched = levels(ROOT)
    with tempfile.TemporaryDirectory() as d:
        for precision in ("float32", "bfloat16"):
            out = Path(d) / f"{precision}.png"
            m = run_cli_in(ROOT, CONTENT, STYLE, out, "--precision", precision)
            top = sched[-1][1]
            end = min(h["total"] for h in m["losses"][-top:])
            print(
                f"default 512 px run, {precision}: {m['seconds']:.1f} s, best at the top level {end:.4f}, "
                f"final picture scored in float32 {score(out, CONTENT, STYLE):.4f}",
                flush=True,
            )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", action="store_true", help="also the default 512 px run in each precision")
    a = ap.parse_args()
    bb = load_backbone("original", "cpu")
    print(f"machine: {machine()}; native bf16: {bb.native_bf16}; {CONTENT.name} x {STYLE.name}")
    evaluations(bb)
    if a.runs:
        runs()


if __name__ == "__main__":
    main()
