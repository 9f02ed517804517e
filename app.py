"""Neural Style Studio: pick a photo and a painting, tune, watch it paint, download the picture and the GIF.

Widgets -> Settings -> a job on the shared runner (nst_core.jobs) -> a live view that polls it.
The run lives in the runner, not in this script, so moving a slider or reconnecting does not kill it.
"""

from __future__ import annotations

import json
import math
import time

import streamlit as st
from PIL import Image

from nst_core.animation import KINDS, gif_frames, intro_card, make_animation
from nst_core.errors import ImageLoadError
from nst_core.images import fit, png_bytes
from nst_core.jobs import DONE, Job, StyleTask
from nst_core.layers import RELU_LAYERS
from nst_core.settings import PRECISIONS, PRESETS, Settings
from nst_core.wall import NAME_LENGTH, WallError
from studio import (
    SAMPLES,
    class_wall,
    engine,
    fmt_seconds,
    image_picker,
    job_progress,
    open_class_wall,
    poll,
    show_png,
    submit,
    wait_note,
)

D = Settings()
GALLERY_SIZE = 6
W = "w_"  # prefix of the widget keys that mirror Settings fields
DL = ":material/download:"

st.set_page_config(page_title="Neural Style Studio", page_icon=":material/palette:", layout="wide")  # every page


# ---------------------------------------------------------------- settings


def _widget_values(s: Settings, limits, device_type: str) -> dict:
    """Widget states for a Settings, clamped to what the widgets offer (an address may ask for more)."""
    style_layers = [l for l in s.style_layers if l in RELU_LAYERS] or list(D.style_layers)
    return {
        "preset": next((k for k, v in PRESETS.items() if v == s), "balanced"),
        "style_log": round(math.log10(max(s.style_weight, 1e-3)), 1),
        "content_weight": s.content_weight,
        "tv_weight": s.tv_weight,
        "iterations": max(10, min(s.iterations, limits.max_iterations)),
        "size": max(64, min(s.size, limits.max_size(device_type))),
        "content_layer": s.content_layers[0]
        if s.content_layers[:1] and s.content_layers[0] in RELU_LAYERS
        else D.content_layers[0],
        "style_layers": style_layers,
        "optimizer": s.optimizer,
        "lr": s.lr,
        "init": s.init,
        "seed": s.seed,
        "pooling": s.pooling,
        "precision": s.precision,
        "preserve_colors": s.preserve_colors,
        "style_scale": s.style_scale,
        "scales": s.scales,
        "blend": 0.5,
        **{f"lw_{l}": 1.0 for l in RELU_LAYERS},
        **{f"lw_{l}": w for l, w in zip(s.style_layers, s.style_layer_weights) if l in RELU_LAYERS},
    }


def _query_settings() -> Settings:
    """Settings() with any field given in the URL (?size=256&iterations=40): shareable classroom links."""
    fields = Settings().to_dict()
    changes = {}
    for key, raw in st.query_params.items():
        if key in fields:
            default = fields[key]
            try:
                if isinstance(default, bool):
                    changes[key] = raw.lower() in ("1", "true", "yes")
                elif isinstance(default, list):
                    changes[key] = tuple(v for v in raw.split(",") if v)
                else:
                    changes[key] = type(default)(raw)
            except ValueError:
                st.warning(f"Ignoring {key}={raw!r} from the address: not a valid value.")
    try:
        return Settings().replace(**changes)
    except ValueError as e:
        st.warning(f"Ignoring the settings in the address: {e}")
        return Settings()


def _apply(values: dict) -> None:
    for k, v in values.items():
        st.session_state[W + k] = v


def _on_preset() -> None:
    eng = engine()
    _apply(
        {
            k: v
            for k, v in _widget_values(PRESETS[st.session_state[W + "preset"]], eng.limits, eng.device_type).items()
            if k != "preset"
        }
    )


def _on_optimizer() -> None:
    st.session_state[W + "lr"] = 1.0 if st.session_state[W + "optimizer"] == "lbfgs" else 0.02


