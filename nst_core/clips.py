"""Clips in and out: probe and stream the frames of a video or an animated picture, write a painted clip.

Reading (`probe`, `read_frames`, `is_clip`) accepts MP4, MOV and WebM through PyAV (FFmpeg's demuxers, restricted
to those two families), and animated GIF and WebP through Pillow. Frames are streamed one at a time, never the whole
clip: `read_frames` decodes, turns (a phone's display rotation), picks frames by presentation time at a steady rate
(a variable-rate clip comes out steady) and scales each to at most `max_side` before the next is decoded. Anything
that cannot be read raises `ClipError` with one line.

Writing (`write_mp4`, `write_gif`, `write_webp`) makes the painted clip at the rate it was read at. `write_mp4`
keeps the source's audio (re-encoded to AAC) for the duration painted.

    info = probe("in.mp4")                       # ClipInfo(frames, fps, width, height, rotation, has_audio, duration)
    for im in read_frames("in.mp4", max_frames=48, max_side=256, fps=12): ...
    data = write_mp4(painted, fps=12, audio_from="in.mp4", seconds=len(painted) / 12)
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from .errors import ClipError
from .images import MAX_PIXELS, MIN_SIDE, fit, to_rgb

Source = bytes | bytearray | memoryview | str | Path

MAX_BYTES = 200_000_000  # a clip file accepted, read or uploaded (checked before anything is decoded)
MAX_FPS = 60.0  # a steady rate read is at most this (a 240 fps slow-motion clip is read at 60)
DEFAULT_GIF_MS = 100  # a GIF/WebP frame without a duration (or under 20 ms) shows this long, as browsers do
MIN_FPS = 0.5  # a source slower than this is a slideshow: its steady rate would not make a playable clip
# A GIF/WebP is read as at most its first this many frames: counting them walks the file's blocks, and a tiny file
# can declare a great many frames.
MAX_FRAMES_SCANNED = 10_000
ACCEPTED = "MP4, MOV, WebM, animated GIF or animated WebP"

# FFmpeg demuxer for each container family we open; nothing else reaches FFmpeg's other (many) demuxers.
_DEMUXERS = {"mp4": "mov", "webm": "matroska"}
_TURNS = {
    90: Image.Transpose.ROTATE_90,
    -90: Image.Transpose.ROTATE_270,
    270: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    -180: Image.Transpose.ROTATE_180,
}


@dataclass(frozen=True)
class ClipInfo:
    frames: int  # frames in the file (from the container's count, or duration x fps where it has none)
    fps: float  # the source's average frame rate
    width: int  # as shown: after the rotation
    height: int
    rotation: int  # degrees counterclockwise the stored frames are turned by to be shown (0, 90, 180, -90)
    has_audio: bool
    duration: float  # seconds


# ------------------------------------------------------------------ sniffing


def _head(source: Source, n: int = 64) -> bytes:
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as f:
                return f.read(n)
        except OSError as e:
            raise ClipError(f"cannot read {source}: {e.strerror or e}") from None
    return bytes(memoryview(source)[:n])


def _kind(head: bytes) -> str | None:
    """The container family from the first bytes: mp4 (MP4/MOV, ISO base media), webm (Matroska/WebM), gif, webp."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def is_clip(source: Source) -> bool:
    """Whether a file (path or bytes) is a clip: an MP4/MOV/WebM container, or a GIF/WebP with more than one frame.
    Decided from the file's bytes, not its name. A file that cannot be read is not a clip (the image path reports
    it)."""
    try:
        kind = _kind(_head(source))
    except ClipError:
        return False
    if kind in ("mp4", "webm"):
        return True
    if kind in ("gif", "webp"):
        try:
            with _open_bytes(source) as f:
                return len(_scan_picture(f.read(MAX_BYTES), kind, 2)[2]) > 1
        except Exception:  # a damaged picture is the image loader's to report
            return False
    return False


# ------------------------------------------------------------------ reading


def _label(source: Source, name: str | None) -> str:
    return name or (Path(source).name if isinstance(source, (str, Path)) else "the clip")


