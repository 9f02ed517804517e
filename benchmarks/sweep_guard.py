"""The optimiser sweep of issue 8 (run by hand; prints figures): does any run end worse than it was?

For two photos x three paintings x init content/noise/style x style weight 1/100/1e4 x L-BFGS/Adam
(plus style alone from noise), at a small size: the objective of the image the run returns (evaluated
afresh, on the saved 8-bit picture), against the best and the first evaluation of the run's top level (at
the default 96 px the run has one level; `--size 128` gives two, 64 and 128 px).
"""

from __future__ import annotations

import argparse
import itertools
import time

from benchmarks.common import ROOT
from nst_core import Settings, load_backbone, load_image, stylize
from nst_core.images import fit, to_tensor
from nst_core.settings import PRECISIONS
from nst_core.transfer import Objective, level_targets

PHOTOS = ("chelsea.png", "astronaut.png")
PAINTINGS = ("starry_night.jpg", "the_scream.jpg", "composition_vii.jpg")


def sweep_settings(size: int, iterations: int, precision: str = "auto"):
    for init, w, opt in itertools.product(("content", "noise", "style"), (1.0, 100.0, 1e4), ("lbfgs", "adam")):
        yield Settings(
            size=size,
            iterations=iterations,
            init=init,
            style_weight=w,
            optimizer=opt,
            lr=1.0 if opt == "lbfgs" else 0.02,
            preview_every=iterations,
            precision=precision,
        )
    for opt in ("lbfgs", "adam"):  # style alone (the Lab's experiment 3)
        yield Settings(
            size=size,
            iterations=iterations,
            init="noise",
            content_layers=(),
            tv_weight=0.0,
            style_weight=1.0,
            style_layers=("relu1_1", "relu2_1", "relu3_1"),
            optimizer=opt,
            lr=1.0 if opt == "lbfgs" else 0.02,
            preview_every=iterations,
            precision=precision,
        )


def final_objective(backbone, content, styles, s: Settings, image) -> float:
    c, st, _ = level_targets(content, styles, s, s.size, backbone.device)
    return float(Objective(backbone, s, c, st)(to_tensor(image, backbone.device))["total"])


def check(backbone, content, styles, s: Settings) -> dict:
    frames = list(stylize(content, styles, s, backbone))
    last_level = [f for f in frames if f.size == frames[-1].size]
    best = min(f.losses["total"] for f in last_level)
    final = final_objective(backbone, content, styles, s, frames[-1].image)
    # Each coarse-to-fine level has its own objective: the run is judged at the top level, from where it began.
    return {"start": last_level[0].losses["total"], "best": best, "final": final}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    a = ap.parse_args()
    bb = load_backbone("original", "cpu")
    print(f"precision {a.precision} (bfloat16 on this CPU: {bb.uses_bf16(a.precision)})")
    photos = [fit(load_image(ROOT / "samples/content" / p), a.size) for p in PHOTOS]
    paintings = [fit(load_image(ROOT / "samples/styles" / p), a.size) for p in PAINTINGS]
    t0, bad, n, worst = time.perf_counter(), [], 0, 0.0
    for photo, painting in itertools.product(photos, paintings):
        for s in sweep_settings(a.size, a.iterations, a.precision):
            r = check(bb, photo, [painting], s)
            n += 1
            ratio = r["final"] / r["best"]
            worst = max(worst, ratio)
            if not (ratio <= 1.2 and r["final"] < r["start"]):
                bad.append((s.init, s.style_weight, s.optimizer, s.content_layers, r))
    print(f"{n} runs at {a.size} px, {a.iterations} steps, {time.perf_counter() - t0:.0f} s")
    print(f"worst final/best: {worst:.3f}; runs ending > 1.2x their best or not below their start: {len(bad)}")
    for b in bad:
        print("  ", b)


if __name__ == "__main__":
    main()
