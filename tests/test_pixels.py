"""Whatever a browser sends that becomes pixels: only the listed formats are opened, a mask is bounded by its
photo before it is decoded, and every decoded picture keeps its pixels and nothing else."""

import base64
import io
import pickle
import struct
import zlib

import pytest
from PIL import Image, ImageFile, PngImagePlugin

from nst_core import ImageLoadError, load_image
from nst_core.images import FORMATS, MASK_SIDE, decode_mask, encode_mask, load_mask


def encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_saying(w: int, h: int) -> bytes:
    """A small PNG whose header says w x h (8-bit RGBA) and whose pixel data is a few bytes: decoding it would
    allocate w x h x 4 bytes before finding out."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def decoded(monkeypatch):
    """The sizes of the pictures whose pixels Pillow decodes from here on."""
    sizes = []
    real = ImageFile.ImageFile.load

    def load(self):
        sizes.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return sizes


def metadata_png(size=(64, 48), text_mb: int = 20) -> bytes:
    """A small PNG with `text_mb` MB of compressed text (zTXt, 1 MB a chunk: Pillow reads each up to 1 MB)."""
    info = PngImagePlugin.PngInfo()
    for i in range(text_mb):
        info.add_text(f"note{i}", "A" * 1_000_000, zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta/>" * 1000)
    return encode(Image.new("RGB", size, "teal"), "PNG", pnginfo=info, icc_profile=b"\0" * 3000)


@pytest.fixture
def text_read(monkeypatch):
    """The sizes of the PNG text chunks Pillow reads (and decompresses) from here on."""
    sizes = []
    real = PngImagePlugin.PngStream.check_text_memory
    monkeypatch.setattr(PngImagePlugin.PngStream, "check_text_memory", lambda self, n: sizes.append(n) or real(self, n))
    return sizes


def test_a_small_png_with_megabytes_of_text_decodes_to_its_pixels_alone(monkeypatch, text_read):
    data = metadata_png()
    assert len(data) < 60_000  # 20 MB of text in a few tens of kB
    with monkeypatch.context() as m:
        m.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 64 * 2**20)  # Pillow's own default
        with Image.open(io.BytesIO(data)) as raw:
            raw.load()
            assert sum(len(v) for v in raw.info.values() if isinstance(v, (str, bytes))) > 20_000_000  # kept
    text_read.clear()
    im = load_image(data)
    assert im.info == {} and im.size == (64, 48)
    assert len(pickle.dumps(im)) < 64 * 48 * 3 + 1000  # the pixels and a few bytes: what session state keeps
    assert text_read == []  # and the text was never decompressed


def test_no_text_is_decompressed_from_anything_a_browser_sends(text_read):
    from ui.masks import canvas_masks

    mask = Image.new("LA", (480, 320), (0, 0))
    info = PngImagePlugin.PngInfo()
    for i in range(60):
        info.add_text(f"note{i}", "C" * 1_000_000, zip=True)
    data = encode(mask, "PNG", pnginfo=info)
    assert len(data) < 100_000  # 60 MB of text
    canvas_masks(
        "data:image/png;base64," + base64.b64encode(encode(mask.convert("RGBA"), "PNG", pnginfo=info)).decode(),
        (480, 320),
        1,
    )
    mask.paste((255, 255), (240, 0, 480, 320))
    data = encode(mask, "PNG", pnginfo=info)
    assert load_mask(data, (480, 320)).getpixel((400, 10)) == 255
    assert load_image(data).size == (480, 320)
    small = encode(mask.resize((240, 160)), "PNG", pnginfo=info)
    assert decode_mask("png:" + base64.b64encode(small).decode()).size == (240, 160)
    assert text_read == []


def test_the_text_a_png_may_carry_is_a_few_megabytes_and_a_runs_own_settings_fit():
    import numpy as np

    from nst_core.images import png_bytes, png_metadata

    assert PngImagePlugin.MAX_TEXT_MEMORY <= 4 * 2**20  # Pillow's default is 64 MB, in a 60 kB file
    noise = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (512, 512), dtype=np.uint8)) for i in range(3)]
    masks = [encode_mask(m) for m in noise]  # the largest masks a run keeps (noise does not compress)
    meta = png_metadata(png_bytes(Image.new("RGB", (64, 64)), {"masks": masks}))
    assert meta["masks"] == masks


def test_exif_icc_xmp_and_comments_go_after_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010E] = "x" * 30_000  # ImageDescription
    data = encode(Image.new("RGB", (64, 32), "red"), "JPEG", exif=exif, icc_profile=b"\0" * 5000, comment=b"c" * 5000)
    with Image.open(io.BytesIO(data)) as raw:
        assert {"exif", "icc_profile", "comment"} <= set(raw.info)
    im = load_image(data)
    assert im.size == (32, 64) and im.info == {}  # turned, then bare
    assert im.getexif() == {}
    assert load_image(data, max_side=32).info == {}  # the scaled-down path too


def test_masks_keep_their_pixels_and_nothing_else():
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (32, 0, 64, 48))
    info = PngImagePlugin.PngInfo()
    for i in range(5):
        info.add_text(f"note{i}", "B" * 1_000_000, zip=True)
    m = load_mask(encode(mask, "PNG", pnginfo=info), (64, 48))
    assert m.info == {} and len(pickle.dumps(m)) < 64 * 48 + 1000
    text = "png:" + base64.b64encode(encode(mask, "PNG", pnginfo=info)).decode()
    d = decode_mask(text)
    assert d.info == {} and d.getpixel((60, 10)) == 255
    assert decode_mask(encode_mask(mask)).info == {}


@pytest.mark.parametrize("fmt", ["PCX", "ICO", "TGA", "PPM", "SGI", "DDS"])
def test_only_the_formats_the_app_lists_are_opened(fmt):
    data = encode(Image.new("RGB", (32, 32), "blue"), fmt)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == fmt  # Pillow would open it
    with pytest.raises(
        ImageLoadError, match=r"^x\.bin is not an image this app opens \(JPEG, PNG, WebP, GIF, BMP or TIFF\)$"
    ):
        load_image(data, name="x.bin")
    with pytest.raises(ImageLoadError, match="not an image this app opens"):
        load_mask(data, (32, 32), name="x.bin")
    with pytest.raises(ValueError, match="cannot be read"):
        decode_mask("png:" + base64.b64encode(data).decode())


@pytest.mark.parametrize("fmt", FORMATS + ("MPO",))
def test_every_listed_format_opens_and_a_phones_mpo_counts_as_a_jpeg(fmt):
    im = Image.new("RGB", (32, 24), (200, 30, 30))
    kw = {"save_all": True, "append_images": [im]} if fmt == "MPO" else {}
    assert load_image(encode(im, fmt, **kw)).size == (32, 24)


def test_the_upload_widgets_types_are_the_formats_opened():
    from ui.common import UPLOAD_TYPES

    extensions = Image.registered_extensions()
    assert {extensions[f".{t}"] for t in UPLOAD_TYPES} == set(FORMATS)


def test_a_mask_far_larger_than_its_photo_is_refused_from_its_header(decoded):
    data = png_saying(12000, 7000)  # a 40-byte promise of 336 MB
    assert len(data) < 200
    with pytest.raises(ImageLoadError, match=r"^m\.png is 12000x7000 pixels, too large for a mask of a 120x70 photo"):
        load_mask(data, (120, 70), name="m.png")
    assert decoded == []  # nothing was decoded


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_mask_is_decoded_at_about_its_photos_size(fmt, decoded):
    big = Image.new("L", (800, 400), 0)
    big.paste(255, (400, 0, 800, 400))
    m = load_mask(encode(big, fmt), (100, 50))
    assert m.size == (100, 50) and m.getpixel((90, 25)) > 200 and m.getpixel((10, 25)) < 50
    if fmt == "JPEG":
        assert set(decoded) == {(100, 50)}  # a JPEG decodes at 1/8 scale to begin with


def test_a_mask_drawn_on_the_photos_original_is_accepted():
    # A phone's 4032x3024 photo is kept at 768x576 on a CPU server; its mask, drawn on the original, still fits.
    big = Image.new("L", (4032, 3024), 0)
    big.paste(255, (2016, 0, 4032, 3024))
    assert load_mask(encode(big, "PNG"), (768, 576)).size in ((768, 576), (767, 576), (768, 575))


def test_a_settings_mask_is_at_most_its_working_size_before_decoding(decoded):
    with pytest.raises(ValueError, match=f"at most {MASK_SIDE} px"):
        decode_mask("png:" + base64.b64encode(png_saying(12000, 7000)).decode())
    assert decoded == []


def swapped_profile() -> bytes:
    """An RGB profile whose red and green primaries are sRGB's green and red: pure red in it is sRGB's green."""
    from PIL import ImageCms

    b = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    tags = {}
    for i in range(struct.unpack(">I", b[128:132])[0]):
        tags[bytes(b[132 + 12 * i : 136 + 12 * i])] = 136 + 12 * i  # where the tag's offset and size are
    r, g = tags[b"rXYZ"], tags[b"gXYZ"]
    b[r : r + 8], b[g : g + 8] = b[g : g + 8], b[r : r + 8]
    return bytes(b).replace("sRGB".encode("utf-16-be"), "sWAP".encode("utf-16-be"))


def test_colours_are_converted_to_srgb_from_the_pictures_profile_then_the_profile_goes():
    data = encode(Image.new("RGB", (32, 32), (255, 0, 0)), "PNG", icc_profile=swapped_profile())
    im = load_image(data)
    assert im.getpixel((5, 5)) == (0, 255, 0) and im.info == {}
    jpeg = encode(Image.new("RGB", (32, 32), (255, 0, 0)), "JPEG", icc_profile=swapped_profile(), quality=100)
    r, g, b = load_image(jpeg).getpixel((5, 5))
    assert g > 200 and r < 60


def test_an_srgb_profile_leaves_the_pixels_as_they_are():
    from tests.conftest import SAMPLES

    path = SAMPLES / "content" / "chelsea.png"
    with Image.open(path) as raw:
        assert "sRGB" in raw.info["icc_profile"].decode("latin-1")
        plain = raw.convert("RGB")
    assert load_image(path).tobytes() == plain.tobytes()


@pytest.fixture
def made(monkeypatch):
    """The sizes of the pictures made from decoded ones from here on (converted, copied, turned, composited,
    cropped, scaled): each is another buffer beside the decoded one."""
    sizes = []
    real_new, real_image_new = Image.Image._new, Image.new

    def _new(self, im):
        out = real_new(self, im)
        sizes.append(out.size)
        return out

    def new(mode, size, *a, **k):
        sizes.append(tuple(size))
        return real_image_new(mode, size, *a, **k)

    monkeypatch.setattr(Image.Image, "_new", _new)
    monkeypatch.setattr(Image, "new", new)
    return sizes


def turned(im: Image.Image, fmt: str = "PNG", orientation: int = 6, **kw) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif, **kw)


def test_a_large_photo_is_scaled_down_before_any_copy_of_it_is_made(made, decoded):
    # Stored 3200x2400 RGBA, shown turned a quarter (EXIF 6): 2400x3200, kept at 768 px.
    im = Image.new("RGBA", (3200, 2400), (0, 0, 0, 0))  # transparent: white once composited
    im.paste((200, 30, 30, 255), (0, 0, 1600, 2400))  # the stored left half, the top once turned
    data = turned(im)
    made.clear()
    out = load_image(data, max_side=768)
    assert set(decoded) == {(3200, 2400)} and out.size == (576, 768) and out.mode == "RGB"
    assert max(w * h for w, h in made) <= 3200 * 2400 // 4  # bands of rows and small pictures; nothing whole
    assert out.getpixel((288, 100)) == (200, 30, 30) and out.getpixel((288, 700)) == (255, 255, 255)
    jpeg = turned(Image.new("RGB", (3200, 2400), "navy"), "JPEG")
    decoded.clear()
    assert load_image(jpeg, max_side=768).size == (576, 768) and decoded[0] == (800, 600)


def test_a_mask_is_scaled_down_before_it_is_converted_or_turned(made, decoded):
    # Drawn on a phone's original (4032x3024, stored sideways with EXIF 6) for a 576x768 photo; RGBA strokes.
    mask = Image.new("RGBA", (4032, 3024), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 2016, 3024))  # the stored left half: the top once turned
    made.clear()
    m = load_mask(turned(mask), (576, 768))
    assert set(decoded) == {(4032, 3024)} and m.size == (576, 768) and m.mode == "L"
    assert max(w * h for w, h in made) <= 4032 * 3024 // 4
    assert m.getpixel((288, 100)) == 255 and m.getpixel((288, 700)) == 0
    grey = Image.new("L", (1600, 1200), 0)
    grey.paste(255, (0, 0, 800, 1200))
    decoded.clear()
    m = load_mask(turned(grey, "JPEG"), (150, 200))  # a JPEG decodes at 1/8 of its stored sides, turned after
    assert decoded[0] == (200, 150) and m.size == (150, 200)
    assert m.getpixel((75, 20)) > 200 and m.getpixel((75, 180)) < 50


def test_a_mask_is_bounded_by_the_servers_pixel_limit_too(decoded):
    with pytest.raises(ImageLoadError, match=r"^m\.png is 2000x1000 pixels, too large for a mask"):
        load_mask(png_saying(2000, 1000), (1000, 500), name="m.png", max_pixels=1_000_000)
    assert decoded == []


def test_a_damaged_mask_says_so_and_running_out_of_memory_is_not_hidden(monkeypatch):
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (32, 0, 64, 48))
    with pytest.raises(ImageLoadError, match=r"^m\.png is damaged or truncated"):
        load_mask(encode(mask, "PNG")[:-30], (64, 48), name="m.png")

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    with pytest.raises(MemoryError):
        load_mask(encode(mask, "PNG"), (64, 48))


def test_shrinking_in_bands_gives_the_picture_shrunk_whole():
    import numpy as np

    from nst_core.images import to_rgb

    y, x = np.mgrid[0:1037, 0:1501]
    rgba = np.stack([x % 256, y % 256, (x + y) % 256, (x * 255 // 1500)], -1).astype(np.uint8)  # alpha 0 -> 255
    im = Image.fromarray(rgba, "RGBA")
    out = load_image(encode(im, "PNG"), max_side=300)
    whole = to_rgb(im).reduce(4)  # composited over white, then 4x4 blocks averaged (at least 300x208 is left)
    whole.thumbnail((300, 300), Image.Resampling.LANCZOS)
    assert out.size == whole.size == (300, 207) and out.tobytes() == whole.tobytes()
    direct = to_rgb(im)
    direct.thumbnail((300, 300), Image.Resampling.LANCZOS)  # a sawtooth: the hardest case for a box average
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(direct, dtype=int)).mean() < 4


def test_a_mask_already_grey_is_checked_without_a_copy(made):
    from nst_core.images import as_mask, check_mask

    mask = Image.new("L", (480, 320), 0)
    mask.paste(255, (240, 0, 480, 320))
    made.clear()
    assert as_mask(mask) is mask and check_mask(mask, (960, 640)) is mask
    assert made == []


@pytest.mark.parametrize("max_side", [None, 32])
def test_a_float_tiff_opens(max_side):
    import numpy as np

    im = Image.fromarray(np.full((60, 80), 200.0, dtype=np.float32))
    assert load_image(encode(im, "TIFF"), max_side=max_side).getpixel((5, 5)) == (200, 200, 200)
