"""The classroom Lab: six experiments that show, one picture at a time, why style transfer works.

Experiments 1-4 are nst_core.tasks.lab Plans run through the same job panel and runner as the Studio; 5 is immediate.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from nst_core.animation import make_gif
from nst_core.images import fit, png_bytes
from nst_core.tasks import lab
from ui.classroom import class_room
from ui.common import client_address, fmt_seconds, image_picker, sentence, service, show_png
from ui.inside import Refused, look
from ui.job_panel import JobPanel, Progress, wait_note

st.set_page_config(page_title="Lab · Neural Style Studio", page_icon=":material/science:", layout="wide")

EXPLAIN = {
    "1. The optimiser alone": (
        "Before any neural network: we change the pixels of picture **A**, a little at each step, in the direction "
        "that makes it more like picture **B** (the plain squared difference of the pixels goes down). Here A and B "
        "are nearly the same picture, so only the places where they differ change: watch the differences appear "
        "first. Style transfer does exactly this, except that the difference is measured *inside a network*."
    ),
    "2. What each layer sees": (
        "Start from random noise and change it until one layer of the network sees the same thing as it sees in "
        "the photo. The first layers give the photo back almost exactly. Deeper layers only care about *what is "
        "where*: the arrangement survives, the exact pixels do not. That is why the content of a picture is "
        "measured at a deep layer (relu4_2): it leaves the pixels free to take on a new style."
    ),
    "3. Style alone": (
        "Start from noise and match only the *Gram matrices* of the painting: for each pair of feature channels, how "
        "often they are active together, averaged over the whole picture. Where things are is thrown away, so no trace "
        "of the painting's layout remains; what is left is texture. Using deeper layers too gives textures of larger "
        "scale: from colour speckle (relu1_1) to brush strokes and swirls (up to relu5_1)."
    ),
    "4. The content/style trade-off": (
        "Both goals at once, as in the paper's figure: each row gives the style more weight relative to the content, "
        "each column measures style with more layers. Top left keeps the photo almost untouched; bottom right is "
        "almost pure painting. (Our losses are relative errors, so the ratios that matter here are 1 to 1e-3; the "
        "paper's 1e-1 ... 1e-4 refer to its unnormalised losses.) Cells appear as they finish."
    ),
    "5. Inside the network": (
        "What the network computes for one picture at one layer. **Feature maps**: each small picture is one channel, "
        "bright where it responds (the most active channels are shown). **Gram matrix**: how strongly each pair of "
        "channels is active *together*, summed over all positions; this is the painting's 'style'. Two halves of one "
        "painting have similar Gram matrices even though they show different things; two paintings do not."
    ),
    "6. Half a photo painted": (
        "Style and content can be pulled apart region by region. A *mask* says where the painting goes: white on the "
        "right half, black on the left. Inside the white region the picture's Gram matrices are matched to the "
        "painting's (computed only over that region: *guided* Gram matrices, Gatys et al. 2017); outside it the "
        "photo's own pixels are kept; the content term counts everywhere, so the seam stays clean. Compare it with "
        "the same run painted everywhere."
    ),
}


def live(p: Progress) -> None:
    if p.image is not None:
        show_png(st, p.image, 1200)


def finish(job, meta: dict) -> dict:
    last = job.final_frames()[-1]
    image = last.image()
    return {
        "key": meta["key"],
        "image": image,
        "png": png_bytes(image, {"experiment": meta["title"]}),
        "gif": make_gif([f.image() for f in job.final_frames()]) if meta["anim"] else None,
        "caption": f"{meta['title']}: {last.step} of {last.total} steps in {fmt_seconds(last.elapsed)}"
        + (f" ({job.reason})" if job.reason else ""),
    }


panel = JobPanel("lab", live, finish)


def run_panel(key: str, plan: lab.Plan, anim: bool) -> None:
    """Estimate, Run, live progress and downloads for one optimising experiment."""
    svc = service()
    st.caption(
        f"About {fmt_seconds(svc.cost.seconds(*plan.work()))} on this server{wait_note()} ({plan.iterations} "
        f"steps in all; {svc.caption})."
    )
    busy = panel.busy()
    if st.button("Run the experiment", type="primary", icon=":material/play_arrow:", disabled=busy, key=f"run_{key}"):
        room = st.session_state.get("lab_room")
        meta = {"key": key, "title": plan.title, "anim": anim}
        panel.submit(plan, plan.title, meta, room=room and room.code, first=bool(room and room.teacher))
    panel.show()
    result = panel.result
    if result and result["key"] == key and not panel.busy():
        st.image(result["image"], caption=result["caption"])
        c1, c2 = st.columns(2)
        c1.download_button(
            "Picture (PNG)",
            result["png"],
            f"lab-{key}.png",
            "image/png",
            icon=":material/download:",
            key=f"dl_png_{key}",
        )
        if result["gif"]:
            c2.download_button(
                "Animation (GIF)",
                result["gif"],
                f"lab-{key}.gif",
                "image/gif",
                icon=":material/download:",
                key=f"dl_gif_{key}",
            )


@st.cache_resource(show_spinner="Loading VGG19 for a look inside...")
def local_backbone():
    """A backbone in this process for experiment 5 only: one forward pass at 224 px, immediate, no
    optimisation (every run goes to the worker). Loaded the first time someone opens experiment 5."""
    import os

    from nst_core.backbone import load_backbone

    return load_backbone(os.environ.get("NST_WEIGHTS", "original"), "cpu")


def digest(image) -> str:
    return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()


# Every student of a class may look at every layer of a few pictures: entries are kept as PNGs of a fixed size (a
# 4x4 grid of 96 px maps and two heatmaps: about 0.2 MB), so 300 of them hold at most about 60 MB.
@st.cache_data(max_entries=300, show_spinner="Looking inside VGG19...")
def inside(key: tuple, _image, _other, layer: str, _client: str = "local"):
    """Feature maps, both Gram matrices and their distance for one input (`key`: the pictures' digests and the
    layer): three VGG19 passes in this process once per input, not on every rerun of the page.

    These passes do not go through the queue (they are one forward pass each, immediate, and need the pictures'
    activations back, not a painting): they are bounded instead (ui/inside.py). One look runs at a time on the
    whole server, and each client address has NST_LOOKS_PER_CLIENT new looks per 10 minutes; a look already
    made (cached) costs nothing. Over either bound, inside.Refused, which is not cached."""

    def compute():
        bb = local_backbone()
        maps = lab.feature_maps(bb, _image, layer)
        a, b = lab.crops(_image) if _other is None else (_image, _other)
        ga, gb = lab.gram_matrix(bb, a, layer), lab.gram_matrix(bb, b, layer)
        return (
            png_bytes(maps),
            png_bytes(lab.gram_heatmap(ga)),
            png_bytes(lab.gram_heatmap(gb)),
            lab.gram_distance(ga, gb),
        )

    return look(service().limits, _client, compute)


def inside_panel() -> None:
    layer = st.selectbox(
        "Layer",
        [f"relu{b}_1" for b in range(1, 6)],
        index=2,
        key="lab_layer",
        help="Early layers see edges and colours; deep layers see parts of objects.",
    )
    c1, c2 = st.columns(2)
    with c1:
        image = image_picker("lab_inside", "Picture", "styles", "starry_night.jpg", help="The picture to look inside.")
    with c2:
        mode = st.radio(
            "Compare its Gram matrix with",
            ["the other half of the same painting", "another painting"],
            key="lab_compare",
        )
        other = None
        if mode == "another painting":
            other = image_picker("lab_other", "Other painting", "styles", "the_scream.jpg", help="A second painting.")
    key = (digest(image), digest(other) if other is not None else None, layer)
    try:
        maps, heat_a, heat_b, d = inside(key, image, other, layer, client_address(service().limits))
    except Refused as e:
        st.error(sentence(e))
        return
    st.markdown(f"**The 16 most active feature maps of {layer}** — each tile is one channel; yellow where it responds.")
    st.image(maps, width=420)
    st.download_button(
        "Feature maps (PNG)",
        maps,
        f"feature-maps-{layer}.png",
        "image/png",
        icon=":material/download:",
        key="dl_maps",
    )
    names = ("left half", "right half") if other is None else ("this painting", "the other painting")
    st.markdown(
        f"**Gram matrices at {layer}** (first 64 channels, log scale) — bright where two channels fire "
        "together. This is what the style loss compares."
    )
    h1, h2 = st.columns(2)
    h1.image(heat_a, caption=names[0], width=320)
    h2.image(heat_b, caption=names[1], width=320)
    verdict = "similar style" if d < 0.2 else "different styles"
    st.metric("Style difference (relative Gram error)", f"{d:.3f}", help="0 means identical texture statistics.")
    st.caption(
        f"{verdict.capitalize()}: {d:.3f} (two halves of one painting are usually below 0.2; two different "
        "paintings above)."
    )


def main() -> None:
    service()
    st.title("The Lab")
    st.session_state.lab_room = class_room()  # a teacher's link (?room=...&key=...) puts the demo's runs first
    st.caption("Why does style transfer work? Six experiments, each a picture a class can make live.")
    choice = st.radio("Experiment", list(EXPLAIN), key="lab_experiment", horizontal=True)
    st.markdown(EXPLAIN[choice])
    key = choice.split(".")[0]
    if key == "5":
        inside_panel()
        return
    size = st.slider(
        "Size of each picture (px)",
        48,
        256,
        128 if key != "4" else 96,
        step=16,
        key=f"lab_size_{key}",
        help="Small is fast; each experiment runs several optimisations.",
    )
    steps = st.slider(
        "Steps per picture", 5, 300, {"1": 60, "2": 80, "3": 80, "4": 40, "6": 60}[key], step=5, key=f"lab_steps_{key}"
    )
    if key == "1":
        c1, c2 = st.columns(2)
        with c1:
            a = fit(image_picker("lab_a", "Picture A", "content", "chelsea.png", help="The picture we change."), size)
        twin = c2.radio("Picture B", ["A with three small changes", "another picture"], key="lab_b_mode")
        if twin == "another picture":
            with c2:
                b = image_picker("lab_b", "Picture B", "content", "coffee.png", help="The target.")
        else:
            b = lab.spot_the_difference_pair(a)
            c2.image(b, caption="B: spot the three differences", width=220)
        run_panel(key, lab.pixel_match(a, b, size, steps), anim=True)
    elif key == "2":
        photo = image_picker("lab_photo", "Photo", "content", "chelsea.png", help="The photo to reconstruct.")
        run_panel(key, lab.layer_reconstructions(photo, size, steps), anim=True)
    elif key == "3":
        style = image_picker(
            "lab_style", "Painting", "styles", "starry_night.jpg", help="The painting whose texture we copy."
        )
        run_panel(key, lab.style_alone(style, size, steps), anim=True)
    else:
        c1, c2 = st.columns(2)
        with c1:
            photo = image_picker(f"lab_photo{key}", "Photo", "content", "chelsea.png", help="The photo.")
        with c2:
            style = image_picker(f"lab_style{key}", "Painting", "styles", "starry_night.jpg", help="The painting.")
        if key == "4":
            run_panel(key, lab.tradeoff_grid(photo, style, size, steps), anim=False)
        else:
            run_panel(key, lab.half_painted(photo, style, size, steps), anim=True)


main()
