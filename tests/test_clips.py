"""Reading and writing clips (nst_core.clips): rotation, steady rate, caps, GIF/WebP as clips, audio, bad files."""

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import GifImagePlugin, Image, ImageFile, WebPImagePlugin

from nst_core import animation, clips
from nst_core.errors import ClipError
from tests.conftest import SAMPLES
from tests.helpers import mp4_boxes

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
    boxes = mp4_boxes(data)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")  # faststart: plays before it has all come
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


def test_write_mp4_without_a_usable_temporary_folder_writes_in_memory(tmp_path, monkeypatch):
    """Faststart needs a temporary file; where none can be written the clip is still made, in memory, without it."""
    import tempfile

    frames = [Image.new("RGB", (32, 24), (i * 40, 0, 0)) for i in range(5)]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # (no such folder)
    data = clips.write_mp4(frames, 12)
    assert "moov" in mp4_boxes(data) and clips.probe(data).frames == 5


def test_write_gif_at_the_clip_rate():
    frames = [Image.new("RGB", (32, 24), (i * 40, 0, 0)) for i in range(5)]
    data = clips.write_gif(frames, 10)
    info = clips.probe(data)
    assert info.frames == 5 and abs(info.fps - 10) < 0.01


def tall_gif(side: int, n: int, ms: int = 100) -> bytes:
    """A GIF with a side x side canvas and n one-pixel frames: tiny on disk, huge once decoded."""
    frames = [Image.new("L", (1, 1), 255 * (i % 2)) for i in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0)
    data = bytearray(buf.getvalue())
    data[6:10] = side.to_bytes(2, "little") * 2  # the logical screen: every frame is drawn onto it
    return bytes(data)


def test_picture_canvas_checked_before_any_frame_is_decoded(monkeypatch):
    data = tall_gif(4000, 50)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self, *a: decoded.append(1))
    with pytest.raises(ClipError, match="megapixels"):
        clips.probe(data, max_pixels=1_000_000)
    with pytest.raises(ClipError, match="megapixels"):
        list(clips.read_frames(data, 10, 64, max_pixels=1_000_000))
    assert decoded == []


def test_picture_probe_counts_frames_without_decoding_them(monkeypatch):
    data = tall_gif(64, 300, ms=50)
    for cls in (ImageFile.ImageFile, WebPImagePlugin.WebPImageFile):
        monkeypatch.setattr(cls, "load", lambda self, *a: pytest.fail("probe decoded a frame"))
    info = clips.probe(data)
    assert info.frames == 300 and info.duration == pytest.approx(15.0) and info.fps == pytest.approx(20.0)
    webp = clips.write_webp([Image.new("RGB", (32, 24), (i * 20, 0, 0)) for i in range(7)], 5)
    info = clips.probe(webp)
    assert info.frames == 7 and info.duration == pytest.approx(1.4) and (info.width, info.height) == (32, 24)


def test_picture_frames_scanned_are_bounded(monkeypatch):
    monkeypatch.setattr(clips, "MAX_FRAMES_SCANNED", 20)
    data = tall_gif(32, 60)
    assert clips.probe(data).frames == 20
    assert len(list(clips.read_frames(data, 1000, None))) == 20


def test_picture_read_stops_at_the_frames_asked(monkeypatch):
    data = tall_gif(32, 200)
    seen = []
    real = GifImagePlugin.GifImageFile.seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek", lambda self, i: seen.append(i) or real(self, i))
    assert len(list(clips.read_frames(data, 5, None))) == 5
    assert max(seen) == 4  # the fifth frame is the last one decoded


def test_video_frame_size_checked_before_decoding(monkeypatch):
    data = mp4([100] * 3)
    with pytest.raises(ClipError, match="megapixels") as e:
        clips.probe(data, max_pixels=96 * 64 - 1)
    assert "\n" not in str(e.value)
    assert clips.probe(data, max_pixels=96 * 64).width == 96


def resizing_h264() -> bytes:
    """A Matroska file whose H.264 stream starts at 32x32 and switches to 160x128 on its fourth frame."""
    raw = b""
    for w, h in ((32, 32), (160, 128)):
        buf = io.BytesIO()
        with av.open(buf, "w", format="h264") as out:
            vs = out.add_stream("libx264", rate=12)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            for i in range(3):
                f = av.VideoFrame.from_ndarray(np.full((h, w, 3), 90, np.uint8), format="rgb24")
                f.pts = i
                for p in vs.encode(f):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        raw += buf.getvalue()
    out_buf = io.BytesIO()
    with av.open(io.BytesIO(raw), format="h264") as src, av.open(out_buf, "w", format="matroska") as out:
        s = out.add_stream_from_template(src.streams.video[0])
        for i, p in enumerate(src.demux(src.streams.video[0])):
            if p.size == 0:
                continue
            p.stream = s
            p.pts = p.dts = i
            p.time_base = Fraction(1, 12)
            out.mux(p)
    return out_buf.getvalue()


def test_video_resolution_change_mid_stream_is_checked():
    data = resizing_h264()
    assert clips.probe(data).width == 32
    sizes = {f.size for f in clips.read_frames(data, 10, None)}
    assert (160, 128) in sizes  # the file really changes size
    with pytest.raises(ClipError, match="megapixels") as e:
        list(clips.read_frames(data, 10, None, max_pixels=5000))
    assert "\n" not in str(e.value)


def webm_with_long_audio() -> bytes:
    """1 s of VP9 video at 12 fps and 3 s of Opus audio."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        vs = out.add_stream("libvpx-vp9", rate=12)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("libopus", rate=48000)
        for i in range(12):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            f.pts = i
            for p in vs.encode(f):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        for k in range(3 * 50):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), "flt", "mono")
            af.sample_rate, af.pts = 48000, k * 960
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return buf.getvalue()


def test_webm_duration_is_the_video_tracks():
    data = webm_with_long_audio()
    info = clips.probe(data)
    read = list(clips.read_frames(data, 1000, None))
    assert info.has_audio and info.duration == pytest.approx(1.0, abs=0.05)
    assert info.frames == len(read) == 12 == clips.frame_count(1000, info)


def test_slideshow_refused_and_rate_never_zero():
    with pytest.raises(ClipError, match="slideshow") as e:
        clips.probe(tall_gif(32, 3, ms=5000))
    assert "\n" not in str(e.value)
    with pytest.raises(ClipError, match="slideshow"):
        list(clips.read_frames(tall_gif(32, 3, ms=5000), 10, None))
    assert animation._rate(1e-5) > 0 and animation._rate(12) == 12
    frames = [Image.new("RGB", (32, 32))] * 2
    with av.open(io.BytesIO(clips.write_mp4(frames, 1e-5))) as c:
        assert len(list(c.decode(c.streams.video[0]))) == 2


def test_decoder_errors_become_one_line(monkeypatch):
    def broken(self, *a, **k):
        raise OSError("decoder\nexploded")

    monkeypatch.setattr(av.VideoFrame, "to_image", broken)
    with pytest.raises(ClipError, match="damaged") as e:
        list(clips.read_frames(mp4([100] * 3), 10, None))
    assert "\n" not in str(e.value)