def settings_ui(limits, device_type: str) -> Settings | None:
    """The sidebar controls; returns the Settings they describe (or None with an error shown)."""
    if W + "size" not in st.session_state:
        _apply(_widget_values(_query_settings(), limits, device_type))
    k = lambda name: W + name  # noqa: E731
    st.selectbox(
        "Preset",
        list(PRESETS),
        key=k("preset"),
        on_change=_on_preset,
        help="Named starting points. Pick one, then adjust the sliders below.",
    )
    st.slider(
        "Style strength",
        -1.0,
        4.0,
        step=0.1,
        key=k("style_log"),
        format="10^%.1f",
        help="How strongly the painting's textures take over (logarithmic: each step of 1 is 10x). "
        "It means the same at any picture size.",
    )
    st.slider(
        "Content weight",
        0.0,
        5.0,
        step=0.1,
        key=k("content_weight"),
        help="How closely the shapes of the photo are kept. 0 keeps only the painting's textures.",
    )
    st.slider(
        "Smoothness",
        0.0,
        20.0,
        step=0.5,
        key=k("tv_weight"),
        help="Removes speckle and high-frequency noise; too much looks blurry.",
    )
    st.slider(
        "Iterations",
        10,
        limits.max_iterations,
        step=10,
        key=k("iterations"),
        help="How long to optimise. Most of the change happens in the first hundred.",
    )
    st.slider(
        "Output size (longest side, px)",
        64,
        limits.max_size(device_type),
        step=32,
        key=k("size"),
        help="Bigger pictures take longer: twice the size is about four times the time.",
    )
    with st.expander("Advanced"):
        st.selectbox(
            "Content layer",
            RELU_LAYERS,
            key=k("content_layer"),
            help="Where in the network the photo is compared. Deeper layers keep the layout, not the pixels.",
        )
        st.multiselect(
            "Style layers",
            RELU_LAYERS,
            key=k("style_layers"),
            help="Where the painting's textures are measured. Early layers: fine brush marks; "
            "deep layers: larger patterns.",
        )
        layers = st.session_state[k("style_layers")]
        if layers:
            st.caption("Weight of each style layer")
            cols = st.columns(min(3, len(layers)))
            for i, layer in enumerate(layers):
                cols[i % len(cols)].number_input(
                    layer,
                    0.0,
                    10.0,
                    step=0.1,
                    key=k(f"lw_{layer}"),
                    help=f"Relative weight of {layer} in the style loss.",
                )
        st.radio(
            "Optimiser",
            ["lbfgs", "adam"],
            key=k("optimizer"),
            horizontal=True,
            on_change=_on_optimizer,
            help="L-BFGS converges in fewer steps; Adam is steadier and uses less memory.",
        )
        st.number_input("Step size", 0.001, 10.0, key=k("lr"), format="%.3f", help="1 for L-BFGS; about 0.02 for Adam.")
        st.selectbox(
            "Start from",
            ["content", "noise", "style"],
            key=k("init"),
            help="The picture the optimisation starts from. Noise shows the method most clearly.",
        )
        st.number_input(
            "Seed",
            0,
            2**31 - 1,
            step=1,
            key=k("seed"),
            help="Same seed and settings give the same picture (on the CPU).",
        )
        st.radio(
            "Pooling",
            ["max", "avg"],
            key=k("pooling"),
            horizontal=True,
            help="Average pooling (as in the paper) gives slightly smoother results.",
        )
        st.radio(
            "Arithmetic",
            list(PRECISIONS),
            key=k("precision"),
            horizontal=True,
            help="How VGG19 computes. auto: bfloat16 where the hardware has it (GPUs, recent x86 CPUs: about "
            "twice as fast), float32 elsewhere. The sidebar says which this server uses.",
        )
        st.checkbox(
            "Keep the photo's colours",
            key=k("preserve_colors"),
            help="Transfer only brightness patterns; the colours stay those of the photo.",
        )
        st.slider(
            "Style scale",
            0.25,
            2.0,
            step=0.05,
            key=k("style_scale"),
            help="Size of the painting relative to the output: smaller gives finer brush strokes.",
        )
        st.slider(
            "Coarse-to-fine levels",
            1,
            4,
            key=k("scales"),
            help="Start small and double the size each level: much faster on a CPU.",
        )
    v = {name: st.session_state[W + name] for name in _widget_values(D, limits, device_type)}
    iterations = int(v["iterations"])
    try:
        return Settings(
            size=int(v["size"]),
            iterations=iterations,
            content_weight=float(v["content_weight"]),
            style_weight=float(f"{10 ** v['style_log']:.4g}"),
            tv_weight=float(v["tv_weight"]),
            content_layers=(v["content_layer"],),
            style_layers=tuple(layers),
            style_layer_weights=tuple(float(v[f"lw_{l}"]) for l in layers),
            optimizer=v["optimizer"],
            lr=float(v["lr"]),
            init=v["init"],
            seed=int(v["seed"]),
            pooling=v["pooling"],
            precision=v["precision"],
            preserve_colors=bool(v["preserve_colors"]),
            style_scale=float(v["style_scale"]),
            scales=int(v["scales"]),
            preview_every=max(1, iterations // 40),
        )
    except ValueError as e:
        st.error(f"These settings cannot run: {e}")
        return None


# ---------------------------------------------------------------- running


def start_run(settings: Settings, content: Image.Image, styles: list[Image.Image], labels: list[str]) -> None:
    eng = engine()
    estimate = eng.cost.estimate(settings, min(content.size) / max(content.size))
    try:  # the worker gets the pictures at the size it needs, not the uploads' full size
        style_side = max(32, round(settings.size * settings.style_scale))
        task = StyleTask(fit(content, settings.size), tuple(fit(im, style_side) for im in styles), settings)
    except ImageLoadError as e:
        st.error(f"These pictures cannot run at this size: {e}")
        return
    job = submit(eng, task, " + ".join(labels), estimate)
    if job is None:
        return
    st.session_state.job = job
    st.session_state.job_meta = {
        "settings": settings,
        "content": content,
        "styles": styles,
        "labels": labels,
        "aspect": min(content.size) / max(content.size),
    }


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


def live_view() -> None:
    """Polled while a run is queued or running (an st.fragment, see studio.poll)."""
    eng, job = engine(), st.session_state.get("job")
    if job is None:
        return
    state, latest, image, image_step, history = job_progress(eng, job)
    cols = st.columns([3, 2])
    if image is not None:
        show_png(cols[0], image, 480, caption=f"Step {image_step}")
    with cols[1]:
        loss_chart(history)
    if not job.active:
        finish(job)
        st.rerun()


def finish(job: Job) -> None:
    """Turn a finished job into the session's result (once), and keep a copy in the gallery."""
    meta = st.session_state.pop("job_meta")
    st.session_state.job = None
    if not job.finished_ok:
        st.session_state.run_message = (
            "error",
            f"The run failed: {job.reason}" if job.reason else "The run stopped before its first picture.",
        )
        return
    eng, s = engine(), meta["settings"]
    frames = job.final_frames()
    last = frames[-1]
    info = {
        "settings": s.to_dict(),
        "weights": eng.weights,
        "steps": last.step,
        "seconds": round(last.elapsed, 1),
        "device": eng.caption,
    }
    image = last.image()
    pictures = [f.image() for f in frames[:-1]] + [image]
    with st.spinner("Making the GIF..."):  # MP4 and WebP are made when asked for: the server only serves
        gif = make_animation("gif", pictures)
    result = {
        "image": image,
        "png": png_bytes(image, info),
        "gif": gif,
        "frames": frames,
        "settings_json": json.dumps(info, indent=2),
        "content": meta["content"],
        "styles": meta["styles"],
        "label": meta["labels"][0] + " × " + " + ".join(meta["labels"][1:]),
        "paintings": " + ".join(meta["labels"][1:]),
        "history": list(job.history),
        "info": info,
        "stopped": job.state != DONE,
        "reason": job.reason,
    }
    st.session_state.result = result
    if job.state == DONE:
        eng.cost.learn(s, meta["aspect"], last.elapsed, last.step)
        st.session_state.run_message = ("success", f"Done: {last.step} steps in {fmt_seconds(last.elapsed)}.")
    else:
        st.session_state.run_message = (
            "warning",
            f"Run {job.reason} at step {last.step} of {last.total}; the picture so far is kept.",
        )
    gallery = st.session_state.setdefault("gallery", [])
    thumb = image.copy()
    thumb.thumbnail((240, 240))
    entry = {"thumb": thumb, "png": result["png"], "gif": gif, "label": result["label"]}
    gallery.insert(0, {**entry, "id": f"{time.time():.3f}"})
    del gallery[GALLERY_SIZE:]  # older results (and their media) are released


# ---------------------------------------------------------------- results


def before_after(content: Image.Image, result: Image.Image, split: int) -> Image.Image:
    """The photo on the left of the split, the result on the right."""
    before = content.resize(result.size, Image.Resampling.LANCZOS)
    out = result.copy()
    x = round(result.width * split / 100)
    out.paste(before.crop((0, 0, x, result.height)), (0, 0))
    if 0 < x < result.width:
        out.paste((255, 255, 255), (max(0, x - 1), 0, x + 1, result.height))
    return out


def results_view(r: dict) -> None:
    st.subheader("Result" + (" (stopped early)" if r["stopped"] else ""))
    c1, c2, c3 = st.columns(3)
    c1.image(r["content"], caption="Photo", width="stretch")
    c2.image(r["styles"][0], caption="Painting" if len(r["styles"]) == 1 else "Paintings (first)", width="stretch")
    c3.image(r["image"], caption=f"Result after {r['info']['steps']} steps", width="stretch")
    d1, d2, d3 = st.columns(3)
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
    if st.session_state.get("room"):
        share_view(r)
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
    """GIF, MP4 and WebP of the first n saved steps (the whole run's are made when it ends; others on click)."""

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
        col.image(g["thumb"], caption=g["label"])
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


# ---------------------------------------------------------------- the class wall (pages/2_Class.py)


def class_room() -> None:
    """A room link (?room=CODE) puts this tab in that class: its results can be shared to the room's wall."""
    code = st.query_params.get("room")
    try:
        wall = open_class_wall()  # its clean-up (every 10 minutes) starts here
    except (WallError, ValueError) as e:  # the studio works without it
        if code:
            st.warning(f"Not in a class: the class wall is not available on this server ({e}).")
        return
    if code and code != st.session_state.get("room"):
        try:
            st.session_state.room = wall.room(code).code
        except WallError as e:
            st.warning(f"Not in a class: {e}.")
            return
    if st.session_state.get("room"):
        code = st.session_state.room
        st.info(
            f"You are in class room **{code}**: when your picture is done you can share it to the "
            f"[class wall](Class?room={code}) (only the picture, its animation and its settings, never your photo)."
        )


def share_view(r: dict) -> None:
    """Opt-in: the result, its GIF and its settings go to the room's wall, under a name if one is given."""
    code = st.session_state.room
    if r.get("shared"):
        st.success(f"Shared to the wall of room {code}{' as ' + r['shared'] if r['shared'] != '-' else ''}.")
        return
    with st.form("share", border=True):
        name = st.text_input("Your first name or a nickname (optional)", max_chars=NAME_LENGTH, key="share_name")
        if st.form_submit_button("Share to the class wall", icon=":material/groups:"):
            settings = {**r["info"]["settings"], "steps": r["info"]["steps"], "seconds": r["info"]["seconds"]}
            try:
                entry = class_wall().share(code, r["png"], r["gif"], name, r["paintings"], settings)
            except WallError as e:
                st.error(f"Not shared: {e}.")
            else:
                r["shared"] = entry.name or "-"
                st.rerun()


# ---------------------------------------------------------------- page


def main() -> None:
    eng = engine()
    st.title("Neural Style Studio")
    st.caption(
        "Paint a photo in the style of a painting, live. The method: Gatys, Ecker & Bethge (2015), "
        "on a VGG19 network trained on ImageNet."
    )
    class_room()
    with st.sidebar:
        st.header("Settings")
        settings = settings_ui(eng.limits, eng.device_type)
        st.caption(f"Running on: {eng.caption}")
        lim = eng.limits
        st.caption(
            f"Limits on this server: {lim.max_size(eng.device_type)} px, {lim.max_iterations} iterations, "
            f"{fmt_seconds(lim.max_seconds)} per run, {lim.upload_mb} MB uploads."
        )
    c1, c2, c3 = st.columns(3)
    with c1:
        content = image_picker("content", "Photo", "content", "chelsea.png", help="The picture to repaint.")
    with c2:
        style = image_picker("style", "Painting", "styles", "starry_night.jpg", help="Whose brushwork to borrow.")
    with c3:
        two = st.toggle("Blend a second painting", key="two_styles")
        styles, labels = [style], [st.session_state.content[0], st.session_state.style[0]]
        if two:
            style2 = image_picker("style2", "Second painting", "styles", "the_scream.jpg", help="Mixed with the first.")
            mix = st.slider(
                "Blend", 0.0, 1.0, step=0.05, key=W + "blend", help="0: only the first painting; 1: only the second."
            )
            styles.append(style2)
            labels.append(st.session_state.style2[0])
            if settings is not None:
                settings = settings.replace(style_blend=(round(1 - mix, 3), round(mix, 3)))

    job = st.session_state.get("job")
    if job is not None and not job.active:  # it may have ended between two reruns of this page
        finish(job)
    busy = st.session_state.get("job") is not None
    if settings is not None:
        aspect = min(content.size) / max(content.size)
        est = eng.cost.estimate(settings, aspect)
        st.caption(
            f"Estimated time on this server: about {fmt_seconds(est)} for {settings.iterations} steps at "
            f"{settings.size} px (measured here){wait_note(eng)}."
        )
    if st.button("Run", type="primary", icon=":material/play_arrow:", disabled=busy or settings is None, key="run"):
        start_run(settings, content, styles, labels)
        st.session_state.pop("run_message", None)
        busy = st.session_state.get("job") is not None
    if busy:
        poll(live_view, st.session_state.job)
    msg = st.session_state.get("run_message")
    if msg:
        getattr(st, msg[0])(msg[1])
    if st.session_state.get("result") and not busy:
        results_view(st.session_state.result)
    gallery_view()
    with st.expander("About the sample images and the method"):
        st.markdown((SAMPLES / "LICENSES.md").read_text())


# Named pages (the sidebar shows "Studio" and "Lab", not file names); their addresses stay / and /Lab.
st.navigation(
    [
        st.Page(main, title="Studio", icon=":material/palette:", default=True),
        st.Page("pages/1_Lab.py", title="Lab", icon=":material/science:", url_path="Lab"),
        st.Page("pages/2_Class.py", title="Class", icon=":material/groups:", url_path="Class"),
    ]
).run()
