"""Quality per second against pastiche 1.6.0 (run by hand; prints figures, asserts nothing).

For each photo/painting pair, at one size: one pastiche run of 200 steps that saves its picture every 25
steps (`--workspace`; the file times give the wall time to each point, start-up included), and our CLI at
several budgets (wall time of each process, start-up included). Every picture is scored under one fixed
objective, pastiche's own (its content and style terms separately), with our backbone, whose features the
test suite checks against pastiche's. For each pastiche point (25, 50, 100, 200 steps) it prints the
fastest of our points whose content and style losses are both lower, as a ratio of wall times.

    .venv/bin/python benchmarks/bench_quality.py [--size 256] [--budgets 40 80 160]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import machine  # noqa: E402
from nst_core import load_backbone, load_image  # noqa: E402
from nst_core.images import to_tensor  # noqa: E402
from nst_core.losses import gram  # noqa: E402

PAIRS = [
    ("astronaut.png", "starry_night.jpg"),
    ("chelsea.png", "the_scream.jpg"),
    ("rocket.jpg", "composition_vii.jpg"),
]
STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def pastiche_terms(bb, image_path: Path, content_path: Path, style_path: Path) -> tuple[float, float]:
    """pastiche 1.6.0's default objective, split: content 0.01 * MSE on relu4_2; style: sum over relu1_1 ...
    relu5_1 of 10/C^2 * MSE of Grams (each divided by H*W); caffe-scale features, no TV."""
    x = to_tensor(load_image(image_path))
    h, w = x.shape[-2:]
    c = to_tensor(load_image(content_path).resize((w, h)))
    st_im = load_image(style_path)  # pastiche scales the style to the content's pixel count
    sh = round((h * w * st_im.height / st_im.width) ** 0.5)
    st = to_tensor(st_im.resize((round(st_im.width / st_im.height * sh), sh)))
    mse = torch.nn.functional.mse_loss
    with torch.no_grad():
        fx, fc, fs = bb.extract(x, STYLE_LAYERS + ["relu4_2"]), bb.extract(c, ["relu4_2"]), bb.extract(st, STYLE_LAYERS)
        content = 0.01 * mse(fx["relu4_2"], fc["relu4_2"])
        style = sum(10 / fx[l].shape[1] ** 2 * mse(gram(fx[l]), gram(fs[l])) for l in STYLE_LAYERS)
    return float(content), float(style)


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


def our_point(content: Path, style: Path, size: int, budget: int, tmp: Path) -> tuple[float, Path]:
    out = tmp / f"ours{budget}.png"
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
        ],
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--budgets", type=int, nargs="+", default=[40, 80, 160])
    a = ap.parse_args()
    print(f"machine: {machine()}; {a.size} px; scored under pastiche's objective (content, style)")
    bb = load_backbone("original", "cpu")
    worst = 0.0
    for photo, painting in PAIRS:
        content, style = ROOT / "samples/content" / photo, ROOT / "samples/styles" / painting
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            theirs = [
                (n, t, pastiche_terms(bb, f, content, style))
                for n, t, f in pastiche_points(content, style, a.size, tmp)
            ]
            ours = []
            for b in a.budgets:
                t, f = our_point(content, style, a.size, b, tmp)
                ours.append((b, t, pastiche_terms(bb, f, content, style)))
        print(f"{photo} x {painting}")
        for name, pts in (("pastiche", theirs), ("ours", ours)):
            print("  " + name + ": " + "; ".join(f"{n} steps {t:.1f} s c={c:.4g} s={s:.4g}" for n, t, (c, s) in pts))
        for n, t, (c, s) in theirs:
            better = [(t2, b) for b, t2, (c2, s2) in ours if c2 < c and s2 < s]
            if better:
                t2, b = min(better)
                worst = max(worst, t2 / t)
                print(
                    f"  pastiche {n} steps ({t:.1f} s): ours {b} steps in {t2:.1f} s, {t2 / t:.2f}x its time, "
                    "both losses lower"
                )
            else:
                worst = float("inf")
                print(f"  pastiche {n} steps ({t:.1f} s): none of our budgets has both losses lower")
    print(f"worst time ratio over all pastiche points: {worst:.2f}x")


if __name__ == "__main__":
    main()
