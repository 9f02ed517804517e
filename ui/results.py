"""The Studio's run, drawn: the live view, the result (pictures, downloads, before/after, every saved step,
losses) and the session's gallery."""

from __future__ import annotations

import json
import time

import streamlit as st
from PIL import Image

from nst_core.animation import KINDS, gif_frames, intro_card, make_animation
from nst_core.images import png_bytes
from nst_core.serve.jobs import DONE, Job

from .common import md, service, show_png
from .job_panel import Progress
from .masks import overlay

GALLERY_SIZE = 6
DL = ":material/download:"
CHART = {
    "height": 220,
    "mark": {"type": "line"},
    "transform": [{"fold": ["content", "style", "total"], "as": ["loss", "value"]}],
    "encoding": {
        "x": {"field": "step", "type": "quantitative"},
        "y": {"field": "value", "type": "quantitative", "title": "loss"},
        "color": {"field": "loss", "type": "nominal"},
    },
}


def loss_chart(history: list[dict], points: int = 160) -> None:
    """The losses per step. A plain Vega-Lite spec and at most `points` rows: it is drawn on
    every poll, and st.line_chart's Altair build costs about ten times as much."""
    if len(history) > 1:
        rows = history[:: max(1, len(history) // points)] + history[-1:]
        data = {k: [r[k] for r in rows] for k in ("step", "content", "style", "total")}
        st.vega_lite_chart(data, CHART, width="stretch")


def live(p: Progress) -> None:
    """The picture so far and the losses, on every poll."""
    cols = st.columns([3, 2])
    if p.image is not None:
        show_png(cols[0], p.image, 480, caption=f"Step {p.image_step}")
    with cols[1]:
        loss_chart(p.history)


def finish(job: Job, meta: dict) -> dict:
    """The session's result from a finished job (and a copy in the gallery)."""
    svc, s = service(), meta["settings"]
    frames = job.final_frames()
    last = frames[-1]
    info = {
        "settings": s.to_dict(),
        "weights": svc.weights,
        "steps": last.step,
        "seconds": round(last.elapsed, 1),
        "device": svc.caption,
    }
    image = last.image()
    pictures = [f.image() for f in frames[:-1]] + [image]
    with st.spinner("Making the GIF..."):  # MP4 and WebP are made when asked for: the server only serves
        gif = make_animation("gif", pictures)
    labels = meta["labels"]
    result = {
        "image": image,
        "png": png_bytes(image, info),
        "gif": gif,
        "frames": frames,
        "settings_json": json.dumps(info, indent=2),
        "content": meta["content"],
        "styles": meta["styles"],
        "label": labels[0] + " × " + " + ".join(labels[1:]),
        "paintings": " + ".join(labels[1:]),
        "history": list(job.history),
        "info": info,
        "stopped": job.state != DONE,
        "masks": overlay(meta["content"], meta["masks"]) if meta.get("masks") else None,
    }
    gallery = st.session_state.setdefault("gallery", [])
    thumb = image.copy()
    thumb.thumbnail((240, 240))
    entry = {"thumb": thumb, "png": result["png"], "gif": gif, "label": result["label"], "id": f"{time.time():.3f}"}
    gallery.insert(0, {**entry, "masks": overlay(meta["content"], meta["masks"], 120) if meta.get("masks") else None})
    del gallery[GALLERY_SIZE:]  # older results (and their media) are released
    return result


def before_after(content: Image.Image, result: Image.Image, split: int) -> Image.Image:
    """The photo on the left of the split, the result on the right."""
    before = content.resize(result.size, Image.Resampling.LANCZOS)
    out = result.copy()
    x = round(result.width * split / 100)
    out.paste(before.crop((0, 0, x, result.height)), (0, 0))
    if 0 < x < result.width:
        out.paste((255, 255, 255), (max(0, x - 1), 0, x + 1, result.height))
    return out


def result_view(r: dict) -> None:
    st.subheader("Result" + (" (stopped early)" if r["stopped"] else ""))
    c1, c2, c3 = st.columns(3)
    c1.image(r["content"], caption="Photo", width="stretch")
    c2.image(r["styles"][0], caption="Painting" if len(r["styles"]) == 1 else "Paintings (first)", width="stretch")
    c3.image(r["image"], caption=f"Result after {r['info']['steps']} steps", width="stretch")
    if r.get("masks") is not None:
        c1.image(r["masks"], caption="Where the paintings went (the masks, saved in the PNG and the JSON)")
    d1, _, d3 = st.columns(3)
    d1.download_button(
        "Picture (PNG)",
        r["png"],
        "style-transfer.png",
        "image/png",
        key="dl_png",
        icon=DL,
        help="The settings are stored inside the PNG.",
    )
    d3.download_button(
        "Settings (JSON)", r["settings_json"], "settings.json", "application/json", key="dl_json", icon=DL
    )
    intro = st.checkbox(
        "Open the animations with the photo and the painting",
        key="intro",
        help="One and a half seconds of the two pictures side by side, so a shared clip explains itself.",
    )
    animation_buttons(r, len(r["frames"]), intro, "all")


def result_tabs(r: dict) -> None:
    tab1, tab2, tab3 = st.tabs(["Before / after", "Every saved step", "Losses"])
    with tab1:
        split = st.slider(
            "Photo ⟷ result", 0, 100, 50, key="split", help="Drag to wipe between the photo and the result."
        )
        st.image(before_after(r["content"], r["image"], split), width=560)
    with tab2:
        frames = r["frames"]
        i = st.select_slider(
            "Step",
            options=list(range(len(frames))),
            value=len(frames) - 1,
            key="scrub",
            format_func=lambda j: str(frames[j].step),
            help="Earlier steps are sometimes the more striking picture.",
        )
        f = frames[i]
        show_png(st, f.png, 560, caption=f"Step {f.step} of {f.total} ({f.size[0]}x{f.size[1]})")
        st.download_button(
            f"This step as PNG (step {f.step})",
            png_bytes(f.image(), {**r["info"], "steps": f.step}),
            f"style-transfer-step{f.step}.png",
            "image/png",
            key="dl_frame",
            icon=DL,
        )
        if i > 0:
            st.caption(f"The optimisation up to step {f.step}:")
            animation_buttons(r, i + 1, st.session_state.get("intro", False), "upto")
    with tab3:
        loss_chart(r["history"])
        st.caption(
            "Content loss: how far the picture's deep features are from the photo's. Style loss: how far "
            "its texture statistics (Gram matrices) are from the painting's. Both are relative errors."
        )


def animation_buttons(r: dict, n: int, intro: bool, key: str) -> None:
    """GIF, MP4 and WebP of the first n saved steps (the whole run's GIF is made when it ends; others on click)."""

    def make(kind: str):
        def data() -> bytes:
            pictures = [f.image() for f in r["frames"][:n]]
            card = intro_card(r["content"], r["styles"][0], pictures[-1].size) if intro else None
            return make_animation(kind, pictures, card)

        return r["gif"] if kind == "gif" and n == len(r["frames"]) and not intro else data

    labels = {"gif": "Animation (GIF)", "mp4": "Video (MP4)", "webp": "Animation (WebP)"}
    helps = {
        "gif": "Every saved step, looping; 256 colours.",
        "mp4": "H.264: plays in browsers and on phones.",
        "webp": "Full colour, looping, smaller than the GIF.",
    }
    for col, kind in zip(st.columns(3), KINDS, strict=True):
        col.download_button(
            labels[kind],
            make(kind),
            f"style-transfer.{kind}",
            KINDS[kind],
            key=f"dl_{key}_{kind}",
            icon=DL,
            help=helps[kind],
            on_click="ignore",
        )


def from_gif(gif: bytes, kind: str):
    """A gallery entry's MP4 or WebP, made when clicked from its GIF's frames (256 colours): the gallery
    keeps no full-colour frames, which for six 512 px runs would be over 100 MB per session."""
    return lambda: make_animation(kind, gif_frames(gif))


def gallery_view() -> None:
    gallery = st.session_state.get("gallery", [])
    if len(gallery) < 2:
        return
    st.subheader("This session's pictures")
    cols = st.columns(GALLERY_SIZE)
    for col, g in zip(cols, gallery):
        col.image(g["thumb"], caption=md(g["label"]))
        if g.get("masks") is not None:
            col.image(g["masks"], caption="its mask")
        col.download_button("PNG", g["png"], "style-transfer.png", "image/png", key=f"g_png_{g['id']}")
        for kind, mime in KINDS.items():
            col.download_button(
                kind.upper(),
                g["gif"] if kind == "gif" else from_gif(g["gif"], kind),
                f"style-transfer.{kind}",
                mime,
                key=f"g_{kind}_{g['id']}",
                on_click="ignore",
            )