def _open_bytes(source: Source):
    return open(source, "rb") if isinstance(source, (str, Path)) else io.BytesIO(bytes(source))


def _checked(source: Source, max_bytes: int, label: str) -> str:
    """The container family, after the size check (before anything is decoded)."""
    if isinstance(source, (str, Path)):
        try:
            size = os.stat(source).st_size
        except OSError as e:
            raise ClipError(f"cannot read {source}: {e.strerror or e}") from None
    else:
        size = len(memoryview(source))
    if size == 0:
        raise ClipError(f"{label} is empty (0 bytes)")
    if size > max_bytes:
        raise ClipError(f"{label} is {size / 1e6:.0f} MB; the limit for a clip is {max_bytes / 1e6:.0f} MB")
    kind = _kind(_head(source))
    if kind is None:
        raise ClipError(f"{label} is not a clip this app opens ({ACCEPTED})")
    return kind


def _one_line(e: BaseException) -> str:
    """An FFmpeg or Pillow error as a short phrase: no errno, no stand-in file name, no object address."""
    import re

    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r":\s*'[^']*'$", "", text)  # FFmpeg's errors end with the file's name (or '<none>')
    text = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", text)
    return text or type(e).__name__


def _target_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        return max(1, round(w * s)), max(1, round(h * s))
    return w, h


def _too_big(label: str, w: int, h: int, max_pixels: int) -> ClipError:
    return ClipError(f"{label} is {w}x{h} pixels a frame; the limit is {max_pixels / 1e6:g} megapixels")


def _slideshow(label: str) -> ClipError:
    return ClipError(f"{label} shows fewer than one frame every two seconds: it is a slideshow, not a clip")


def probe(
    source: Source, max_bytes: int = MAX_BYTES, name: str | None = None, *, max_pixels: int = MAX_PIXELS
) -> ClipInfo:
    """What a clip holds, from its headers (the frame size is checked against `max_pixels` before any frame is
    decoded), the video track's packets and its first frame; ClipError (one line) if it cannot be read, is too
    large, or is a slideshow (under MIN_FPS)."""
    label = _label(source, name)
    kind = _checked(source, max_bytes, label)
    if kind in ("gif", "webp"):
        return _probe_picture(source, kind, label, max_pixels)
    import av

    try:
        with av.open(_open_bytes(source), format=_DEMUXERS[kind], metadata_errors="ignore") as c:
            if not c.streams.video:
                raise ClipError(f"{label} has no video track")
            v = c.streams.video[0]
            w, h = v.codec_context.width, v.codec_context.height
            if w * h > max_pixels:
                raise _too_big(label, w, h, max_pixels)
            rate = v.average_rate or v.guessed_rate or v.base_rate
            fps = float(rate) if rate else 0.0
            # The video track's own duration: the container's (Matroska has no other) also counts the audio, which
            # may run on after the last frame. Without one, the video packets' times give it (demuxed, not decoded;
            # the file's size is already bounded). The first frame is decoded on the way, for its rotation.
            first, duration = None, 0.0
            if v.duration is not None and v.time_base is not None:
                duration = float(v.duration * v.time_base)
            start = end = None
            for packet in c.demux(v):
                if first is None:
                    first = next(iter(packet.decode()), None)
                if duration or packet.pts is None or packet.time_base is None:
                    if first is not None and duration:
                        break
                    continue
                t = float(packet.pts * packet.time_base)
                start = t if start is None else min(start, t)
                end = max(end or t, t + float((packet.duration or 0) * packet.time_base))
            if not duration and start is not None:
                duration = end - start
            if first is None:  # a decoder that holds frames back gives them when flushed
                first = next(iter(v.decode(None)), None)
            if first is None:
                raise ClipError(f"{label} has no frames")
            if first.width * first.height > max_pixels:
                raise _too_big(label, first.width, first.height, max_pixels)
            rotation = int(first.rotation or 0)
            w, h = first.width, first.height
            frames = v.frames or (round(duration * fps) if fps else 0) or 1
            if not fps:
                fps = frames / duration if duration else 1.0
            has_audio = bool(c.streams.audio)
    except ClipError:
        raise
    except Exception as e:  # FFmpeg's errors (InvalidDataError, ...), and whatever a damaged file leads to
        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
    if fps < MIN_FPS:
        raise _slideshow(label)
    if rotation % 180:
        w, h = h, w
    return ClipInfo(frames, fps, w, h, rotation, has_audio, duration)


