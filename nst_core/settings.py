"""One frozen, validated Settings object for a style-transfer run, plus a few named presets.

Every front end (CLI, app, Lab) reads its defaults from Settings(), so defaults live here only.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal, get_args

from .layers import LAYER_INDEX

DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS = get_args(Precision)  # the choices every front end offers
PIXELS = "pixels"  # a pseudo content layer: the image itself (plain pixel matching, used by the Lab)


@dataclass(frozen=True)
class Settings:
    size: int = 512  # longest side of the output, in pixels
    iterations: int = 160  # objective evaluations in total, over all scales
    content_weight: float = 1.0  # alpha in Gatys et al.
    style_weight: float = (
        10.0  # beta; losses are relative errors, so it means the same at any size and for any painting
    )
    tv_weight: float = 1.0  # total-variation smoothing against high-frequency noise
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = ()  # one per style layer; () means equal weights (as in the paper)
    style_blend: tuple[float, ...] = ()  # one per style image; () means equal blend
    style_scale: float = 1.0  # size of the style image relative to the output
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float = 1.0  # step size: 1 for L-BFGS; Adam works on [0, 1] pixels, so about 0.02
    lbfgs_history: int = 10  # L-BFGS memory (pairs kept); bounds memory at about 2 * history image copies
    init: Literal["content", "noise", "style"] = "content"
    seed: int = 0  # same seed, same pixels on the CPU
    pooling: Literal["max", "avg"] = "max"
    weights: str = "original"  # original | torchvision | random | path to a state dict
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # Arithmetic of the VGG19 passes. auto: bfloat16 where the hardware has it (GPUs, x86 CPUs with AVX512-BF16
    # or AMX: about half the time), float32 elsewhere. The losses are always summed in float32.
    precision: Precision = "auto"
    preserve_colors: bool = False  # transfer luminance only; keep the content's colours
    scales: int = 3  # coarse-to-fine levels, each twice the size of the one before (1 = single scale)
    min_scale_size: int = 64  # no level is smaller than this (levels below it are skipped)
    preview_every: int = 10  # an image every N steps (and at the last step)

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"{name}={getattr(self, name)!r}: {why}")

        for name in ("content_layers", "style_layers", "style_layer_weights", "style_blend"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = tuple(v for v in value.replace(",", " ").split() if v)
            object.__setattr__(self, name, tuple(value))
        if not 16 <= self.size <= 4096:
            bad("size", "must be between 16 and 4096 pixels")
        if not 1 <= self.iterations <= 100_000:
            bad("iterations", "must be between 1 and 100000")
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
        if not 0.1 <= self.style_scale <= 4:
            bad("style_scale", "must be between 0.1 and 4")
        if self.optimizer not in ("lbfgs", "adam"):
            bad("optimizer", "choose lbfgs or adam")
        if not 0 < self.lr <= 100:
            bad("lr", "must be in (0, 100]")
        if not 1 <= self.lbfgs_history <= 200:
            bad("lbfgs_history", "must be between 1 and 200")
        if self.init not in ("content", "noise", "style"):
            bad("init", "choose content, noise or style")
        if self.precision not in PRECISIONS:
            bad("precision", "choose auto, float32 or bfloat16")
        if self.pooling not in ("max", "avg"):
            bad("pooling", "choose max or avg")
        if not 1 <= self.scales <= 6:
            bad("scales", "must be between 1 and 6")
        if not 16 <= self.min_scale_size <= 4096:
            bad("min_scale_size", "must be between 16 and 4096")
        if not 1 <= self.preview_every <= 100_000:
            bad("preview_every", "must be >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            bad("seed", "must be a non-negative integer")

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
