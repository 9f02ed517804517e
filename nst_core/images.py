"""Safe image decoding, resizing, tensor <-> PIL conversion and colour handling.

Tensors are RGB floats in [0, 1], shape (1, 3, H, W), everywhere in the core.
"""

from __future__ import annotations

import io
import json
import math
import struct
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import ImageLoadError

if TYPE_CHECKING:  # torch is imported only by the functions that need it: the app's server never does
    import torch
    from torch import Tensor

MAX_PIXELS = 40_000_000  # decoded pixels accepted (stops decompression bombs before decoding)
MIN_SIDE = 16  # smaller images are refused: VGG19's five poolings leave nothing of them
# The formats a picture is opened in: those the app's upload widget lists (ui.common.UPLOAD_TYPES). Pillow knows
# dozens more (PCX, EPS, PSD, ICO, ...), each a decoder that a stranger's bytes would otherwise reach. A phone's MPO
# (a JPEG with a second frame appended) opens as a JPEG.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
ACCEPTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"
# The text a PNG may carry, all its tEXt, zTXt and iTXt chunks decompressed: Pillow's default, 64 MB, fits in a 60 kB
# file and is decompressed when the file is opened, before anything else could be checked. The settings chunk the app
# writes (png_bytes; masks as base64 PNGs of at most MASK_SIDE) is at most a few hundred kB.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 2**20


def load_image(
    source: bytes | str | Path, max_pixels: int = MAX_PIXELS, name: str | None = None, max_side: int | None = None
) -> Image.Image:
    """Decode an image from bytes or a path into an RGB PIL image, or raise ImageLoadError (one line).

    EXIF orientation is applied; palette, alpha (composited over white), CMYK, grayscale and 16-bit
    images become 8-bit RGB; an animated image gives its first frame. `max_side`: a larger picture is scaled
    down to it right after decoding, before any copy of it at full size (a server keeps uploads at a working size;
    JPEGs decode at a reduced scale to begin with).
    """
    data, label = _read(source, name, "the image")
    if not data:
        raise ImageLoadError(f"{label} is empty (0 bytes)")
    im, icc = _decode(
        data,
        label,
        max_pixels,
        "{label} is {w}x{h} pixels ({mp:.0f} megapixels); the limit is {limit_mp:.0f} megapixels",
        to_rgb,
        (max_side, max_side) if max_side else None,
        Image.Resampling.LANCZOS,
    )
    rgb = bare(in_srgb(im, icc))
    if min(rgb.size) < MIN_SIDE:
        raise ImageLoadError(f"{label} is {rgb.width}x{rgb.height} pixels; each side must be at least {MIN_SIDE}")
    return rgb


