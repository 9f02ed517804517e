"""Paint where you brush: a mask per painting, drawn over the photo in the browser (streamlit-drawable-canvas,
checked in headless Chromium with Streamlit 1.67) or uploaded as a picture. The method is nst_core's (guided Gram
matrices, Gatys et al. 2017); this module only turns strokes into masks.

Each painting's brush has a colour (red, blue); the "keep the photo" brush paints grey over strokes, as an eraser.
The strokes are translucent, so the canvas is the live overlay of where each painting will go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import struct

import numpy as np
import streamlit as st
from PIL import Image

from nst_core.errors import ImageLoadError
from nst_core.images import as_mask, check_mask, load_mask, without_text
from nst_core.serve import service as _service

from .common import UPLOAD_TYPES, md, sentence, server_config

BRUSHES = {"painting 1": (230, 40, 40), "painting 2": (40, 90, 230), "keep the photo (eraser)": (150, 150, 150)}
ALPHA = 0.55  # of a stroke: the photo shows through
CANVAS_WIDTH = 480


def _squares(c: int) -> np.ndarray:
    """(v - c)^2 for every 8-bit v: a channel's distance to a brush colour is one table look-up per pixel."""
    return (np.arange(256, dtype=np.int32) - c) ** 2


_SQUARES = [[_squares(c) for c in colour] for colour in BRUSHES.values()]
# A pixel's alpha -> its mask value: a stroke at full opacity (ALPHA) is 255, its soft edges less.
_STRENGTH = np.round(255 * np.clip(np.arange(256) / 255.0 / ALPHA, 0, 1)).astype(np.uint8)


def strokes_to_masks(rgba: np.ndarray, paintings: int) -> list[Image.Image]:
    """The canvas's strokes (H, W, 4) as one 8-bit mask per painting: a pixel belongs to the brush whose colour
    it is nearest (the eraser's grey belongs to none), as strong as its stroke's opacity (soft at the edges).
    About 17 bytes a pixel at most: one brush's int32 distances at a time, no float copies of the canvas."""
    best = nearest = None
    for i, squares in enumerate(_SQUARES):
        d = squares[0][rgba[..., 0]]
        d += squares[1][rgba[..., 1]]
        d += squares[2][rgba[..., 2]]
        if best is None:
            best, nearest = d, np.zeros(d.shape, np.uint8)
        else:
            closer = d < best  # ties stay with the earlier brush
            nearest[closer] = i
            np.minimum(best, d, out=best)
            del closer
        del d
    strength = _STRENGTH[rgba[..., 3]]
    return [Image.fromarray(strength * (nearest == i), "L") for i in range(paintings)]


def canvas_size(photo: Image.Image) -> tuple[int, int]:
    """The brush's canvas for `photo`: at most CANVAS_WIDTH wide, the photo's shape."""
    w = min(CANVAS_WIDTH, photo.width)
    return w, max(1, round(w * photo.height / photo.width))


_PNG_URL = "data:image/png;base64,"


