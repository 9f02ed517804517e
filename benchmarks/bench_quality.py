"""Quality per second against pastiche 1.6.0 (run by hand; prints figures, asserts nothing).

For each photo/painting pair, at one size: one pastiche run of 200 steps that saves its picture every 25
steps (`--workspace`; the file times give the wall time to each point, start-up included), and our CLI at
several budgets (wall time of each process, start-up included). Every picture is scored under one fixed
objective, pastiche's own (its content and style terms separately), with our backbone, whose features the
test suite checks against pastiche's. For each pastiche point (25, 50, 100, 200 steps) it prints the
fastest of our points that is better (CRITERIA: both losses lower; lower objective), as a ratio of wall times.

Two series of ours: our defaults (the product), and with --same-objective also our engine set to optimise
pastiche's objective itself (its per-layer weights written in our units for this pair and size, no TV, its own
content and style pictures: see same_objective). Pastiche's objective is in effect relu4_1's Gram error (weight
1350-6200 against the content's 1 in our units for our pairs, where our default gives every layer 2), a far
stronger stylisation than our default, so the first series compares two trade-offs and the second compares the
engines on one. Both tests (CRITERIA) are printed: on one objective, "both losses lower" compares two paths (an
unconverged pastiche run is still near the photo), so the objective itself is the test of speed there.

    .venv/bin/python -m benchmarks.bench_quality [--size 256] [--budgets 40 80 160] [--same-objective]
        [--pairs chelsea.png:the_scream.jpg ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, STYLE_LAYERS, machine, pastiche_inputs, pastiche_terms
from nst_core import images, load_backbone, load_image
from nst_core.images import to_tensor
from nst_core.losses import gram

PAIRS = ["astronaut.png:starry_night.jpg", "chelsea.png:the_scream.jpg", "rocket.jpg:composition_vii.jpg"]
# When one of our points counts as better than a pastiche point, both scored under pastiche's objective:
# the test, and the objective itself (content + style), the measure an optimiser is judged by.
CRITERIA = {
    "both losses lower": lambda ours, theirs: ours[0] < theirs[0] and ours[1] < theirs[1],
    "lower objective": lambda ours, theirs: sum(ours) < sum(theirs),
}


def same_objective(bb, content_path: Path, style_path: Path, size: int, tmp: Path) -> tuple[Path, Path, list[str]]:
    """Inputs and CLI options that make our objective pastiche's at the output size, up to a constant factor.

    Ours is content_weight * MSE/E_c + style_weight * sum_l w_l MSE_l/E_l (E: the target's mean square, w_l
    normalised to sum 1); pastiche's is 0.01 * MSE + sum_l 10/C_l^2 MSE_l. So with content weight 1, layer l
    gets 10/C_l^2 * E_l / (0.01 * E_c), which depends on the pair and the size. TV off. The content and style
    pictures are pastiche's own (bilinear, its sizes), saved losslessly and passed at a scale where our top level
    uses them unchanged: the Gram differences left near convergence are small enough that another resampling of
    the painting changes the style term by up to 40%. The coarse levels use the same weights (they only make the
    start of the top level)."""
    w, h = images.fit(load_image(content_path), size).size
    content, style = pastiche_inputs(content_path, style_path, h, w)
    paths = tmp / "content_px.png", tmp / "style_px.png"
    content.save(paths[0])
    style.save(paths[1])
    with torch.no_grad():
        e_c = bb.extract(to_tensor(content), ["relu4_2"])["relu4_2"].pow(2).mean()
        fs = bb.extract(to_tensor(style), STYLE_LAYERS)
    per_layer = [float(10 / fs[l].shape[1] ** 2 * gram(fs[l]).pow(2).mean() / (0.01 * e_c)) for l in STYLE_LAYERS]
    options = [
        "--style-weight",
        f"{sum(per_layer):.6g}",
        "--style-layer-weights",
        ",".join(f"{x:.6g}" for x in per_layer),
        "--tv-weight",
        "0",
        "--style-scale",
        repr(max(style.size) / size),
    ]
    return *paths, options


def pastiche_points(content: Path, style: Path, size: int, tmp: Path) -> list[tuple[int, float, Path]]:
    ws = tmp / "ws"
    t0 = time.time()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pastiche",
            "--size",
            str(size),
            "--num-steps",
            "200",
            "--device",
            "cpu",
            "--workspace",
            str(ws),
            "--workspace-step",
            "25",
            "--no-verbose",
            "--content",
            str(content),
            "--styles",
            str(style),
            "--output",
            str(tmp / "pastiche.png"),
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    points = []
    for f in sorted(ws.glob("*.png")):
        step = int(f.stem)
        if step in (25, 50, 100, 200):
            points.append((step, f.stat().st_mtime - t0, f))
    return points


def our_point(content: Path, style: Path, size: int, budget: int, tmp: Path, *options: str) -> tuple[float, Path]:
    """Our CLI at one budget: (wall time of the whole process, result)."""
    out = tmp / f"ours{budget}{len(options)}.png"
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nst_core",
            str(content),
            str(style),
            "--size",
            str(size),
            "--iterations",
            str(budget),
            "--device",
            "cpu",
            "-q",
            "-o",
            str(out),
            *options,
        ],
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--budgets", type=int, nargs="+", default=[40, 80, 160])
    ap.add_argument("--same-objective", action="store_true", help="also run ours on pastiche's own objective")
    ap.add_argument("--pairs", nargs="+", default=PAIRS, help="photo:painting")
    a = ap.parse_args()
    print(f"machine: {machine()}; {a.size} px; scored under pastiche's objective (content, style)")
    bb = load_backbone("original", "cpu")
    worst: dict[tuple[str, str], float] = {}
    for photo, painting in (p.split(":") for p in a.pairs):
        content, style = ROOT / "samples/content" / photo, ROOT / "samples/styles" / painting
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            theirs = [
                (n, t, pastiche_terms(bb, f, content, style))
                for n, t, f in pastiche_points(content, style, a.size, tmp)
            ]
            inputs = {"ours (defaults)": (content, style, [])}  # series: (photo, painting, CLI options)
            if a.same_objective:
                inputs["ours (pastiche's objective)"] = same_objective(bb, content, style, a.size, tmp)
            series = {name: [] for name in inputs}
            for b in a.budgets:  # the series alternate, so a slow spell of the machine hits both
                for name, (c_path, s_path, options) in inputs.items():
                    t, f = our_point(c_path, s_path, a.size, b, tmp, *options)
                    series[name].append((b, t, pastiche_terms(bb, f, content, style)))
        print(f"{photo} x {painting}" + "".join(f" ({name}: {' '.join(o)})" for name, (*_, o) in inputs.items() if o))
        for name, pts in {"pastiche": theirs, **series}.items():
            print("  " + name + ": " + "; ".join(f"{n} steps {t:.1f} s c={c:.4g} s={s:.4g}" for n, t, (c, s) in pts))
        for name, ours in series.items():
            for n, t, (c, s) in theirs:
                for test, better_than in CRITERIA.items():
                    t2, b = min(((t2, b) for b, t2, cs in ours if better_than(cs, (c, s))), default=(None, None))
                    ratio = t2 / t if t2 is not None else float("inf")
                    worst[name, test] = max(worst.get((name, test), 0.0), ratio)
                    found = f"{b} steps in {t2:.1f} s, {ratio:.2f}x its time" if t2 is not None else "none"
                    print(f"  {name} vs pastiche {n} steps ({t:.1f} s), {test}: {found}")
    for (name, test), ratio in worst.items():
        print(f"{name}, {test}: worst time ratio over all pastiche points {ratio:.2f}x")


if __name__ == "__main__":
    main()