def _u24(b: bytes, i: int) -> int:
    return int.from_bytes(b[i : i + 3], "little")


def _scan_picture(data: bytes, kind: str, limit: int) -> tuple[int, int, list[int]]:
    """(width, height, durations in ms of at most `limit` frames) of a GIF or WebP, read from its blocks and
    chunks without decoding a frame. The size covers every frame counted (a GIF frame may reach past its logical
    screen, and the canvas grows to hold it). A frame without a duration has 0."""
    if kind == "gif":
        if len(data) < 13:
            raise ValueError("truncated GIF header")
        w, h, flags = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"), data[10]
        i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        durations: list[int] = []
        delay = 0

        def skip_blocks(i: int) -> int:
            while i < len(data) and data[i]:
                i += data[i] + 1
            return i + 1

        while i < len(data) and len(durations) < limit:
            b = data[i]
            if b == 0x21 and i + 1 < len(data):  # an extension: a graphic control one holds the next frame's delay
                if data[i + 1] == 0xF9 and i + 6 < len(data) and data[i + 2] >= 4:
                    delay = int.from_bytes(data[i + 4 : i + 6], "little") * 10
                i = skip_blocks(i + 2)
            elif b == 0x2C and i + 10 <= len(data):  # a frame: its place, size, colour table and compressed data
                x, y, fw, fh = (int.from_bytes(data[i + k : i + k + 2], "little") for k in (1, 3, 5, 7))
                w, h = max(w, x + fw), max(h, y + fh)
                f = data[i + 9]
                i = skip_blocks(i + 10 + (3 << ((f & 7) + 1) if f & 0x80 else 0) + 1)
                if i > len(data):
                    break  # cut off inside the frame: not counted
                durations.append(delay)
                delay = 0
            else:
                break  # the trailer, or a damaged block: the frames so far are the clip
        return w, h, durations
    # WebP: RIFF chunks; an animation has a VP8X header (the canvas) and one ANMF chunk per frame.
    w = h = 0
    durations = []
    i = 12
    while i + 8 <= len(data) and len(durations) < limit:
        tag, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        body = data[i + 8 : i + 8 + size]
        if tag == b"VP8X" and len(body) >= 10:
            w, h = _u24(body, 4) + 1, _u24(body, 7) + 1
        elif tag == b"ANMF" and len(body) >= 16:
            w, h = max(w, 2 * _u24(body, 0) + _u24(body, 6) + 1), max(h, 2 * _u24(body, 3) + _u24(body, 9) + 1)
            durations.append(_u24(body, 12))
        elif tag in (b"VP8 ", b"VP8L") and not durations:
            durations.append(0)  # a still picture: one frame (its size comes from Pillow's header read)
        i += 8 + size + (size & 1)
    return w, h, durations


def _probe_picture(source: Source, kind: str, label: str, max_pixels: int = MAX_PIXELS) -> ClipInfo:
    try:
        with _open_bytes(source) as f:
            data = f.read()
        w, h, durations = _scan_picture(data, kind, MAX_FRAMES_SCANNED)
        if w * h > max_pixels:  # before Pillow sees the file: its WebP reader allocates the canvas on opening
            raise _too_big(label, w, h, max_pixels)
        with Image.open(io.BytesIO(data), formats=[kind.upper()]) as im:  # the headers are checked, nothing decoded
            w, h = max(w, im.width), max(h, im.height)
    except ClipError:
        raise
    except Exception as e:
        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
    if w * h > max_pixels:
        raise _too_big(label, w, h, max_pixels)
    if not durations:
        raise ClipError(f"{label} has no frames")
    n = len(durations)
    duration = sum(ms if ms >= 20 else DEFAULT_GIF_MS for ms in durations) / 1000
    fps = n / duration
    if fps < MIN_FPS:
        raise _slideshow(label)
    return ClipInfo(n, fps, w, h, 0, False, duration)


