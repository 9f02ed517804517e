"""Image decoding: every kind of odd or bad input."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import ImageLoadError, load_image
from nst_core.images import (
    fit,
    luminance,
    png_bytes,
    png_metadata,
    rgb_to_yiq,
    to_pil,
    to_tensor,
    with_colors_of,
    yiq_to_rgb,
)


def encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    out = load_image(encode(im, "JPEG", exif=exif))
    assert out.size == (20, 40)


def test_alpha_is_composited_over_white():
    im = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(encode(im, "PNG"))
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency():
    im = Image.new("P", (20, 20), 1)
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    data = encode(im, "GIF", transparency=0)
    assert load_image(data).getpixel((3, 3)) == (10, 200, 30)


@pytest.mark.parametrize("mode", ["CMYK", "L", "1", "LA"])
def test_other_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    im = Image.new(mode, (24, 24))
    assert load_image(encode(im, fmt)).mode == "RGB"


def test_16_bit_grayscale_keeps_its_range():
    a = np.full((20, 20), 65535, dtype=np.uint16)
    a[:10] = 32768
    im = Image.fromarray(a)
    assert im.mode.startswith("I")
    out = load_image(encode(im, "PNG"))
    assert out.getpixel((0, 15)) == (255, 255, 255)
    assert 126 <= out.getpixel((0, 0))[0] <= 129


def test_animated_image_gives_its_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ("blue", "yellow")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).getpixel((5, 5)) == (0, 0, 255)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_more_formats(fmt):
    assert load_image(encode(Image.new("RGB", (30, 20), "green"), fmt)).size == (30, 20)


def test_decompression_bomb_is_stopped_before_decoding():
    data = encode(Image.new("1", (8000, 6000)), "PNG")  # 48 megapixels in a few kB
    assert len(data) < 200_000
    with pytest.raises(ImageLoadError, match="8000x6000 pixels .* limit is 40 megapixels"):
        load_image(data)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n" * 10, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image|damaged"),
    ],
)
def test_bad_bytes(data, match):
    with pytest.raises(ImageLoadError, match=match):
        load_image(data, name="upload.png")


def test_truncated_image():
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")


def test_too_small_and_too_thin():
    with pytest.raises(ImageLoadError, match="8x8 pixels; each side must be at least 16"):
        load_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    with pytest.raises(ImageLoadError, match="short side"):
        fit(Image.new("RGB", (2000, 20)), 512)


def test_every_error_is_one_line():
    for data in (b"", b"junk" * 10, encode(Image.new("RGB", (8, 8)), "PNG")):
        with pytest.raises(ImageLoadError) as e:
            load_image(data)
        assert "\n" not in str(e.value)


def test_fit_scales_up_and_down():
    assert fit(Image.new("RGB", (400, 200)), 100).size == (100, 50)
    assert fit(Image.new("RGB", (40, 20)), 100).size == (100, 50)


def test_tensor_round_trip():
    im = Image.effect_noise((33, 17), 60).convert("RGB")
    t = to_tensor(im)
    assert t.shape == (1, 3, 17, 33) and t.min() >= 0 and t.max() <= 1 and t.is_contiguous()
    assert np.array_equal(np.asarray(to_pil(t)), np.asarray(im))


def test_yiq_round_trip_and_colour_transfer():
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5, rtol=1e-5)
    grey = luminance(x)
    assert torch.allclose(grey[:, 0], grey[:, 1])
    out = with_colors_of(grey, x)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=1e-5)  # its own luminance + its own colours


def test_png_carries_settings():
    data = png_bytes(Image.new("RGB", (20, 20)), {"settings": {"style_weight": 10.0}})
    assert png_metadata(data) == {"settings": {"style_weight": 10.0}}


def test_uploads_are_kept_at_a_working_size():
    big = encode(Image.effect_noise((3000, 2000), 60).convert("RGB"), "PNG")
    assert load_image(big, max_side=1536).size == (1536, 1024)
    jpeg = encode(Image.new("RGB", (4000, 3000), "teal"), "JPEG")  # decoded at a reduced scale, then fitted
    out = load_image(jpeg, max_side=1536)
    assert out.size == (1536, 1152) and out.getpixel((10, 10))[1] > 100
    assert load_image(big).size == (3000, 2000)  # without max_side: as it is
    assert load_image(big, max_side=4000).size == (3000, 2000)


def test_a_16_bit_upload_is_converted_without_float64_copies():
    """A 16-bit PNG of a few kB can decode to millions of pixels: converted from its own bytes, what Python allocates
    on the way (tracemalloc counts it, the same on any CPU) stays under 6 bytes a pixel: the raw 16-bit bytes, twice
    while Pillow joins them, and their high bytes. One float64 copy alone would be 8 (the old conversion made five)."""
    import tracemalloc

    side = 2000
    data = encode(Image.fromarray(np.full((side, side), 40000, dtype=np.uint16)), "PNG")
    assert len(data) < 100_000
    tracemalloc.start()
    try:
        out = load_image(data, max_side=1536)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.size == (1536, 1536) and out.getpixel((5, 5)) == (156, 156, 156)  # 40000 / 257 = 155.6
    assert peak < 6 * side * side, peak
