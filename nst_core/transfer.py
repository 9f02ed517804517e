"""stylize(): Gatys et al. style transfer as a generator of Frame objects.

Iterate it to run, close it to stop. One step is one evaluation of the objective (forward + backward),
counted over all scales of the coarse-to-fine schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import images, losses
from .backbone import Backbone, load_backbone
from .schedule import schedule
from .settings import PIXELS, Settings


@dataclass(frozen=True)
class Frame:
    step: int  # 1-based: steps done so far
    total: int  # steps in the whole run
    losses: dict[str, float]  # content, style, tv, total (weighted) at this step's evaluation
    elapsed: float  # seconds since the run started (targets included)
    size: tuple[int, int]  # (width, height) the optimisation works at in this step
    image: Image.Image | None = None  # every preview_every steps and at the last step

    @property
    def done(self) -> bool:
        return self.step == self.total


class Objective:
    """The weighted Gatys objective for fixed targets at one size."""

    def __init__(self, backbone: Backbone, settings: Settings, content: Tensor, styles: Sequence[Tensor]):
        self.backbone, self.s = backbone, settings
        layer_w = settings.style_layer_weights or (1.0,) * len(settings.style_layers)
        norm = sum(layer_w) or 1.0  # a weighted mean over layers: adding a layer does not change the scale
        self.layer_weights = {l: w / norm for l, w in zip(settings.style_layers, layer_w, strict=True)}
        blend = settings.style_blend or (1.0,) * len(styles)
        if len(blend) != len(styles):
            raise ValueError(f"style_blend has {len(blend)} weights for {len(styles)} style images")
        with torch.no_grad():
            self.content_targets = self.features(content, settings.content_layers)
            grams_per_style = [{k: losses.gram(v) for k, v in self.features(s, settings.style_layers).items()} for s in styles]
            # Several styles: blend their Gram targets (as jcjohnson/neural-style does).
            self.style_targets = {
                layer: losses.weighted_gram_target([g[layer] for g in grams_per_style], list(blend))
                for layer in settings.style_layers
            }
        self.layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))

    def features(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Backbone features, plus the pseudo-layer "pixels" (the image itself: plain pixel matching)."""
        deep = [l for l in layers if l != PIXELS]
        out = self.backbone.extract(x, deep, self.s.pooling) if deep else {}
        if PIXELS in layers:
            out[PIXELS] = x
        return out

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        s = self.s
        feats = self.features(x, self.layers)
        zero = x.new_zeros(())
        c = sum((losses.content_loss(feats[l], self.content_targets[l]) for l in s.content_layers), zero)
        st = sum(
            (self.layer_weights[l] * losses.style_loss(feats[l], self.style_targets[l]) for l in s.style_layers), zero
        )
        out = {"content": s.content_weight * c, "style": s.style_weight * st, "tv": s.tv_weight * losses.tv_loss(x)}
        out["total"] = out["content"] + out["style"] + out["tv"]
        return out


def _make_optimizer(x: Tensor, s: Settings) -> torch.optim.Optimizer:
    if s.optimizer == "lbfgs":
        # max_iter=1: one optimizer step is one evaluation, so the step count is honest (the PyTorch
        # tutorial's max_iter=20 silently runs up to 20 evaluations per "step"). tolerance_grad=0: a
        # step is always taken (with relative losses a tiny gradient is not a converged one).
        return torch.optim.LBFGS([x], lr=s.lr, max_iter=1, history_size=s.lbfgs_history, tolerance_grad=0.0)
    return torch.optim.Adam([x], lr=s.lr)


BOX = "fold"  # experiment switch (temporary)


def box(u: Tensor) -> Tensor:
    if BOX == "fold":
        return 1 - (u.remainder(2) - 1).abs()
    if BOX == "clamp":
        return u.clamp(0, 1)
    return u


BLOWUP = 3.0  # an evaluation this many times the best one so far (or NaN/inf) resets the optimiser