def _frame_ms(im: Image.Image) -> int:
    ms = int(im.info.get("duration") or 0)
    return ms if ms >= 20 else DEFAULT_GIF_MS


def read_frames(
    source: Source,
    max_frames: int,
    max_side: int | None,
    fps: float | None = None,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> Iterator[Image.Image]:
    """The clip's frames as RGB pictures, streamed: at a steady `fps` (default: the source's average rate, at most
    MAX_FPS; never faster than the source, whose frames would only repeat), turned as the clip is shown, scaled down
    to at most `max_side` on the longest side, at most `max_frames` of them.

    The frame shown at time t = k / fps is the one whose presentation time is the last at or before t (a variable
    rate clip's frames are picked by time, not by count). ClipError (one line) if the file cannot be read, has no
    video or no frames; a file damaged part way through ends the clip at the last frame decoded."""
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    label = _label(source, name)
    kind = _checked(source, max_bytes, label)
    if kind in ("gif", "webp"):
        native = _probe_picture(source, kind, label, max_pixels).fps  # checks the size and rate, decodes nothing
        timed = _picture_frames(source, kind, label, max_pixels)
    else:
        timed, native = _video_frames(source, kind, label, max_pixels)
    rate = min(fps or native or MAX_FPS, native or MAX_FPS, MAX_FPS)
    if fps is not None and fps <= 0:
        raise ValueError("fps must be positive")
    yield from _steady(timed, rate, max_frames, max_side, label)


def _steady(timed, rate: float, max_frames: int, max_side: int | None, label: str) -> Iterator[Image.Image]:
    """Resample (time, end, picture-maker) items to `rate`: for each k, the last frame starting at or before k/rate,
    while that time is before the frame's end (its next frame's start). Each frame is converted only if picked."""
    k, start, count = 0, None, 0
    for t, end, make in timed:
        if start is None:
            start = t  # the clip's clock starts at its first frame
        t, end = t - start, end - start
        picked = None
        while count < max_frames and (k / rate) < end - 1e-9:
            if k / rate + 1e-9 >= t or count == 0:
                picked = picked or _scaled(_made(make, label), max_side)
                yield picked
                count += 1
            k += 1
        if count >= max_frames:
            return
    if count == 0:
        raise ClipError(f"{label} has no frames")


def _made(make, label: str) -> Image.Image:
    try:
        return make()
    except ClipError:
        raise
    except Exception as e:  # a frame the decoder gave but that cannot be converted
        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None


def _scaled(im: Image.Image, max_side: int | None) -> Image.Image:
    if max_side and max(im.size) > max_side:
        im = fit(im, max_side)
    if min(im.size) < MIN_SIDE:
        raise ClipError(f"the clip's frames are {im.width}x{im.height} pixels; each side must be at least {MIN_SIDE}")
    return im


def _video_frames(source: Source, kind: str, label: str, max_pixels: int):
    """(generator of (start, end, make-picture) per decoded frame, the stream's average fps)."""
    import av

    try:
        container = av.open(_open_bytes(source), format=_DEMUXERS[kind], metadata_errors="ignore")
    except Exception as e:
        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
    try:
        if not container.streams.video:
            raise ClipError(f"{label} has no video track")
        v = container.streams.video[0]
        v.thread_type = "AUTO"
        w, h = v.codec_context.width, v.codec_context.height
        if w * h > max_pixels:
            raise _too_big(label, w, h, max_pixels)
        rate = v.average_rate or v.guessed_rate or v.base_rate
        native = float(rate) if rate else None
        if native is not None and not (0 < native < 1000):
            native = None
        if native is not None and native < MIN_FPS:
            raise _slideshow(label)
    except BaseException:
        container.close()
        raise

    def gen():
        step = 1 / (native or 30.0)
        pending = None  # (time, frame): a frame's end is the next frame's start
        try:
            it = container.decode(v)
            while True:
                try:
                    f = next(it)
                except StopIteration:
                    break
                except Exception as e:
                    if pending is None:
                        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
                    break  # damaged part way: the clip ends at the last good frame
                if f.width * f.height > max_pixels:  # a stream may change its size part way (H.264 can)
                    raise _too_big(label, f.width, f.height, max_pixels)
                t = f.time if f.time is not None else (pending[0] + step if pending else 0.0)
                if pending is not None:
                    if t <= pending[0]:  # a frame out of order or at the same time: keep the earlier one
                        continue
                    yield pending[0], t, _maker(pending[1])
                pending = (t, f)
            if pending is not None:
                # The last frame lasts a frame period; three quarters of one here, so that an average rate that
                # rounds up a little (3200/267 for 12 fps) does not add a repeat of it after the clip's end.
                yield pending[0], pending[0] + 0.75 * step, _maker(pending[1])
        finally:
            container.close()

    return gen(), native


def _maker(frame):
    def make() -> Image.Image:
        im = frame.to_image()  # RGB, from whatever pixel format the codec gives
        turn = _TURNS.get(int(frame.rotation or 0))
        return im.transpose(turn) if turn is not None else im

    return make


def _picture_frames(source: Source, kind: str, label: str, max_pixels: int):
    try:
        im = Image.open(_open_bytes(source), formats=[kind.upper()])
    except Exception as e:
        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
    if im.width * im.height > max_pixels:
        im.close()
        raise _too_big(label, im.width, im.height, max_pixels)

    def gen():
        t = 0.0
        try:
            for i, frame in enumerate(ImageSequence.Iterator(im)):
                if i >= MAX_FRAMES_SCANNED:
                    return  # as probe counts them
                if frame.width * frame.height > max_pixels:  # a GIF's canvas grows to hold a frame reaching past it
                    raise _too_big(label, frame.width, frame.height, max_pixels)
                try:
                    picture = to_rgb(frame.convert("RGBA"))  # the frame as shown (disposal applied by Pillow)
                except Exception as e:
                    if i == 0:
                        raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
                    return
                ms = _frame_ms(frame)  # after decoding: WebP sets it then
                yield t, t + ms / 1000, (lambda p=picture: p)
                t += ms / 1000
        except ClipError:
            raise
        except Exception as e:
            if t == 0.0:
                raise ClipError(f"{label} is damaged or not a clip: {_one_line(e)}") from None
        finally:
            im.close()

    return gen()


# ------------------------------------------------------------------ writing


def write_mp4(
    frames: Sequence[Image.Image],
    fps: float,
    audio_from: Source | None = None,
    seconds: float | None = None,
    *,
    crf: int = 20,
) -> bytes:
    """An H.264 MP4 (yuv420p, even sides: plays in browsers and on phones) of `frames` at `fps`. With `audio_from`
    (the source clip), its first audio track is kept, re-encoded to AAC, for the first `seconds` (default: the
    frames' duration): a painted clip cut short keeps the sound of the part painted. A source without audio, or
    whose audio cannot be decoded, gives a silent clip."""
    from .animation import write_h264

    frames = list(frames)
    seconds = len(frames) / fps if seconds is None else seconds
    audio = _audio_source(audio_from) if audio_from is not None else None
    if audio is None:
        return write_h264(frames, fps, crf=crf)
    rate = audio[1]
    return write_h264(
        frames, fps, crf=crf, sound=(rate, lambda out, stream: _copy_audio(audio_from, stream, out, rate, seconds))
    )


def _audio_source(source: Source) -> tuple[int, int] | None:
    """(stream index, sample rate) of the source's first audio track, or None."""
    import av

    try:
        kind = _kind(_head(source))
        if kind not in _DEMUXERS:
            return None
        with av.open(_open_bytes(source), format=_DEMUXERS[kind], metadata_errors="ignore") as c:
            if not c.streams.audio:
                return None
            a = c.streams.audio[0]
            return a.index, int(a.sample_rate or a.codec_context.sample_rate or 44100)
    except Exception:
        return None


def _copy_audio(source: Source, stream, out, sample_rate: int, seconds: float) -> None:
    """Decode the source's first audio track and encode its first `seconds` into `stream` (AAC, stereo)."""
    import av

    limit = int(round(seconds * sample_rate))
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sample_rate, frame_size=1024)
    written = 0
    kind = _kind(_head(source))

    def encode(frame):
        nonlocal written
        if frame is None:
            for p in stream.encode(None):
                out.mux(p)
            return
        n = min(frame.samples, limit - written)
        if n <= 0:
            return
        if n < frame.samples:
            arr = frame.to_ndarray()[:, :n]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format="fltp", layout="stereo")
            frame.sample_rate = sample_rate
        frame.pts = written
        frame.time_base = Fraction(1, sample_rate)
        written += frame.samples
        for p in stream.encode(frame):
            out.mux(p)

    try:
        with av.open(_open_bytes(source), format=_DEMUXERS[kind], metadata_errors="ignore") as c:
            for frame in c.decode(c.streams.audio[0]):
                frame.pts = None
                for r in resampler.resample(frame):
                    encode(r)
                if written >= limit:
                    break
            for r in resampler.resample(None):
                encode(r)
    except Exception:
        pass  # damaged audio: the clip keeps what was encoded so far
    encode(None)


