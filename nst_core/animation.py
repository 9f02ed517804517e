"""Animations of a run's frames: MP4 (H.264, with PyAV: write_h264, which writes a painted clip's MP4 too), animated
WebP through imageio's v3 API, GIF with Pillow.

Every format: the frames scaled to the final picture's size (a coarse-to-fine run's frames grow), the
final picture held for a moment at the end, and optionally an opening card with the photo and the
painting side by side, so that a shared clip explains itself. GIF and WebP loop forever.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_MAX_BYTES = 4_000_000
KINDS = {"gif": "image/gif", "mp4": "video/mp4", "webp": "image/webp"}  # what make_animation() writes


def _sized(frames: Sequence[Image.Image], w: int, h: int) -> list[Image.Image]:
    return [
        f.convert("RGB") if f.size == (w, h) else f.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        for f in frames
    ]


def _target(final: Image.Image, max_side: int | None, even: bool = False) -> tuple[int, int]:
    w, h = final.size
    if max_side and max(w, h) > max_side:
        w, h = round(w * max_side / max(w, h)), round(h * max_side / max(w, h))
    if even:  # H.264 in yuv420p needs even sides
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


def intro_card(photo: Image.Image, painting: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The photo and the painting side by side on one frame of the animation's size, with a caption."""
    w, h = size
    card = Image.new("RGB", size, (246, 244, 239))
    cap = max(12, h // 12)
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=max(10, cap - 4))
    for i, (im, label) in enumerate(((photo, "photo"), (painting, "painting"))):
        t = im.convert("RGB").copy()
        t.thumbnail((w // 2 - 8, h - cap - 8), Image.Resampling.LANCZOS)
        x = i * (w // 2) + (w // 2 - t.width) // 2
        card.paste(t, (x, (h - cap - t.height) // 2))
        draw.text((i * (w // 2) + w // 4, h - cap // 2 - 1), label, fill=(40, 40, 40), font=font, anchor="mm")
    return card


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


def _encode_gif(frames: Sequence[Image.Image], durations: list[int]) -> bytes:
    """Written with Pillow itself, not imageio's pillow plugin: the plugin builds each frame from an array
    and then remaps it to the shared palette, many times slower (docs/benchmarks.md, "Animations"), and the GIF
    is made on the web server at the end of every run."""
    palette = _shared_palette(frames)
    quantized = [f.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in frames]
    buf = io.BytesIO()
    quantized[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=quantized[1:],
        loop=0,
        duration=_one_or_all(durations),
        optimize=False,
    )
    return buf.getvalue()


def _timeline(frames, intro, intro_ms: int, frame_ms: int, final_ms: int) -> tuple[list, list[int]]:
    """The pictures of a GIF or WebP and how long each shows: the card, the steps, the final one held."""
    head = [intro] if intro is not None else []
    return head + list(frames), [intro_ms] * len(head) + [frame_ms] * (len(frames) - 1) + [final_ms]


def _one_or_all(durations: list[int]) -> int | list[int]:
    """Pillow takes a list of durations for an animation but only a number for a single frame."""
    return durations if len(durations) > 1 else durations[0]


def _thin(frames: list[Image.Image]) -> list[Image.Image]:
    """Drop every other frame, always keeping the first and the last."""
    return frames[:-1:2] + [frames[-1]]


def make_gif(
    frames: Sequence[Image.Image],
    max_bytes: int = DEFAULT_MAX_BYTES,
    frame_ms: int = 120,
    final_ms: int = 2000,
    max_side: int | None = 512,
    intro: Image.Image | None = None,
    intro_ms: int = 1500,
) -> bytes:
    """A looping GIF no larger than max_bytes: frames (first to last) at the last frame's size.

    The budget is met first by dropping frames (down to 8), then by scaling down. `intro`, if given, is
    an opening card (intro_card()) shown for intro_ms.
    """
    if not frames:
        raise ValueError("no frames to animate")
    w, h = _target(frames[-1], max_side)
    frames = list(frames)
    while True:
        seq, durations = _timeline(frames, intro, intro_ms, frame_ms, final_ms)
        data = _encode_gif(_sized(seq, w, h), durations)
        if len(data) <= max_bytes:
            return data
        if len(frames) > 8:
            frames = _thin(frames)
        elif min(w, h) > 32:
            w, h = max(16, round(w * 0.75)), max(16, round(h * 0.75))
        else:
            raise ValueError(f"cannot fit the animation into {max_bytes} bytes")


def make_mp4(
    frames: Sequence[Image.Image],
    fps: int = 8,
    final_s: float = 2.0,
    max_side: int | None = 1024,
    intro: Image.Image | None = None,
    intro_s: float = 1.5,
) -> bytes:
    """An H.264 MP4 in yuv420p (plays in browsers and on phones, and starts before it has all come: write_h264), at
    the encoder's default quality (crf 23: a run's previews need no more)."""
    if not frames:
        raise ValueError("no frames to animate")
    w, h = _target(frames[-1], max_side, even=True)
    seq = [intro] * round(fps * intro_s) if intro is not None else []
    seq += list(frames) + [frames[-1]] * max(0, round(fps * final_s) - 1)
    return write_h264(_sized(seq, w, h), fps, crf=23)


def _rate(fps: float) -> Fraction:
    # Never 0: a rate under 1/2002 would round to it, and the encoder's time base is its inverse.
    return max(Fraction(fps).limit_denominator(1001), Fraction(1, 1001))


def write_h264(
    frames: Sequence[Image.Image],
    fps: float,
    *,
    crf: int = 20,
    sound: tuple[int, Callable[[object, object], None]] | None = None,
) -> bytes:
    """`frames` as an H.264 MP4 (yuv420p, even sides: plays in browsers and on phones) at `fps`: a run's animation
    (make_mp4) and a painted clip (clips.write_mp4, which gives the `sound`: its sample rate and a function that
    muxes it into the AAC stream made for it, after the pictures)."""
    import av

    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write")
    w, h = frames[0].size
    w, h = max(2, w - w % 2), max(2, h - h % 2)  # H.264 in yuv420p needs even sides
    rate = _rate(fps)

    def mux(target, options: dict[str, str]) -> None:
        with av.open(target, "w", format="mp4", options=options) as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"crf": str(crf), "preset": "medium"}
            audio = None
            if sound is not None:
                audio = out.add_stream("aac", rate=sound[0])
                audio.layout = "stereo"
            for i, im in enumerate(frames):
                im = im.convert("RGB")
                if im.size != (w, h):
                    im = im.crop((0, 0, w, h)) if im.size[0] - w <= 1 and im.size[1] - h <= 1 else im.resize((w, h))
                vf = av.VideoFrame.from_image(im)
                vf.pts = i
                vf.time_base = 1 / rate
                for p in vs.encode(vf):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
            if audio is not None:
                sound[1](out, audio)

    # "faststart": the index (the moov box) ahead of the pictures, so that a browser or a phone starts playing before
    # the whole file has come. The muxer moves it in a second pass over a file it reopens: a file, not memory. Where
    # no temporary file can be written (no usable temporary folder, or a full disk), the MP4 is written in memory as
    # it is, without it: it still plays, once it has come. Any other error is the encode's own, and is raised.
    try:
        folder = tempfile.TemporaryDirectory(prefix="nst-mp4-", ignore_cleanup_errors=True)
    except OSError:
        folder = None
    if folder is not None:
        with folder as name:
            path = os.path.join(name, "clip.mp4")
            try:
                mux(path, {"movflags": "+faststart"})
                return Path(path).read_bytes()
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
    buf = io.BytesIO()
    mux(buf, {})
    return buf.getvalue()


def make_webp(
    frames: Sequence[Image.Image],
    frame_ms: int = 120,
    final_ms: int = 2000,
    max_side: int | None = 768,
    quality: int = 80,
    intro: Image.Image | None = None,
    intro_ms: int = 1500,
) -> bytes:
    """An animated WebP in full colour (lossy, `quality`), looping forever."""
    import imageio.v3 as iio

    if not frames:
        raise ValueError("no frames to animate")
    w, h = _target(frames[-1], max_side)
    seq, durations = _timeline(frames, intro, intro_ms, frame_ms, final_ms)
    pixels = np.stack([np.asarray(f) for f in _sized(seq, w, h)])
    return iio.imwrite("<bytes>", pixels, extension=".webp", duration=_one_or_all(durations), loop=0, quality=quality)


def gif_frames(data: bytes) -> list[Image.Image]:
    """The frames of a GIF, as RGB pictures."""
    from PIL import ImageSequence

    with Image.open(io.BytesIO(data)) as im:
        return [frame.convert("RGB") for frame in ImageSequence.Iterator(im)]


def make_animation(kind: str, frames: Sequence[Image.Image], intro: Image.Image | None = None) -> bytes:
    """`kind`: gif, mp4 or webp (a file's extension, with or without the dot)."""
    kind = kind.lower().lstrip(".")
    makers = {"gif": make_gif, "mp4": make_mp4, "webp": make_webp}
    if kind not in makers:
        raise ValueError(f"cannot write a .{kind} animation; choose .gif, .mp4 or .webp")
    return makers[kind](frames, intro=intro)
