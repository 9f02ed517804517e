"""One frozen, validated Settings object for a style-transfer run, its derived rules, and a few named presets.

Every front end reads its defaults, choices and help from here: the CLI generates its options from the fields,
the app's field table (ui/fields.py) maps each field to a widget. So a new field is one edit here (and a
widget row, if the app shows it). The rules that tie one value to another live here too, so that no front end
restates them: the step size an optimiser wants (step_size), the spacing of the pictures shown while a run
paints (preview_spacing), the side a painting is worked at (Settings.style_side), and how a list is written
as text (parse_list: the CLI, the app's address and Settings itself read lists with it).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Literal, get_args

from .images import MIN_SIDE
from .layers import LAYER_INDEX

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise", "style"]
Pooling = Literal["max", "avg"]
Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS = get_args(Precision)
# The step size each optimiser wants: L-BFGS scales its own steps; Adam moves each pixel by about lr per step,
# on [0, 1] pixels.
LR = {"lbfgs": 1.0, "adam": 0.02}

# The temporal weight of a clip (nst_core.video, Ruder et al. 2016) on our scale: the term is mean(c * (x - warped)^2)
# over pixels and channels with pixels in [0, 1], added to content and style terms that are relative errors
# (losses.py). Ruder et al.'s weight is for a mean over 0-255 Caffe pixels against content and style losses that are
# sums of raw features, so it does not carry over.
# Ours was chosen by measuring (benchmarks/bench_video.py, figures in docs/benchmarks.md): starting each frame from
# the warped painting already removes most of the flicker of frames painted alone; the weight then trades what is
# left against the style's hold (the style loss rises as the weight grows). 300, the middle of the weights measured,
# removes most of what the warped start leaves for a modest rise in the style loss.
TEMPORAL_WEIGHT = 300.0

# Pictures shown while a run paints: about this many over a run, whatever its length (the live view and the
# animation get the same rhythm for a short and a long run).
PREVIEWS = 40
PIXELS = "pixels"  # a pseudo content layer: the image itself (plain pixel matching, used by the Lab)


def _f(default, help: str):
    """A field with its help text (the CLI's --help and the app's tooltips where they have none of their own)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    size: int = _f(512, "longest side of the output, in pixels; twice the size takes about four times as long")
    iterations: int = _f(
        160,
        "how long to optimise: objective evaluations in total, over all coarse-to-fine levels; "
        "most of the change happens in the first hundred",
    )
    content_weight: float = _f(
        1.0, "alpha in Gatys et al.: how closely the photo's layout is kept; 0 keeps only the painting's textures"
    )
    # Losses are relative errors (losses.py), so the style weight means the same at any size and for any painting.
    style_weight: float = _f(
        10.0, "beta in Gatys et al.: how strongly the painting's textures take over, the same at any picture size"
    )
    tv_weight: float = _f(1.0, "smoothing (total variation) against speckle and high-frequency noise; too much blurs")
    content_layers: tuple[str, ...] = _f(
        ("relu4_2",), "VGG19 layers where the photo is compared: deeper layers keep the layout, not the pixels"
    )
    style_layers: tuple[str, ...] = _f(
        DEFAULT_STYLE_LAYERS,
        "VGG19 layers whose Gram matrices (the painting's textures) are matched: early layers for fine brush "
        "marks, deep layers for larger patterns",
    )
    style_layer_weights: tuple[float, ...] = _f((), "one weight per style layer (default: equal, as in the paper)")
    style_blend: tuple[float, ...] = _f((), "one weight per style image (default: an equal blend)")
    style_scale: float = _f(1.0, "size of the painting relative to the output: smaller gives finer brush strokes")
    optimizer: Optimizer = _f("lbfgs", "L-BFGS converges in fewer steps; Adam is steadier and uses less memory")
    lr: float = _f(
        LR["lbfgs"],
        f"step size: {LR['lbfgs']:g} for L-BFGS, about {LR['adam']:g} for Adam (the default follows the optimiser)",
    )
    lbfgs_history: int = _f(10, "L-BFGS memory in curvature pairs (about 2 x history image copies)")
    init: Init = _f("content", "the picture the optimisation starts from; noise shows the method most clearly")
    seed: int = _f(0, "random seed: same seed, same pixels on the CPU")
    pooling: Pooling = _f("max", "VGG19's pooling: max, or avg (smoother, as in the paper)")
    weights: str = _f("original", "original (offline) | torchvision | random | PATH to a state dict")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N | mps")
    # auto: bfloat16 where the hardware has it (GPUs, x86 CPUs with AVX512-BF16 or AMX: about half the time),
    # float32 elsewhere. The losses are always summed in float32.
    precision: Precision = _f(
        "auto",
        "arithmetic of the VGG19 passes; auto: bfloat16, which is faster, where the hardware has it (GPUs, recent "
        "x86 CPUs), float32 elsewhere",
    )
    preserve_colors: bool = _f(False, "transfer luminance only; keep the photo's colours")
    # Spatial control (Gatys et al. 2017): one mask per painting, as images.encode_mask keeps them ('png:' and a base64
    # PNG, at most 512 px): white, the painting goes here; black, the photo stays; grey, in between. () means none.
    masks: tuple[str, ...] = _f((), "one mask per painting (white: the painting goes here; black: keep the photo)")
    scales: int = _f(
        3, "coarse-to-fine levels, each twice the size of the one before (1 = single scale); much faster on a CPU"
    )
    min_scale_size: int = _f(64, "no level is smaller than this many pixels (levels below it are skipped)")
    preview_every: int = _f(10, "a picture every N steps (and at the last step)")

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"{name}={getattr(self, name)!r}: {why}")

        for name in ("content_layers", "style_layers", "style_layer_weights", "style_blend", "masks"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = parse_list(value)
            object.__setattr__(self, name, tuple(value))
        # Numbers in one canonical type (1 and 1.0 are one setting): the same run has the same digest in the
        # server's cache of finished runs (serve.results.Results) and the same JSON, wherever its values came from.
        try:
            for name in FLOATS:
                value = getattr(self, name)
                object.__setattr__(self, name, tuple(map(float, value)) if isinstance(value, tuple) else float(value))
        except (TypeError, ValueError):
            bad(name, "must be a number")
        for name, (lo, hi) in RANGES.items():
            if not lo <= getattr(self, name) <= hi:
                bad(name, f"must be between {lo:g} and {hi:g}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if not 0 <= getattr(self, name) < float("inf"):
                bad(name, "must be a finite number >= 0")
        for name in ("content_layers", "style_layers"):
            for layer in getattr(self, name):
                if layer not in LAYER_INDEX and not (name == "content_layers" and layer == PIXELS):
                    bad(name, f"unknown layer {layer!r} (use conv1_1 ... relu5_4, pool1 ... pool5)")
        if not self.style_layers and not self.content_layers:
            bad("style_layers", "need at least one content or style layer")
        if self.style_layer_weights and len(self.style_layer_weights) != len(self.style_layers):
            bad("style_layer_weights", f"need one weight per style layer ({len(self.style_layers)})")
        if any(not w >= 0 for w in self.style_layer_weights + self.style_blend):
            bad("style_layer_weights" if self.style_layer_weights else "style_blend", "weights must be >= 0")
        if self.style_blend and sum(self.style_blend) <= 0:
            bad("style_blend", "at least one blend weight must be positive")
        if not 0 < self.lr <= 100:
            bad("lr", "must be in (0, 100]")
        for name, options in CHOICES.items():
            if getattr(self, name) not in options:
                bad(name, f"choose one of {', '.join(options)}")
        if not isinstance(self.seed, int) or self.seed < 0:
            bad("seed", "must be a non-negative integer")
        if any(not isinstance(m, str) or not m.startswith("png:") for m in self.masks):
            raise ValueError("masks: each is 'png:' and a base64 PNG (nst_core.images.encode_mask)")

    def style_side(self, size: int | None = None) -> int:
        """The longest side a painting is worked at for an output (or a coarse-to-fine level) of `size` (default:
        the output's): `style_scale` times it, but never so small that VGG19's poolings leave nothing of the
        painting's texture (twice the smallest picture images.fit accepts)."""
        return max(MIN_SIDE * 2, round((self.size if size is None else size) * self.style_scale))

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# What each numeric field accepts (the app's widgets may offer less: a server has its own limits).
RANGES: dict[str, tuple[float, float]] = {
    "size": (16, 4096),
    "iterations": (1, 100_000),
    "style_scale": (0.1, 4),
    "lbfgs_history": (1, 200),
    "scales": (1, 6),
    "min_scale_size": (16, 4096),
    "preview_every": (1, 100_000),
}
TYPES = typing.get_type_hints(Settings)
FLOATS = tuple(name for name, t in TYPES.items() if t in (float, tuple[float, ...]))
# The choices of every Literal field, from its type: the CLI's choices, the app's options, the validation.
CHOICES: dict[str, tuple[str, ...]] = {
    f.name: get_args(TYPES[f.name]) for f in dataclasses.fields(Settings) if typing.get_origin(TYPES[f.name]) is Literal
}
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(Settings)}


def parse_list(text: str, item: typing.Callable = str) -> tuple:
    """A list setting written as text, its items separated by commas, spaces or both ('relu1_1,relu2_1',
    '1, 2 1'), each made by `item` (which raises ValueError for a bad one). The CLI's options, the app's address
    (?style_layers=relu1_1,relu2_1) and Settings itself read lists with it, so they accept the same text."""
    return tuple(item(v) for v in text.replace(",", " ").split())


def step_size(optimizer: str) -> float:
    """The step size `optimizer` wants (LR): a front end that changes the optimiser and not the step size uses it."""
    return LR[optimizer]


def preview_spacing(iterations: int) -> int:
    """Steps between the pictures a run of `iterations` shows: about PREVIEWS of them, at least one step apart."""
    return max(1, iterations // PREVIEWS)


# Named starting points. Each is tested to run; the values were chosen by looking at the samples.
PRESETS: dict[str, Settings] = {
    "balanced": Settings(),
    "subtle": Settings(style_weight=3.0),
    "bold": Settings(style_weight=100.0, tv_weight=3.0),
    "quick preview": Settings(size=256, iterations=80, preview_every=5),
    "paper (single scale, noise start)": Settings(
        init="noise", scales=1, iterations=500, style_weight=100.0, tv_weight=0.0, pooling="avg"
    ),
}


def preset(name: str) -> Settings:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def run_record(
    settings: Settings, weights: str, device: str, steps: int | None = None, seconds: float | None = None
) -> dict:
    """How a picture was made, as it travels with it (the PNG's metadata, settings.json, the class wall): one shape
    for the CLI and the app, so a picture from either reads back the same. Steps and seconds where they are known."""
    record: dict = {"settings": settings.to_dict(), "weights": weights}
    if steps is not None:
        record["steps"] = steps
    if seconds is not None:
        record["seconds"] = seconds
    record["device"] = device
    return record