def largest_value(size: tuple[int, int]) -> int:
    """The longest data URL a canvas of `size` can send: its 8-bit RGBA PNG stored without compression (a filter
    byte a row, 5 bytes per deflate block, 12 per chunk), in base64."""
    w, h = size
    raw = h * (4 * w + 1)
    return 4 * (raw + raw // 100 + 65536) // 3 + len(_PNG_URL)


def canvas_png(value: str | None, size: tuple[int, int]) -> bytes | None:
    """The PNG the brush sent (the component's data URL), if it is the canvas's own size; else ImageLoadError in
    one line. Only its length and its header are read before that (a few hundred kB of PNG can say 12000x7000
    pixels, and decoding allocates them all). The component draws its PNG at the canvas's size in CSS pixels
    (Fabric's toDataURL with multiplier 1, no retina scaling), whatever the screen's pixel ratio."""
    if value is None:
        return None
    w, h = size
    if not isinstance(value, str) or not value.startswith(_PNG_URL):
        raise ImageLoadError(f"the brush sent something that is not a PNG; the canvas is {w}x{h}")
    try:
        head = base64.b64decode(value[len(_PNG_URL) : len(_PNG_URL) + 32] + "==", validate=False)
    except binascii.Error:  # a start whose base64 characters count to 4k+1
        raise ImageLoadError(f"the brush sent something that is not a PNG; the canvas is {w}x{h}") from None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 24:
        raise ImageLoadError(f"the brush sent something that is not a PNG; the canvas is {w}x{h}")
    sw, sh = struct.unpack(">II", head[16:24])
    if (sw, sh) != (w, h):
        raise ImageLoadError(f"the brush sent a {sw}x{sh} picture; the canvas is {w}x{h}")
    most = largest_value(size)
    if len(value) > most:
        raise ImageLoadError(f"the brush sent {len(value)} bytes; a {w}x{h} canvas is at most {most}")
    try:
        return base64.b64decode(value[len(_PNG_URL) :], validate=True)
    except binascii.Error:
        raise ImageLoadError("the brush sent a PNG that is not valid base64") from None


def canvas_masks(value: str | None, size: tuple[int, int], paintings: int) -> list[Image.Image] | None:
    """The masks the brush's canvas value draws (see canvas_png), or ImageLoadError in one line."""
    data = canvas_png(value, size)
    return None if data is None else png_masks(data, size, paintings)


def png_masks(data: bytes, size: tuple[int, int], paintings: int) -> list[Image.Image]:
    """The masks a canvas PNG (checked by canvas_png) draws, or ImageLoadError in one line."""
    try:
        with Image.open(io.BytesIO(without_text(data)), formats=["PNG"]) as im:
            if im.size != size:  # what the header said, read again by the decoder itself
                raise ImageLoadError(
                    f"the brush sent a {im.width}x{im.height} picture; the canvas is {size[0]}x{size[1]}"
                )
            rgba = np.asarray(im.convert("RGBA"))
    except ImageLoadError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(f"the brush sent a damaged PNG ({type(e).__name__})") from None
    return strokes_to_masks(rgba, paintings)


def _background(photo: Image.Image, size: tuple[int, int], key: str) -> tuple[str, str]:
    """(the canvas's key, its background as a data URL) for `photo`, made once per photo, not on every rerun: a
    new photo (or a new size) is a new canvas, as its strokes were for the old one; the component would otherwise
    re-encode the background as a PNG on every rerun."""
    kept = f"{key}_canvas_photo"
    got = st.session_state.get(kept)
    if got is not None and got[0] is photo and got[1] == size:
        return got[2], got[3]
    digest = hashlib.sha1(repr(photo.size).encode() + photo.tobytes()).hexdigest()[:16]
    buf = io.BytesIO()
    photo.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
    url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    st.session_state[kept] = (photo, size, f"{key}_canvas_{digest}", url)
    return f"{key}_canvas_{digest}", url


def _canvas(photo: Image.Image, paintings: int, key: str) -> list[Image.Image] | None:
    from streamlit_drawable_canvas import st_canvas

    names = list(BRUSHES)[:paintings] + [list(BRUSHES)[-1]]
    c1, c2 = st.columns([3, 2])
    brush = c1.radio(
        "Brush", names, horizontal=True, key=f"{key}_brush", help="Red and blue: where each painting goes."
    )
    width = c2.slider("Brush size", 4, 80, 30, key=f"{key}_size")
    w, h = canvas_size(photo)
    r, g, b = BRUSHES[brush]
    canvas_key, background = _background(photo, (w, h), key)
    try:
        result = st_canvas(
            stroke_width=width,
            stroke_color=f"rgba({r}, {g}, {b}, {ALPHA})",
            background_image=background,
            height=h,
            width=w,
            drawing_mode="freedraw",
            return_image_data=True,
            key=canvas_key,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # The component reads the client's value (its drawing, its background's fit) as it is sent.
        st.error(
            md(f"The brush sent a value this page cannot read ({type(e).__name__}) — the run goes without a mask.")
        )
        return None
    st.caption("Draw with the mouse or a finger; the toolbar's arrows undo and redo, its bin clears everything.")
    # The data URL as the component sent it: CanvasResult's image_data and image_bytes decode it whole, unchecked.
    value = getattr(result, "_image_data_url", None) if result is not None else None
    if value is None:
        return None
    # The component sends its value again with every rerun: its length and header are checked first (canvas_png),
    # then it is decoded once per drawing (or refused once), not on every slider move.
    try:
        data = canvas_png(value, (w, h))
        kept, seen = f"{key}_canvas_decoded", (hashlib.sha1(data).digest(), (w, h), paintings)
        if st.session_state.get(kept, (None,))[0] != seen:
            try:
                st.session_state[kept] = (seen, png_masks(data, (w, h), paintings))
            except ImageLoadError as e:
                st.session_state[kept] = (seen, str(e))
        masks = st.session_state[kept][1]
        if isinstance(masks, str):
            raise ImageLoadError(masks)
    except ImageLoadError as e:
        st.error(md(sentence(f"{e} — the run goes without a mask")))
        return None
    return masks


def _max_pixels() -> int:
    """The server's limit on decoded pixels (from its configuration while no runner runs: a page on its own)."""
    return _service.shared().limits.max_pixels if _service.running() else server_config().limits.max_pixels


def _uploads(photo: Image.Image, paintings: int, key: str) -> list[Image.Image] | None:
    masks = []
    for i in range(paintings):
        up = st.file_uploader(
            f"Mask for painting {i + 1}",
            type=UPLOAD_TYPES,
            key=f"{key}_upload_{i}",
            help="White: the painting goes here.",
        )
        if up is None:
            return None
        # Decoded once per upload and photo, not on every rerun: the mask or its one-line error.
        kept, seen = f"{key}_upload_{i}_decoded", (up.file_id, photo.size)
        if st.session_state.get(kept, (None,))[0] != seen:
            try:
                mask = load_mask(up.getvalue(), photo.size, name=up.name, max_pixels=_max_pixels())
                st.session_state[kept] = (seen, mask)
            except ImageLoadError as e:
                st.session_state[kept] = (seen, f"{e} — the run goes without a mask.")
        mask = st.session_state[kept][1]
        if isinstance(mask, str):
            st.error(md(mask))
            return None
        masks.append(mask)
    return masks


def mask_ui(photo: Image.Image, paintings: int, key: str = "mask") -> list[Image.Image] | None:
    """The masks of the next run (one per painting, the photo's shape), or None for a run without them."""
    if not st.toggle("Paint only where I brush", key=f"{key}_on", help="Spatial control (Gatys et al. 2017)."):
        return None
    source = st.radio("Mask", ["Brush on the photo", "Upload a mask"], horizontal=True, key=f"{key}_source")
    masks = _canvas(photo, paintings, key) if source.startswith("Brush") else _uploads(photo, paintings, key)
    if masks is None:
        return None
    if paintings == 1 and st.checkbox("Invert: paint everywhere but where I brush", key=f"{key}_invert"):
        masks = [Image.eval(masks[0], lambda v: 255 - v)]
    if paintings == 2 and st.checkbox("Painting 2 everywhere painting 1 is not", key=f"{key}_rest"):
        masks = [masks[0], Image.eval(masks[0], lambda v: 255 - v)]
    empty = [i + 1 for i, m in enumerate(masks) if as_mask(m).getextrema()[1] < 8]
    if len(empty) == len(masks):
        st.info("Nothing painted yet: the painting goes everywhere until you brush.")
        return None
    if empty:
        st.warning(f"Nothing painted for painting {empty[0]} yet: brush where it should go.")
        return None
    try:
        return [check_mask(m, photo.size) for m in masks]
    except ImageLoadError as e:
        st.error(md(e))
        return None


def overlay(photo: Image.Image, masks: list[Image.Image], width: int = 240) -> Image.Image:
    """The photo with each painting's region tinted in its brush's colour (the results' and the gallery's view)."""
    base = photo.convert("RGB").copy()
    base.thumbnail((width, width))
    for mask, colour in zip(masks, BRUSHES.values()):
        m = mask.resize(base.size, Image.Resampling.BILINEAR).point(lambda v: round(v * ALPHA))
        base.paste(Image.new("RGB", base.size, colour), (0, 0), m)
    return base