# What an EXIF orientation asks for, as ImageOps.exif_transpose reads it (1 and anything else: nothing).
_TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _decode(
    data: bytes,
    label: str,
    limit: int,
    too_large: str,
    convert: Callable[[Image.Image], Image.Image],
    box: tuple[int, int] | None,
    resample: Image.Resampling,
    draft: str = "RGB",
) -> tuple[Image.Image, bytes | None]:
    """(the picture in `data` decoded, as convert() makes it, turned by its EXIF orientation; its ICC profile), or
    ImageLoadError in one line. More than `limit` pixels is refused from the header (`too_large`, formatted). With
    `box` (w, h, as shown), it is shrunk to fit in the box right after decoding, a band of rows at a time, and only
    then converted further and turned: one buffer at full size, not one per step (a decode, a converted copy, a
    turned copy, a scaled copy)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _open(without_text(data), label)  # reads the header only
            w, h = im.size
            if w * h > limit:
                raise ImageLoadError(too_large.format(label=label, w=w, h=h, mp=w * h / 1e6, limit_mp=limit / 1e6))
            im.seek(0)  # first frame of an animation
            orientation = im.getexif().get(0x0112)
            if box and orientation in (5, 6, 7, 8):
                box = box[::-1]  # the sides as stored, before the quarter turn
            if box:  # the size the picture ends at: it fits in the box, its shape kept
                scale = min(1.0, box[0] / w, box[1] / h)
                need = (math.ceil(w * scale), math.ceil(h * scale))
            if box and im.format in ("JPEG", "MPO"):
                im.draft(draft, need)  # decode at 1/2, 1/4 or 1/8 scale, still at least that size
            im.load()
            icc = im.info.get("icc_profile")
            if im.mode in ("I", "F"):
                im = _grey8(im)  # 32-bit grey to 8 bits at one scale for the whole picture, not a band's
            factor = int(min(im.width / need[0], im.height / need[1])) if box else 1
            im = _shrunk(im, factor, convert)
            if box and (im.width > box[0] or im.height > box[1]):
                im.thumbnail(box, resample)
            if orientation in _TURNS:
                im = im.transpose(_TURNS[orientation])
    except ImageLoadError:
        raise
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{label} is too large to decode safely (limit {limit / 1e6:.0f} megapixels)") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{label} is not an image this app opens ({ACCEPTED})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "MAX_TEXT" in text:
            raise ImageLoadError(
                f"{label} carries more than {PngImagePlugin.MAX_TEXT_MEMORY // 2**20} MB of text (metadata): "
                "save it without"
            ) from None
        raise ImageLoadError(f"{label} is damaged or truncated: {text}") from None
    return im, icc


def _shrunk(im: Image.Image, factor: int, convert: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """convert(im), reduced `factor` times (an integer: a box average), a band of rows at a time: never a second
    copy of the whole at full size (Pillow's own reduce of an RGBA picture makes a premultiplied one). Converting
    before averaging is what converting the average would be: alpha over white or black is linear in it."""
    if factor <= 1:
        return convert(im)
    w, h = im.size
    rows = factor * max(1, 2**20 // (w * factor))  # about a megapixel a band, whole blocks of `factor` rows
    parts = [convert(im.crop((0, top, w, min(h, top + rows)))).reduce(factor) for top in range(0, h, rows)]
    out = Image.new(parts[0].mode, (parts[0].width, sum(p.height for p in parts)))
    top = 0
    for part in parts:
        out.paste(part, (0, top))
        top += part.height
    return out


_PNG = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def without_text(data: bytes) -> bytes:
    """A PNG's bytes without its text chunks (tEXt, zTXt, iTXt), which Pillow decompresses as it opens the file
    and keeps (a 60 kB file can carry 60 MB): a walk over the chunks' headers, nothing decompressed. Anything not a
    PNG, or whose chunks do not add up, is returned as it is, for the decoder to judge."""
    if not data.startswith(_PNG):
        return data
    view, kept, pos, dropped = memoryview(data), [], len(_PNG), False
    kept.append(view[:pos])
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        kind = data[pos + 4 : pos + 8]
        if kind in _TEXT_CHUNKS:
            dropped = True
        else:
            kept.append(view[pos:end])
        pos = end
        if kind == b"IEND":
            break
    if not dropped:
        return data
    kept.append(view[pos:])
    return b"".join(kept)


def _open(data: bytes, label: str) -> Image.Image:
    """The picture in `data`, header read, pixels not yet decoded: only in FORMATS, else one line naming them."""
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageLoadError(f"{label} is not an image this app opens ({ACCEPTED})") from None


@cache
def _srgb():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def in_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """An RGB picture whose embedded profile is another RGB space (a phone's Display P3, Adobe RGB) converted to
    sRGB, the space browsers show and the network was trained on. Left as it is: no profile, an sRGB one (no
    rounding for nothing), a CMYK or grey one (to_rgb has converted those pixels already), one that cannot be read."""
    if not icc or im.mode != "RGB":
        return im
    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without Little CMS
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if src.profile.xcolor_space.strip() != "RGB" or "srgb" in ImageCms.getProfileDescription(src).lower():
            return im
        return ImageCms.profileToProfile(im, src, _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im


def bare(im: Image.Image) -> Image.Image:
    """`im` with its pixels and nothing else, once its orientation and colours are applied: Pillow keeps a file's
    text chunks, EXIF, ICC profile, XMP and comments in `info` (a 20 kB PNG can carry 20 MB of compressed text),
    and an image pickles its `info` with it into session state, every task, its digest and the worker. (load_image
    applies an ICC profile first: in_srgb.)"""
    im.info = {}
    return im


def _grey8(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey -> 8-bit grey, in place in one float32 array (no float64 copies: a small
    16-bit upload can decode to tens of millions of pixels, and each copy of them would be 8 bytes a pixel)."""
    if im.mode.startswith("I;16"):
        # The high byte of each pixel (within one level of v / 257): one slice of the raw bytes, no arrays at all.
        raw = im.tobytes()
        return Image.frombytes("L", im.size, raw[0::2] if im.mode == "I;16B" else raw[1::2])
    a = np.array(im, dtype=np.float32)  # a copy of its own (a float picture's array would be read-only)
    a *= 255.0 / (65535.0 if a.max() > 255 else 255.0)
    a += 0.5
    np.clip(a, 0, 255, out=a)
    return Image.fromarray(a.astype(np.uint8), "L")


def _read(source: bytes | str | Path, name: str | None, what: str) -> tuple[bytes, str]:
    """The bytes of an upload or a file, and what to call it in an error (its name, or `what`)."""
    label = name or (Path(source).name if isinstance(source, (str, Path)) else what)
    if not isinstance(source, (str, Path)):
        return bytes(source), label
    try:
        return Path(source).read_bytes(), label
    except OSError as e:
        raise ImageLoadError(f"cannot read {source}: {e.strerror or e}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is composited over white."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _grey8(im)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return im if im.mode == "RGB" else im.convert("RGB")


def fit(im: Image.Image, longest: int) -> Image.Image:
    """Resize so the longest side is `longest` (up or down), keeping the aspect ratio."""
    w, h = im.size
    scale = longest / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if min(nw, nh) < MIN_SIDE:
        raise ImageLoadError(
            f"at {longest} px the image would be {nw}x{nh}; its short side must be at least {MIN_SIDE} px "
            "(use a larger size or a less elongated image)"
        )
    if (nw, nh) == (w, h):
        return im
    return im.resize((nw, nh), Image.Resampling.LANCZOS)


def to_tensor(im: Image.Image, device: torch.device | str = "cpu") -> Tensor:
    import torch

    a = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
    return (a.permute(2, 0, 1).float() / 255.0).unsqueeze(0).contiguous().to(device)


def to_pil(x: Tensor) -> Image.Image:
    import torch

    a = x.detach()[0].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, "RGB")


@cache
def _yiq_matrices():
    """YIQ, the colour space Gatys et al. use in "Preserving Color in Neural Artistic Style Transfer" (2016)."""
    import torch

    rgb2yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    return rgb2yiq, torch.linalg.inv(rgb2yiq)


def rgb_to_yiq(x: Tensor) -> Tensor:
    return _yiq_matrices()[0].to(x).matmul(x.flatten(2)).view_as(x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    return _yiq_matrices()[1].to(x).matmul(x.flatten(2)).view_as(x)


def luminance(x: Tensor, like: Tensor | None = None) -> Tensor:
    """Grey RGB image of x's luminance; with `like`, its mean and spread matched to like's luminance."""
    y = rgb_to_yiq(x)[:, :1]
    if like is not None:
        ly = rgb_to_yiq(like)[:, :1]
        y = (y - y.mean()) / (y.std() + 1e-6) * ly.std() + ly.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def with_colors_of(gray: Tensor, colors: Tensor) -> Tensor:
    """Luminance of `gray` with the chrominance (I, Q) of `colors` (same size)."""
    yiq = rgb_to_yiq(colors)
    yiq = yiq.clone()
    yiq[:, :1] = rgb_to_yiq(gray)[:, :1]
    return yiq_to_rgb(yiq).clamp(0, 1)


def png_bytes(im: Image.Image, metadata: dict | None = None) -> bytes:
    """PNG with the run's settings (and anything else) as JSON in a text chunk named 'nst'."""
    info = PngImagePlugin.PngInfo()
    if metadata:
        info.add_text("nst", json.dumps(metadata, sort_keys=True))
    buf = io.BytesIO()
    im.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def png_metadata(data: bytes) -> dict:
    """Read back what png_bytes embedded."""
    with Image.open(io.BytesIO(data)) as im:
        return json.loads(im.text.get("nst", "{}"))


# ------------------------------------------------------------------ masks (spatial control)

MASK_SIDE = 512  # a mask is kept (in the settings, the PNG's metadata) at most this long a side
MASK_PREFIX = "png:"


def as_mask(im: Image.Image) -> Image.Image:
    """Any picture as a mask, 8-bit grey: white, the painting goes here; black, the photo stays; grey, in between.
    Transparent pixels count as black (a brush stroke saved on a transparent layer is its alpha)."""
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        grey, alpha = im.convert("L"), im.getchannel("A")
        return Image.composite(grey, Image.new("L", im.size, 0), alpha)
    if im.mode.startswith("I") or im.mode == "F":
        return _grey8(im)
    return im if im.mode == "L" else im.convert("L")  # a mask already: no copy (the page checks each on every rerun)


def encode_mask(mask: Image.Image) -> str:
    """A mask as the text a Settings keeps: 'png:' and the base64 of an 8-bit grey PNG of at most MASK_SIDE."""
    import base64

    m = as_mask(mask)
    if max(m.size) > MASK_SIDE:
        m = m.copy()
        m.thumbnail((MASK_SIDE, MASK_SIDE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    m.save(buf, format="PNG", optimize=True)
    return MASK_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_mask(text: str) -> Image.Image:
    """The 8-bit grey mask a Settings keeps (encode_mask); ValueError if it is not one (a PNG of at most
    MASK_SIDE a side: its header is read before its pixels)."""
    import base64
    import binascii

    if not text.startswith(MASK_PREFIX):
        raise ValueError("a mask is 'png:' and a base64 PNG")
    try:
        data = without_text(base64.b64decode(text[len(MASK_PREFIX) :], validate=True))
        im = Image.open(io.BytesIO(data), formats=["PNG"])
    except (binascii.Error, OSError, ValueError) as e:
        raise ValueError(f"a mask that cannot be read ({type(e).__name__})") from None
    if max(im.size) > MASK_SIDE:  # (the file is bytes in memory: nothing to close)
        raise ValueError(f"a mask of {im.width}x{im.height}; a mask is at most {MASK_SIDE} px a side")
    try:
        im.load()
        return bare(as_mask(im))
    except (OSError, ValueError) as e:
        raise ValueError(f"a mask that cannot be read ({type(e).__name__})") from None


def check_mask(mask: Image.Image, photo_size: tuple[int, int], label: str = "the mask") -> Image.Image:
    """`mask` if it can guide a run on a photo of `photo_size` (any size, the photo's shape), else ImageLoadError."""
    (w, h), (pw, ph) = mask.size, photo_size
    if abs(w / h - pw / ph) > 0.02 * (pw / ph):
        raise ImageLoadError(
            f"{label} is {w}x{h}, the photo {pw}x{ph}: a mask must have the photo's shape (any size, the same aspect)"
        )
    if as_mask(mask).getextrema()[1] < 8:
        raise ImageLoadError(f"{label} is empty: nothing in it is white, so the painting would go nowhere")
    return mask


# A mask may be drawn on the photo's original, which the upload keeps at a working size (768 px on a CPU server):
# up to 8 times its sides (a 6000x4500 original) is accepted; more is refused before a pixel is decoded.
MASK_PIXELS_PER_PHOTO_PIXEL = 64


def load_mask(
    source: bytes | str | Path, photo_size: tuple[int, int], name: str | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """A mask file (any image; see as_mask) for a photo of `photo_size`, or ImageLoadError in one line. It is
    reduced to about the photo's size right after decoding (a JPEG decodes at a reduced scale to begin with), before
    any conversion or turn, and keeps its pixels and nothing else."""
    data, label = _read(source, name, "the mask")
    pw, ph = photo_size
    limit = min(max_pixels, MASK_PIXELS_PER_PHOTO_PIXEL * pw * ph)
    mask, _ = _decode(
        data,
        label,
        limit,
        f"{{label}} is {{w}}x{{h}} pixels, too large for a mask of a {pw}x{ph} photo "
        "(at most {limit_mp:.1f} megapixels): save it smaller",
        as_mask,
        (pw, ph),
        Image.Resampling.BOX,
        draft="L",
    )
    return check_mask(bare(mask), photo_size, label)


def mask_tensor(mask: Image.Image, size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
    """A mask as a (1, 1, h, w) float tensor in [0, 1] at `size` (w, h): area-averaged down, bilinear up."""
    import torch

    m = as_mask(mask).resize(size, Image.Resampling.BOX if mask.size[0] >= size[0] else Image.Resampling.BILINEAR)
    a = torch.from_numpy(np.asarray(m, dtype=np.uint8).copy()).float().div(255.0)
    return a[None, None].to(device)
