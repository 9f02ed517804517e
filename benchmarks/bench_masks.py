"""A masked run against an unmasked one (run by hand; prints figures, asserts nothing): the default settings at
512 px on Chelsea x Starry Night, the mask the right half of the photo, the two alternated in one process (the
same backbone, warmed up), `--rounds` times each; the median of each and their ratio. Also writes the masked
result, its mask and the unmasked result to --out (the README's picture).

    .venv/bin/python -m benchmarks.bench_masks [--size 512] [--rounds 2] [--out out/masks]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from PIL import Image

from benchmarks.common import SAMPLES, machine
from nst_core import Settings, load_backbone, load_image, stylize
from nst_core.images import encode_mask, fit


def timed(photo, painting, s: Settings, bb) -> tuple[float, Image.Image]:
    t = time.perf_counter()
    last = None
    for frame in stylize(photo, [painting], s, bb):
        last = frame.image or last
    return time.perf_counter() - t, last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="out/masks")
    a = ap.parse_args()
    bb = load_backbone()
    photo = load_image(SAMPLES / "content" / "chelsea.png")
    painting = fit(load_image(SAMPLES / "styles" / "starry_night.jpg"), a.size)
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (photo.width // 2, 0, photo.width, photo.height))
    plain = Settings(size=a.size)
    masked = plain.replace(masks=(encode_mask(mask),))
    timed(photo, painting, Settings(size=64, iterations=4), bb)  # warm-up
    times = {"unmasked": [], "masked": []}
    pictures = {}
    for _ in range(a.rounds):
        for name, s in (("unmasked", plain), ("masked", masked)):
            seconds, pictures[name] = timed(photo, painting, s, bb)
            times[name].append(seconds)
    m, u = statistics.median(times["masked"]), statistics.median(times["unmasked"])
    print(f"{machine()}; {a.size} px, {plain.iterations} evaluations, Chelsea x Starry Night, half the photo masked")
    print(f"unmasked {u:.1f} s {times['unmasked']}, masked {m:.1f} s {times['masked']}: {m / u:.3f}x")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pictures["masked"].save(out / "masked.png")
    pictures["unmasked"].save(out / "unmasked.png")
    mask.resize(pictures["masked"].size).save(out / "mask.png")
    print(f"pictures in {out}/")


if __name__ == "__main__":
    main()
