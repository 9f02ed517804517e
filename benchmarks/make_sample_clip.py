"""Make samples/clips/chelsea_pan.mp4: a slow pan and zoom across samples/content/chelsea.png with a round cut of
samples/content/coffee.png sliding across it, and a quiet tone as its sound track. Both pictures are CC0, so is
the clip. The motion is known exactly: `render` also gives the true flow between consecutive frames, which
benchmarks/bench_video.py compares DIS's flow and the warping errors against.

    .venv/bin/python -m benchmarks.make_sample_clip            # writes samples/clips/chelsea_pan.mp4
"""

from __future__ import annotations

import argparse
import io
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "samples" / "clips" / "chelsea_pan.mp4"
SECONDS, FPS, SIZE = 4, 12, 256  # 48 frames, 256x192


def _pictures():
    from nst_core.images import load_image

    return load_image(ROOT / "samples/content/chelsea.png"), load_image(ROOT / "samples/content/coffee.png")


def _windows(n: int, size: int, base: Image.Image, pan: float, zoom: float):
    """Per frame (x, y, s): the frame's pixel centre p shows the base picture at (x, y) + s * (p + 0.5) - 0.5."""
    w, h = size, round(size * 3 / 4)
    s0 = base.width * 0.62 / w  # base pixels per frame pixel at the start: a window about 60% of the photo wide
    out = []
    for i in range(n):
        s = s0 * (1 - zoom * i / max(n - 1, 1))  # zooming in: fewer base pixels per frame pixel
        cx = base.width * 0.33 + pan * s0 * i  # the window's centre slides right (the picture moves left)
        cy = base.height * 0.5
        out.append((cx - s * w / 2, cy - s * h / 2, s))
    return out, (w, h)


def render(
    n: int = SECONDS * FPS, size: int = SIZE, pan: float = 1.5, zoom: float = 0.12, object_speed: float = 3.0
) -> tuple[list[Image.Image], list[np.ndarray], list[np.ndarray]]:
    """(frames, forward flows, backward flows): frames[i] as RGB pictures of size (size, 3/4 size); forward[i] the
    true flow from frame i to frame i+1 and backward[i] from frame i+1 to frame i, each (H, W, 2) float32 arrays
    of (dx, dy) in pixels, with a(p) = b(p + flow(p)). `pan`: frame pixels a frame the background moves; `zoom`:
    the share the view narrows over the clip; `object_speed`: frame pixels a frame the pasted cup moves."""
    photo, coffee = _pictures()
    base = photo
    wins, (w, h) = _windows(n, size, base, pan, zoom)
    r = max(6, size // 9)  # the cup's radius in frame pixels
    cup = coffee.resize((round(coffee.width * 2 * r / coffee.height * 1.0), 2 * r), Image.Resampling.LANCZOS)
    cup = cup.crop(((cup.width - 2 * r) // 2, 0, (cup.width - 2 * r) // 2 + 2 * r, 2 * r))
    disc = Image.new("L", (2 * r, 2 * r), 0)
    ImageDraw.Draw(disc).ellipse((0, 0, 2 * r - 1, 2 * r - 1), fill=255)
    # The cup moves right and a little down, a whole number of pixels a frame (pasted without resampling).
    vx, vy = round(object_speed), round(object_speed / 3)
    ox0, oy0 = w // 8, h // 3
    frames, objs = [], []
    for i, (x, y, s) in enumerate(wins):
        im = base.transform(
            (w, h),
            Image.Transform.AFFINE,
            (s, 0, x, 0, s, y),
            resample=Image.Resampling.BICUBIC,
        )
        ox, oy = ox0 + vx * i, oy0 + vy * i
        im.paste(cup, (ox, oy), disc)
        frames.append(im)
        objs.append((ox, oy))
    inside = np.asarray(disc) > 127
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)

    def bg_flow(a, b):  # background: frame a's pixel p shows the base point of frame b's pixel p + flow
        xa, ya, sa = wins[a]
        xb, yb, sb = wins[b]
        px = (xa + sa * (xs + 0.5) - xb) / sb - 0.5
        py = (ya + sa * (ys + 0.5) - yb) / sb - 0.5
        return np.stack([px - xs, py - ys], axis=-1).astype(np.float32)

    def on_object(i):
        m = np.zeros((h, w), bool)
        ox, oy = objs[i]
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + 2 * r, w), min(oy + 2 * r, h)
        if x1 > x0 and y1 > y0:
            m[y0:y1, x0:x1] = inside[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        return m

    forward, backward = [], []
    for i in range(n - 1):
        fw, bw = bg_flow(i, i + 1), bg_flow(i + 1, i)
        dx, dy = objs[i + 1][0] - objs[i][0], objs[i + 1][1] - objs[i][1]
        fw[on_object(i)] = (dx, dy)
        bw[on_object(i + 1)] = (-dx, -dy)
        forward.append(fw)
        backward.append(bw)
    return frames, forward, backward


def tone(seconds: float, rate: int = 22050) -> np.ndarray:
    """A quiet two-note chime (mono float32), faded in and out: something to hear, nothing loud."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.06 * np.sin(2 * np.pi * 330 * t) + 0.03 * np.sin(2 * np.pi * 495 * t)
    fade = np.minimum(1, np.minimum(t / 0.3, (seconds - t) / 0.3))
    return (wave * fade).astype(np.float32)


def encode(frames: list[Image.Image], fps: int, audio: np.ndarray | None, rate: int = 22050) -> bytes:
    """H.264 (yuv420p) MP4 of the frames, with `audio` (mono float32) as an AAC track."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        vs.options = {"crf": "23", "preset": "slow"}
        if audio is not None:  # every stream before the first packet
            a = out.add_stream("aac", rate=rate)
            a.layout = "mono"
            a.bit_rate = 48_000
        for i, im in enumerate(frames):
            f = av.VideoFrame.from_image(im)
            f.pts = i
            f.time_base = Fraction(1, fps)
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if audio is not None:
            af = av.AudioFrame.from_ndarray(audio[None], format="flt", layout="mono")
            af.sample_rate, af.pts = rate, 0
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode():
                out.mux(p)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=OUT)
    a = ap.parse_args()
    frames, _, _ = render()
    data = encode(frames, FPS, tone(SECONDS))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_bytes(data)
    print(
        f"{a.output}: {len(frames)} frames of {frames[0].width}x{frames[0].height} at {FPS} fps, "
        f"{len(data) / 1e3:.0f} kB"
    )


if __name__ == "__main__":
    main()
