"""The README's clip figure: frames of the sample clip painted one at a time (top) and with the temporal term
(bottom), Lab experiment 7 at a size that shows the flicker, with both warping errors printed.

    .venv/bin/python -m benchmarks.clip_figure [--size 192] [--frames 4] [--iterations 80]  # docs/clip-frames.jpg
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nst_core import load_backbone, load_image
from nst_core.tasks.lab import why_videos_flicker

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=80)
    ap.add_argument("--style", default="starry_night.jpg")
    ap.add_argument("--out", default=str(ROOT / "docs" / "clip-frames.jpg"))
    a = ap.parse_args()
    clip = (ROOT / "samples" / "clips" / "chelsea_pan.mp4").read_bytes()
    style = load_image(ROOT / "samples" / "styles" / a.style)
    plan = why_videos_flicker(clip, style, a.size, a.frames, a.iterations)
    backbone = load_backbone("original", "cpu")
    t = time.perf_counter()
    for frame in plan.frames(backbone):
        pass
    frame.image.save(a.out, quality=88)
    w = frame.losses
    print(
        f"{a.frames} frames at {a.size} px, {a.iterations} steps each: {time.perf_counter() - t:.0f} s; warping error "
        f"alone {w['alone']:.4f}, temporal {w['temporal']:.4f} ({w['temporal'] / w['alone']:.2f}x), "
        f"input {w['floor']:.4f} -> {a.out}"
    )


if __name__ == "__main__":
    main()
