"""Animated GIF of a run's frames: one shared palette, loops forever, held final frame, byte budget."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image

DEFAULT_MAX_BYTES = 4_000_000


def _shared_palette(frames: Sequence[Image.Image]) -> Image.Image:
    """One adaptive 256-colour palette from a strip of up to 8 frames spread over the run.

    One palette for all frames avoids the flicker of per-frame palettes and lets GIF encoders
    reuse pixels unchanged between frames.
    """
    picks = [frames[round(i * (len(frames) - 1) / 7)] for i in range(8)] if len(frames) > 8 else list(frames)
    thumb = [f.copy() for f in picks]
    for t in thumb:
        t.thumbnail((128, 128))
    strip = Image.new("RGB", (sum(t.width for t in thumb), max(t.height for t in thumb)))
    x = 0
    for t in thumb:
        strip.paste(t, (x, 0))
        x += t.width
    return strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def _encode(frames: Sequence[Image.Image], frame_ms: int, final_ms: int) -> bytes:
    palette = _shared_palette(frames)
    quantized = [f.convert("RGB").quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in frames]
    durations = [frame_ms] * (len(frames) - 1) + [final_ms]
    buf = io.BytesIO()
    quantized[0].save(
        buf, format="GIF", save_all=True, append_images=quantized[1:], loop=0, duration=durations, optimize=False
    )
    return buf.getvalue()


def _thin(frames: list[Image.Image]) -> list[Image.Image]:
    """Drop every other frame, always keeping the first and the last."""
    kept = frames[:-1:2]
    return kept + [frames[-1]]


def make_gif(
    frames: Sequence[Image.Image],
    max_bytes: int = DEFAULT_MAX_BYTES,
    frame_ms: int = 120,
    final_ms: int = 2000,
    max_side: int | None = 512,
) -> bytes:
    """Encode frames (PIL images, first to last) as a looping GIF no larger than max_bytes.

    Frames are resized to the last frame's size (coarse-to-fine runs grow as they go); the budget is
    met first by dropping frames (down to 8), then by scaling down.
    """
    if not frames:
        raise ValueError("no frames to animate")
    final = frames[-1]
    w, h = final.size
    if max_side and max(w, h) > max_side:
        w, h = round(w * max_side / max(w, h)), round(h * max_side / max(w, h))
    frames = list(frames)
    while True:
        sized = [f if f.size == (w, h) else f.resize((w, h), Image.Resampling.LANCZOS) for f in frames]
        data = _encode(sized, frame_ms, final_ms)
        if len(data) <= max_bytes:
            return data
        if len(frames) > 8:
            frames = _thin(frames)
        elif min(w, h) > 32:
            w, h = max(16, round(w * 0.75)), max(16, round(h * 0.75))
        else:
            raise ValueError(f"cannot fit the animation into {max_bytes} bytes")
