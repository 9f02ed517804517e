"""Paint where you brush: a mask per painting, drawn over the photo in the browser (streamlit-drawable-canvas,
checked in headless Chromium with Streamlit 1.67) or uploaded as a picture. The method is nst_core's (guided Gram
matrices, Gatys et al. 2017); this module only turns strokes into masks.

Each painting's brush has a colour (red, blue); the "keep the photo" brush paints grey over strokes, as an eraser.
The strokes are translucent, so the canvas is the live overlay of where each painting will go.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import streamlit as st
from PIL import Image

from nst_core.errors import ImageLoadError
from nst_core.images import as_mask, check_mask, load_mask

from .common import UPLOAD_TYPES, md

BRUSHES = {"painting 1": (230, 40, 40), "painting 2": (40, 90, 230), "keep the photo (eraser)": (150, 150, 150)}
ALPHA = 0.55  # of a stroke: the photo shows through
CANVAS_WIDTH = 480


def strokes_to_masks(rgba: np.ndarray, paintings: int) -> list[Image.Image]:
    """The canvas's strokes (H, W, 4) as one 8-bit mask per painting: a pixel belongs to the brush whose colour
    it is nearest (the eraser's grey belongs to none), as strong as its stroke's opacity (soft at the edges)."""
    rgb, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3].astype(np.float32) / 255.0
    colours = np.array(list(BRUSHES.values()), dtype=np.float32)
    nearest = np.argmin(((rgb[..., None, :] - colours) ** 2).sum(-1), axis=-1)
    strength = np.clip(alpha / ALPHA, 0, 1)
    return [Image.fromarray(np.round(255 * strength * (nearest == i)).astype(np.uint8), "L") for i in range(paintings)]


def _canvas(photo: Image.Image, paintings: int, key: str) -> list[Image.Image] | None:
    from streamlit_drawable_canvas import st_canvas

    names = list(BRUSHES)[:paintings] + [list(BRUSHES)[-1]]
    c1, c2 = st.columns([3, 2])
    brush = c1.radio(
        "Brush", names, horizontal=True, key=f"{key}_brush", help="Red and blue: where each painting goes."
    )
    width = c2.slider("Brush size", 4, 80, 30, key=f"{key}_size")
    w = min(CANVAS_WIDTH, photo.width)
    h = round(w * photo.height / photo.width)
    r, g, b = BRUSHES[brush]
    result = st_canvas(
        stroke_width=width,
        stroke_color=f"rgba({r}, {g}, {b}, {ALPHA})",
        background_image=photo.convert("RGB").resize((w, h), Image.Resampling.LANCZOS),
        height=h,
        width=w,
        drawing_mode="freedraw",
        return_image_data=True,
        # A new photo is a new canvas (its strokes were for the old one).
        key=f"{key}_canvas_{hashlib.sha1(photo.tobytes()[:100_000]).hexdigest()[:12]}",
    )
    st.caption("Draw with the mouse or a finger; the toolbar's arrows undo and redo, its bin clears everything.")
    data = result.image_bytes if result is not None else None
    if data is None:
        return None
    with Image.open(io.BytesIO(data)) as im:
        return strokes_to_masks(np.asarray(im.convert("RGBA")), paintings)


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
        try:
            masks.append(load_mask(up.getvalue(), photo.size, name=up.name))
        except ImageLoadError as e:
            st.error(md(f"{e} — the run goes without a mask."))
            return None
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
