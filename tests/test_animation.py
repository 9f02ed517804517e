"""The GIF of a run: loops forever, shared palette, held last frame, byte budget."""

import io

import imageio.v3 as iio
import pytest
from PIL import Image, ImageDraw

from nst_core.animation import make_gif
from tests.helpers import mp4_boxes


def frames(n, size=(64, 48)):
    out = []
    for i in range(n):
        im = Image.new("RGB", size, (i * 255 // max(1, n - 1), 80, 160))
        ImageDraw.Draw(im).rectangle([i % size[0], 5, i % size[0] + 10, 20], fill="white")
        out.append(im)
    return out


def test_gif_loops_and_has_every_frame():
    data = make_gif(frames(6), frame_ms=100, final_ms=1500)
    assert data[:6] == b"GIF89a"
    meta = iio.immeta(data, index=None, extension=".gif")
    assert meta.get("loop") == 0  # 0 = loop forever
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 6 and im.info["loop"] == 0
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
    assert durations == [100] * 5 + [1500]
    arr = iio.imread(data, index=None, extension=".gif")
    assert arr.shape[:3] == (6, 48, 64)
    assert arr[-1][0, 0, 0] > arr[0][0, 0, 0]  # frames stay in order


def test_frames_of_different_sizes_are_resized_to_the_last():
    data = make_gif(frames(3, (32, 24)) + frames(2, (64, 48)))
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 48) and im.n_frames == 5


def test_byte_budget_is_met_by_dropping_frames_then_scaling():
    many = [Image.effect_noise((128, 128), 40 + i).convert("RGB") for i in range(40)]
    full = make_gif(many)
    small = make_gif(many, max_bytes=len(full) // 3)
    assert len(small) <= len(full) // 3
    with Image.open(io.BytesIO(small)) as im:
        assert 2 <= im.n_frames < 40
    with pytest.raises(ValueError):
        make_gif([])


def test_mp4_is_h264_yuv420p_with_the_final_picture_held():
    import av

    from nst_core.animation import make_mp4

    data = make_mp4(frames(5, (63, 47)), fps=10, final_s=1.0)
    boxes = mp4_boxes(data)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart: plays before it has all come
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.codec_context.width, s.codec_context.height) == (62, 46)  # even sides for yuv420p
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == 5 + 9  # the last frame held for 1 s at 10 fps
    assert float(s.average_rate) == 10
    assert abs(decoded[-1].astype(int) - decoded[5].astype(int)).mean() < 3  # held: the same picture


def test_webp_loops_in_full_colour_and_ends_on_a_long_frame():
    from nst_core.animation import make_webp

    data = make_webp(frames(4), frame_ms=100, final_ms=1500)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "WEBP" and im.n_frames == 4 and im.info["loop"] == 0 and im.size == (64, 48)
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            im.load()  # Pillow reads a WebP frame's duration when it decodes it
            durations.append(im.info["duration"])
    assert durations == [100, 100, 100, 1500]


def test_an_intro_card_opens_every_format():
    from nst_core.animation import intro_card, make_animation

    photo, painting = Image.new("RGB", (80, 60), (250, 0, 0)), Image.new("RGB", (60, 80), (0, 0, 250))
    card = intro_card(photo, painting, (64, 48))
    assert card.size == (64, 48)
    left, right = card.getpixel((16, 18)), card.getpixel((48, 18))
    assert left[0] > 200 > left[2] and right[2] > 200 > right[0]  # photo on the left, painting on the right
    for kind, n in (("gif", 7), ("webp", 7)):
        with Image.open(io.BytesIO(make_animation(kind, frames(6), card))) as im:
            im.load()
            assert im.n_frames == n and im.info["duration"] == 1500, kind  # the card, shown first
    with pytest.raises(ValueError, match="choose .gif, .mp4 or .webp"):
        make_animation("avi", frames(2))


def test_a_single_frame_still_makes_every_format():
    from nst_core.animation import make_animation

    for kind in ("gif", "webp", "mp4"):
        assert len(make_animation(kind, frames(1))) > 100, kind
