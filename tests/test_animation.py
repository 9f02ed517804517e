"""The GIF of a run: loops forever, shared palette, held last frame, byte budget."""

import io

import imageio.v3 as iio
import pytest
from PIL import Image, ImageDraw

from nst_core.animation import make_gif


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
