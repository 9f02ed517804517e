"""Sizes and encode times of the GIF, MP4 and WebP of a real run (run by hand; prints figures).

The run is the app's: default settings at each size, a saved picture every iterations/40 steps.

    .venv/bin/python -m benchmarks.bench_animation [--sizes 256 512]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import ROOT, machine
from nst_core import Settings, load_backbone, load_image, stylize
from nst_core.animation import intro_card, make_animation
from nst_core.settings import preview_spacing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    a = ap.parse_args()
    print(f"machine: {machine()}")
    bb = load_backbone("original", "cpu")
    photo = load_image(ROOT / "samples/content/chelsea.png")
    painting = load_image(ROOT / "samples/styles/the_scream.jpg")
    for size in a.sizes:
        s = Settings(size=size, preview_every=preview_spacing(Settings().iterations))
        frames = [f.image for f in stylize(photo, [painting], s, bb) if f.image is not None]
        card = intro_card(photo, painting, frames[-1].size)
        for kind in ("gif", "mp4", "webp"):
            t = time.perf_counter()
            data = make_animation(kind, frames)
            dt = time.perf_counter() - t
            with_intro = len(make_animation(kind, frames, card))
            print(
                f"{size} px, {len(frames)} frames: {kind.upper():4s} {len(data) / 1e6:.2f} MB in {dt:.2f} s "
                f"({with_intro / 1e6:.2f} MB with the opening card)"
            )


if __name__ == "__main__":
    main()
