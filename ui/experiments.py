"""The Lab's experiments, as a table: each row is a title, a paragraph for the class, what it runs and its
defaults; the Lab page (ui/pages/lab.py) draws whichever is chosen. A new experiment is one row and its builder.

An optimising experiment's builder draws the pickers of its pictures and returns a nst_core.tasks.lab Plan, which
the page runs through the job panel like the Studio's runs. An immediate one (the look inside the network) draws
itself: one forward pass in this process, bounded by ui/inside.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from nst_core.images import fit, png_bytes
from nst_core.tasks import lab

from .clip import clip_picker
from .common import client_address, image_picker, sentence, server_config, service
from .inside import Refused, look

Builder = Callable[[str, int, int], lab.Plan | lab.Flicker]  # (key, size, steps) -> what it runs, its pickers drawn


@dataclass(frozen=True)
class Experiment:
    key: str  # in its widgets' keys and its downloads' names
    title: str
    text: str  # the paragraph for the class (Markdown)
    plan: Builder | None = None
    draw: Callable[[], None] | None = None  # an immediate experiment: it draws itself, nothing is queued
    size: int = 128  # the default side of each picture, in pixels
    steps: int = 60  # the default steps per picture
    anim: bool = True  # its result has an animation (a grid that fills in cell by cell has none)

    @property
    def label(self) -> str:
        return f"{self.key}. {self.title}"


@dataclass(frozen=True)
class LabResult:
    """An optimising experiment's result, as the page shows it."""

    key: str  # the experiment's
    image: Image.Image
    png: bytes
    gif: bytes | None
    caption: str


# ---------------------------------------------------------------- the builders


def pixel_match(key: str, size: int, steps: int) -> lab.Plan:
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
    return lab.pixel_match(a, b, size, steps)


def layers(key: str, size: int, steps: int) -> lab.Plan:
    photo = image_picker("lab_photo", "Photo", "content", "chelsea.png", help="The photo to reconstruct.")
    return lab.layer_reconstructions(photo, size, steps)


def style_alone(key: str, size: int, steps: int) -> lab.Plan:
    style = image_picker(
        "lab_style", "Painting", "styles", "starry_night.jpg", help="The painting whose texture we copy."
    )
    return lab.style_alone(style, size, steps)


def photo_and_painting(build: Callable[[Image.Image, Image.Image, int, int], lab.Plan]) -> Builder:
    """The builder of an experiment on a photo and a painting, picked side by side."""

    def plan(key: str, size: int, steps: int) -> lab.Plan:
        c1, c2 = st.columns(2)
        with c1:
            photo = image_picker(f"lab_photo{key}", "Photo", "content", "chelsea.png", help="The photo.")
        with c2:
            style = image_picker(f"lab_style{key}", "Painting", "styles", "starry_night.jpg", help="The painting.")
        return build(photo, style, size, steps)

    return plan


def flicker(key: str, size: int, steps: int) -> lab.Flicker:
    c1, c2 = st.columns(2)
    with c1:
        clip = clip_picker("Six frames of it are painted twice: alone, and with the temporal term.")
    with c2:
        style = image_picker("lab_style7", "Painting", "styles", "starry_night.jpg", help="The painting.")
    return lab.why_videos_flicker(clip.data, style, size, frames=6, iterations=steps, info=clip.info)


# ---------------------------------------------------------------- the look inside the network


@st.cache_resource(show_spinner="Loading VGG19 for a look inside...")
def local_backbone():
    """A backbone in this process for experiment 5 only: one forward pass at 224 px, immediate, no
    optimisation (every run goes to the worker). Loaded the first time someone opens experiment 5."""
    from nst_core.backbone import load_backbone

    return load_backbone(server_config().weights, "cpu")


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


EXPERIMENTS = (
    Experiment(
        "1",
        "The optimiser alone",
        (
            "Before any neural network: we change the pixels of picture **A**, a little at each step, in the "
            "direction that makes it more like picture **B** (the plain squared difference of the pixels goes down). "
            "Here A and B are nearly the same picture, so only the places where they differ change: watch the "
            "differences appear first. Style transfer does exactly this, except that the difference is measured "
            "*inside a network*."
        ),
        plan=pixel_match,
        steps=60,
    ),
    Experiment(
        "2",
        "What each layer sees",
        (
            "Start from random noise and change it until one layer of the network sees the same thing as it sees in "
            "the photo. The first layers give the photo back almost exactly. Deeper layers only care about *what is "
            "where*: the arrangement survives, the exact pixels do not. That is why the content of a picture is "
            "measured at a deep layer (relu4_2): it leaves the pixels free to take on a new style."
        ),
        plan=layers,
        steps=80,
    ),
    Experiment(
        "3",
        "Style alone",
        (
            "Start from noise and match only the *Gram matrices* of the painting: for each pair of feature channels, "
            "how often they are active together, averaged over the whole picture. Where things are is thrown away, so "
            "no trace of the painting's layout remains; what is left is texture. Using deeper layers too gives "
            "textures of larger scale: from colour speckle (relu1_1) to brush strokes and swirls (up to relu5_1)."
        ),
        plan=style_alone,
        steps=80,
    ),
    Experiment(
        "4",
        "The content/style trade-off",
        (
            "Both goals at once, as in the paper's figure: each row gives the style more weight relative to the "
            "content, each column measures style with more layers. Top left keeps the photo almost untouched; bottom "
            "right is almost pure painting. (Our losses are relative errors, so the ratios that matter here are 1 to "
            "1e-3; the paper's 1e-1 ... 1e-4 refer to its unnormalised losses.) Cells appear as they finish."
        ),
        plan=photo_and_painting(lab.tradeoff_grid),
        size=96,
        steps=40,
        anim=False,
    ),
    Experiment(
        "5",
        "Inside the network",
        (
            "What the network computes for one picture at one layer. **Feature maps**: each small picture is one "
            "channel, bright where it responds (the most active channels are shown). **Gram matrix**: how strongly "
            "each pair of channels is active *together*, summed over all positions; this is the painting's 'style'. "
            "Two halves of one painting have similar Gram matrices even though they show different things; two "
            "paintings do not."
        ),
        draw=inside_panel,
    ),
    Experiment(
        "6",
        "Half a photo painted",
        (
            "Style and content can be pulled apart region by region. A *mask* says where the painting goes: white on "
            "the right half, black on the left. Inside the white region the picture's Gram matrices are matched to "
            "the painting's (computed only over that region: *guided* Gram matrices, Gatys et al. 2017); outside it "
            "the photo's own pixels are kept; the content term counts everywhere, so the seam stays clean. Compare it "
            "with the same run painted everywhere."
        ),
        plan=photo_and_painting(lab.half_painted),
        steps=60,
    ),
    Experiment(
        "7",
        "Why videos flicker",
        (
            "A video painted one frame at a time flickers: each frame's optimisation starts from its own photo and "
            "lands somewhere else, so the brush strokes jump about even where nothing moves. Ruder, Dosovitskiy and "
            "Brox (2016) start each frame from the painted frame before, moved along the clip's motion (optical "
            "flow), and add a *temporal* term that keeps it close to that frame wherever the motion is reliable. Top "
            "row: each frame alone; bottom row: with the temporal term. The **warping error** measures the flicker: "
            "how much each painted frame differs from the one before moved along the motion (0 is perfectly steady; "
            "the photo's frames have a little of their own, as light and edges move too)."
        ),
        plan=flicker,
        size=96,
        steps=40,
        anim=False,
    ),
)