def write_gif(frames: Sequence[Image.Image], fps: float) -> bytes:
    """A looping GIF of `frames` at `fps` (one shared palette: no palette flicker between frames)."""
    from .animation import _encode_gif

    frames = [f.convert("RGB") for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    size = frames[0].size
    frames = [f if f.size == size else f.resize(size) for f in frames]
    # GIF delays are in hundredths of a second: the nearest, at least 2 (browsers show shorter delays as 10).
    ms = max(20, int(round(100 / fps)) * 10)
    return _encode_gif(frames, [ms] * len(frames))


def write_webp(frames: Sequence[Image.Image], fps: float, quality: int = 80) -> bytes:
    """A looping animated WebP (lossy, `quality`) of `frames` at `fps`."""
    import imageio.v3 as iio

    frames = [f.convert("RGB") for f in frames]
    if not frames:
        raise ValueError("no frames to write")
    size = frames[0].size
    pixels = np.stack([np.asarray(f if f.size == size else f.resize(size)) for f in frames])
    ms = max(1, round(1000 / fps))
    durations = [ms] * len(frames) if len(frames) > 1 else ms
    return iio.imwrite("<bytes>", pixels, extension=".webp", duration=durations, loop=0, quality=quality)


WRITERS = {"mp4": "video/mp4", "gif": "image/gif", "webp": "image/webp"}


def write_clip(kind: str, frames: Sequence[Image.Image], fps: float, audio_from: Source | None = None) -> bytes:
    """`kind`: mp4, gif or webp (an extension, with or without the dot). Only MP4 carries the audio."""
    kind = kind.lower().lstrip(".")
    if kind == "mp4":
        return write_mp4(frames, fps, audio_from)
    if kind == "gif":
        return write_gif(frames, fps)
    if kind == "webp":
        return write_webp(frames, fps)
    raise ValueError(f"cannot write a .{kind} clip; choose .mp4, .gif or .webp")


def steady_rate(info: ClipInfo, fps: float | None = None) -> float:
    """The rate read_frames reads a clip at (and the painted clip is written at): `fps` if given, never faster
    than the source, at most MAX_FPS."""
    return min(fps or info.fps or MAX_FPS, info.fps or MAX_FPS, MAX_FPS)


def frame_count(max_frames: int, info: ClipInfo, fps: float | None = None) -> int:
    """How many frames read_frames will give (at most): the cap, or the clip's duration at the rate read."""
    rate = steady_rate(info, fps)
    n = math.floor(info.duration * rate + 1e-6) if info.duration else info.frames
    return max(1, min(max_frames, n or info.frames))