def optimise(objective: Objective, x0: Tensor, steps: int, s: Settings) -> Iterator[tuple[dict[str, float], Tensor]]:
    """`steps` evaluations of `objective` from x0; yields (losses of this evaluation, best image so far).

    The guard: the image handed out is always the best one evaluated, and a blow-up (a loss BLOWUP times
    the best, NaN or inf) puts the optimiser back on the best point with an empty memory.
    """
    u = x0.detach().clone().contiguous().requires_grad_(True)
    opt = _make_optimizer(u, s)
    best, best_loss = x0.detach(), math.inf
    for _ in range(steps):
        record: dict[str, Tensor] = {}

        def closure():
            opt.zero_grad(set_to_none=True)
            image = box(u) if s.optimizer == "lbfgs" else u
            terms = objective(image)
            terms["total"].backward()
            record.update(terms, image=image.detach())
            return terms["total"]

        opt.step(closure)
        image = record.pop("image")
        losses = {k: float(v.detach()) for k, v in record.items()}
        total = losses["total"]
        if total < best_loss:
            best, best_loss = image.clamp(0, 1).clone(), total
        elif not math.isfinite(total) or total > BLOWUP * best_loss:
            with torch.no_grad():
                u.copy_(best)
            opt = _make_optimizer(u, s)
        if s.optimizer == "adam":
            with torch.no_grad():
                u.clamp_(0, 1)  # projected Adam: its moment estimates stay valid under a projection
        yield losses, best


def _initial(s: Settings, content: Tensor, style: Tensor, gen: torch.Generator) -> Tensor:
    if s.init == "content":
        return content.clone()
    if s.init == "noise":
        return torch.rand(content.shape, generator=gen).to(content.device)
    return F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)


def level_targets(
    content: Image.Image, styles: Sequence[Image.Image], s: Settings, size: int, dev: torch.device | str = "cpu"
) -> tuple[Tensor, list[Tensor], Tensor]:
    """The content and style tensors of one coarse-to-fine level, and the picture whose colours are shown."""
    c = images.to_tensor(images.fit(content, size), dev)
    style_side = max(images.MIN_SIDE * 2, round(size * s.style_scale))
    st = [images.to_tensor(images.fit(im, style_side), dev) for im in styles]
    if not st:  # content-only objective: the init image still needs a shape
        st = [c]
    colour_source = c
    if s.preserve_colors:
        # Luminance-only transfer (Gatys et al. 2016, "Preserving Color..."): optimise a grey image
        # against grey targets whose luminance statistics match the content's, then put the
        # content's chrominance back for every image shown.
        st = [images.luminance(t, like=c) for t in st]
        c = images.luminance(c)
    return c, st, colour_source


def stylize(
    content: Image.Image,
    styles: Sequence[Image.Image],
    settings: Settings | None = None,
    backbone: Backbone | None = None,
    init_image: Image.Image | None = None,
) -> Iterator[Frame]:
    """Optimise the pixels of an image so its VGG features match `content` and its Grams match `styles`.

    Yields one Frame per step; closing the generator stops the run at once. `init_image`, if given,
    is the starting picture (resized to the content's size) instead of settings.init.
    """
    s = settings or Settings()
    if not styles and s.style_layers and s.style_weight > 0:
        raise ValueError("need at least one style image")
    backbone = backbone or load_backbone(s.weights, s.device)
    dev = backbone.device
    gen = torch.Generator().manual_seed(s.seed)
    start = time.perf_counter()
    step, x = 0, None
    for size, count in schedule(s):
        c, st, colour_source = level_targets(content, styles, s, size, dev)
        objective = Objective(backbone, s, c, st)
        if x is None and init_image is not None:
            x = images.to_tensor(init_image.resize((c.shape[-1], c.shape[-2]), Image.Resampling.LANCZOS), dev)
        elif x is None:
            x = _initial(s, c, st[0], gen)
        else:
            x = F.interpolate(x.detach(), size=c.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        for losses, x in optimise(objective, x, count, s):
            step += 1
            image = None
            if step % s.preview_every == 0 or step == s.iterations:
                shown = images.with_colors_of(x, colour_source) if s.preserve_colors else x
                image = images.to_pil(shown)
            yield Frame(
                step=step,
                total=s.iterations,
                losses=losses,
                elapsed=time.perf_counter() - start,
                size=(c.shape[-1], c.shape[-2]),
                image=image,
            )


def run(content: Image.Image, styles: Sequence[Image.Image], settings: Settings | None = None, **kw) -> Frame:
    """Run to the end and return the last frame (which carries the final image)."""
    frame = None
    for frame in stylize(content, styles, settings, **kw):
        pass
    return frame
