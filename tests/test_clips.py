"""Reading and writing clips (nst_core.clips): rotation, steady rate, caps, GIF/WebP as clips, audio, bad files."""

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from nst_core import clips
from nst_core.errors import ClipError
from tests.conftest import SAMPLES

SAMPLE = SAMPLES / "clips" / "chelsea_pan.mp4"


def mp4(values, times_ms=None, size=(96, 64), rotation=0, audio_s=None, marker=True) -> bytes:
    """An H.264 MP4 whose frame i is grey level values[i] (red square at the stored top-left corner), shown at
    times_ms[i] (default: 12 fps); `rotation` is the display rotation; `audio_s`: a tone that long."""
    buf = io.BytesIO()
    w, h = size
    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=12)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=22050) if audio_s else None
        times = times_ms or [round(i * 1000 / 12) for i in range(len(values))]
        for v, t in zip(values, times, strict=True):
            img = np.full((h, w, 3), v, np.uint8)
            if marker:
                img[:16, :16] = (255, 0, 0)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if a is not None:
            t = np.arange(int(22050 * audio_s)) / 22050
            af = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], "flt", "mono")
            af.sample_rate, af.pts = 22050, 0
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode():
                out.mux(p)
    return buf.getvalue()


def grey(im: Image.Image) -> float:
    """The level of a frame away from its red marker."""
    return float(np.asarray(im)[-4:, -4:].mean())


def test_sample_clip_probe_and_read():
    info = clips.probe(SAMPLE)
    assert (info.width, info.height, info.fps, info.has_audio, info.rotation) == (256, 192, 12.0, True, 0)
    assert info.frames == 48 and abs(info.duration - 4.0) < 0.1
    frames = list(clips.read_frames(SAMPLE, max_frames=5, max_side=64))
    assert len(frames) == 5 and all(f.size == (64, 48) and f.mode == "RGB" for f in frames)
    assert clips.frame_count(100, info) == 48 and clips.frame_count(10, info, fps=6) == 10


def test_rotation_applied():
    data = mp4([128] * 3, rotation=90)
    info = clips.probe(data)
    assert info.rotation == 90 and (info.width, info.height) == (64, 96)
    frames = list(clips.read_frames(data, 10, None))
    assert len(frames) == 3 and frames[0].size == (64, 96)
    a = np.asarray(frames[0]).astype(int)
    # Turned a quarter counterclockwise (the display matrix's angle): the stored top-left corner is at the bottom left.
    assert a[-4, 4, 0] > 200 and a[-4, 4, 1] < 60
    assert a[4, 4, 0] < 200 and abs(a[4, 4, 0] - a[4, 4, 1]) < 30


def test_variable_rate_picked_by_time():
    # Frames at irregular times (ms); read at 5 fps, the frame shown at t = k/5 is the last one starting at or before t.
    times = [0, 40, 90, 250, 260, 270, 420, 610, 640, 790, 800, 990, 1100, 1210, 1390, 1600, 1650, 1810, 1900, 1950]
    values = [10 + 12 * i for i in range(len(times))]
    data = mp4(values, times, marker=False)
    got = [grey(f) for f in clips.read_frames(data, 10, None, fps=5)]
    want = [values[max(i for i, t in enumerate(times) if t <= k * 200)] for k in range(10)]
    assert len(got) == 10
    assert np.allclose(got, want, atol=4), (got, want)
    # Never faster than the source: asking for 1000 fps gives the source's average rate, not repeated frames.
    assert len(list(clips.read_frames(data, 1000, None, fps=1000))) <= len(times) + 1


def test_caps_respected():
    frames = list(clips.read_frames(SAMPLE, max_frames=7, max_side=100, fps=6))
    assert len(frames) == 7 and max(frames[0].size) == 100
    small = list(clips.read_frames(mp4([50] * 4, size=(48, 32)), 10, 256))
    assert small[0].size == (48, 32)  # capped, never enlarged


def gif_bytes(n: int) -> bytes:
    frames = [Image.new("RGB", (40, 30), (30 * i, 100, 200 - 30 * i)) for i in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def test_gif_and_webp_are_clips():
    assert clips.is_clip(gif_bytes(4)) and not clips.is_clip(gif_bytes(1))
    assert clips.is_clip(SAMPLE) and not clips.is_clip(SAMPLES / "content" / "chelsea.png")
    info = clips.probe(gif_bytes(4))
    assert info.frames == 4 and abs(info.fps - 10) < 0.01 and not info.has_audio
    frames = list(clips.read_frames(gif_bytes(4), 10, None))
    assert [f.getpixel((5, 5))[0] for f in frames] == pytest.approx([0, 30, 60, 90], abs=8)
    webp = clips.write_webp(frames, 10)
    assert clips.is_clip(webp) and len(list(clips.read_frames(webp, 10, None))) == 4


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "empty"),
        (b"this is not a video at all, just some text" * 10, "not a clip this app opens"),
        (b"\x00\x00\x00\x20ftypisom" + bytes(200), "damaged"),
        ("truncated", "damaged"),
        ("truncated-gif", "damaged"),
    ],
)
def test_bad_clips_one_line(data, says):
    if data == "truncated":
        data = SAMPLE.read_bytes()[:3000]
    elif data == "truncated-gif":
        data = gif_bytes(3)[:20]
    with pytest.raises(ClipError) as e:
        list(clips.read_frames(data, 10, 64))
    assert says in str(e.value) and "\n" not in str(e.value) and "0x" not in str(e.value)
    with pytest.raises(ClipError):
        clips.probe(data)


def test_size_checked_before_decoding():
    with pytest.raises(ClipError, match="limit for a clip"):
        list(clips.read_frames(SAMPLE.read_bytes(), 10, 64, max_bytes=1000))


def test_write_mp4_keeps_the_painted_part_of_the_audio():
    frames = list(clips.read_frames(SAMPLE, 6, 64))
    data = clips.write_mp4(frames, 12, audio_from=SAMPLE)
    info = clips.probe(data)
    assert info.frames == 6 and info.fps == 12 and info.has_audio and (info.width, info.height) == (64, 48)
    with av.open(io.BytesIO(data)) as c:
        audio = c.streams.audio[0]
        assert c.streams.video[0].codec_context.name == "h264" and audio.codec_context.name == "aac"
        seconds = sum(f.samples for f in c.decode(audio)) / audio.sample_rate
    assert abs(seconds - 0.5) < 0.1  # 6 frames at 12 fps, not the source's 4 s
    silent = clips.probe(clips.write_mp4(frames, 12))
    assert not silent.has_audio
    odd = clips.write_mp4([f.resize((63, 47)) for f in frames], 12)
    assert (clips.probe(odd).width, clips.probe(odd).height) == (62, 46)


def test_write_gif_at_the_clip_rate():
    frames = [Image.new("RGB", (32, 24), (i * 40, 0, 0)) for i in range(5)]
    data = clips.write_gif(frames, 10)
    info = clips.probe(data)
    assert info.frames == 5 and abs(info.fps - 10) < 0.01
