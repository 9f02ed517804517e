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
    # A run made of parts (a clip: video.stylize_clip): (this step's part, 1-based; parts), and whether this step
    # finished one of the run's outputs (a painted clip frame), `image` being that output.
    part: tuple[int, int] | None = None
    output: bool = False

    @property
    def done(self) -> bool:
        return self.step == self.total


# Where no painting's mask reaches, the picture keeps the photo's own pixels with this weight (relative to the content
# term's 1). Where we depart from Gatys et al. 2017: their spatial control leaves such regions to the content loss
# alone, which at relu4_2 keeps the layout, not the pixels, and lets the paintings' textures seep in through the
# deep layers' receptive fields; a user who masks part of a photo out expects that part to stay the photo.
KEEP_WEIGHT = 100.0


class Objective:
    """The weighted Gatys objective for fixed targets at one size. With `masks` (one (1, 1, h, w) tensor per
    style image, at this size), each painting's Gram matrices are matched inside its own region only (guided Gram
    matrices, losses.guided_gram), the content term still counts everywhere, and where no mask reaches the photo's
    pixels are kept (KEEP_WEIGHT)."""

    def __init__(
        self,
        backbone: Backbone,
        settings: Settings,
        content: Tensor,
        styles: Sequence[Tensor],
        masks: Sequence[Tensor] | None = None,
    ):
        self.backbone, self.s = backbone, settings
        self.bf16 = backbone.uses_bf16(settings.precision)
        layer_w = settings.style_layer_weights or (1.0,) * len(settings.style_layers)
        norm = sum(layer_w) or 1.0  # a weighted mean over layers: adding a layer does not change the scale
        self.layer_weights = {l: w / norm for l, w in zip(settings.style_layers, layer_w, strict=True)}
        blend = settings.style_blend or (1.0,) * len(styles)
        if len(blend) != len(styles):
            raise ValueError(f"style_blend has {len(blend)} weights for {len(styles)} style images")
        self.masks = list(masks or [])
        if self.masks and len(self.masks) != len(styles):
            raise ValueError(f"{len(self.masks)} masks for {len(styles)} style images: one mask per painting")
        with torch.no_grad():
            self.content_targets = self.features(content, settings.content_layers)
            self.grams_per_style = [
                {k: losses.gram(v) for k, v in self.features(s, settings.style_layers).items()} for s in styles
            ]
            # Several styles: blend their Gram targets (as jcjohnson/neural-style does); with masks, each painting
            # rules its own region instead (the blend weights do not apply).
            self.style_targets = {
                layer: losses.weighted_gram_target([g[layer] for g in self.grams_per_style], list(blend))
                for layer in settings.style_layers
            }
        if self.masks:
            self.photo = content
            self.keep = 1 - torch.stack(self.masks).amax(dim=0)  # where no painting goes
            self._grids: dict[tuple, Tensor] = {}
        self.layers = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))

    def _grid(self, i: int, shape) -> Tensor:
        """Mask i at a layer's grid: the average over each cell (the layer sees the region it covers)."""
        key = (i, tuple(shape[-2:]))
        if key not in self._grids:
            self._grids[key] = F.adaptive_avg_pool2d(self.masks[i], shape[-2:])
        return self._grids[key]

    def _masked_style(self, feats: dict[str, Tensor], zero: Tensor) -> Tensor:
        """Each painting's style term inside its region, weighted by the region's share of the picture: a mask of
        ones gives the unmasked term, and a region's pixels feel the same pull whatever its size."""
        total = zero
        for i, grams in enumerate(self.grams_per_style):
            for l in self.s.style_layers:
                m = self._grid(i, feats[l].shape)
                term = (losses.guided_gram(feats[l], m) - grams[l]).pow(2).mean() / (grams[l].pow(2).mean() + 1e-8)
                total = total + self.layer_weights[l] * m.mean() * term
        return total

    def features(self, x: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Backbone features, plus the pseudo-layer "pixels" (the image itself: plain pixel matching)."""
        deep = [l for l in layers if l != PIXELS]
        out = self.backbone.extract(x, deep, self.s.pooling, self.bf16) if deep else {}
        if PIXELS in layers:
            out[PIXELS] = x
        return out

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        s = self.s
        feats = self.features(x, self.layers)
        zero = x.new_zeros(())
        c = sum((losses.content_loss(feats[l], self.content_targets[l]) for l in s.content_layers), zero)
        if self.masks:
            st = self._masked_style(feats, zero)
        else:
            st = sum(
                (self.layer_weights[l] * losses.style_loss(feats[l], self.style_targets[l]) for l in s.style_layers),
                zero,
            )
        out = {"content": s.content_weight * c, "style": s.style_weight * st, "tv": s.tv_weight * losses.tv_loss(x)}
        if self.masks:
            out["keep"] = KEEP_WEIGHT * losses.masked_pixel_loss(x, self.photo, self.keep)
        out["total"] = sum(out.values())
        return out


def _skip_dynamo_import() -> None:
    """Spare each process the import of torch._dynamo (a large share of the CLI's start-up) that torch.optim's
    @_disable_dynamo methods do on their first call. Nothing here is compiled, so "disabled" is the plain
    method; this only pre-fills the cache those wrappers keep (torch/_compile.py). If torch changes that
    cache, the wrappers simply import torch._dynamo themselves."""
    for method in (torch.optim.Optimizer.add_param_group, torch.optim.Optimizer.zero_grad):
        plain = getattr(method, "__wrapped__", None)
        if plain is not None and not hasattr(plain, "__dynamo_disable"):
            setattr(plain, "__dynamo_disable", plain)


_skip_dynamo_import()


def to_host(x: Tensor) -> list[float]:
    """A 1-D tensor's values as Python floats: the one host sync a step makes (on a GPU each float() or .item() of a
    tensor waits for the device; one .tolist() of the stacked numbers waits once)."""
    return x.tolist()


class LBFGS:
    """torch.optim.LBFGS with max_iter=1, tolerance_grad=0 and no line search, as this file uses it (one evaluation
    per step, so the step count is honest: the PyTorch tutorial's max_iter=20 silently runs up to 20 evaluations per
    "step"; a tiny gradient of relative losses is not a converged one), written so that a step makes no host sync.
    torch's step reads about 2 x history + 4 numbers on the host (its two-loop's `alpha`s are tensors turned into
    Python numbers, `if ys > 1e-10`, `if gtd > ...`, `float(loss)`): on a GPU each is a wait for the device. Here they
    stay on the device (torch.where instead of `if`). Where it differs from torch: a curvature pair with s'y <= 1e-10,
    which torch skips, is kept with no weight (1/s'y taken as 0), so it takes a place in the history without bending
    the direction; and a zero gradient takes a step of zero instead of ending the step early."""

    def __init__(self, param: Tensor, lr: float, history_size: int):
        self.param, self.history = param, history_size
        self.param_groups = [{"lr": lr}]
        self.state: dict[Tensor, dict] = {param: {}}  # what torch keeps, by torch's names (Curvature reads them)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.param.grad = None

    @torch.no_grad()
    def step(self, closure) -> Tensor:
        with torch.enable_grad():
            loss = closure()
        p, st, lr = self.param, self.state[self.param], self.param_groups[0]["lr"]
        g = p.grad.reshape(-1)
        st["n_iter"] = st.get("n_iter", 0) + 1
        if st["n_iter"] == 1:
            d, dirs, stps, ro, h_diag = g.neg(), [], [], [], 1.0
        else:
            dirs, stps, ro, h_diag = st["old_dirs"], st["old_stps"], st["ro"], st["H_diag"]
            y = g.sub(st["prev_flat_grad"])
            s = st["d"].mul(st["t"])
            ys = y.dot(s)
            if len(dirs) == self.history:
                dirs.pop(0), stps.pop(0), ro.pop(0)
            curved = ys > 1e-10
            dirs.append(y), stps.append(s), ro.append(torch.where(curved, ys.reciprocal(), 0.0))
            h_diag = torch.where(curved, ys / y.dot(y), h_diag)
            # The two-loop recursion (Nocedal & Wright, algorithm 7.4), its alphas kept as tensors.
            q = g.neg()
            al = [None] * len(dirs)
            for i in range(len(dirs) - 1, -1, -1):
                al[i] = stps[i].dot(q) * ro[i]
                q.sub_(dirs[i] * al[i])
            d = r = q.mul(h_diag)
            for i in range(len(dirs)):
                be_i = dirs[i].dot(r) * ro[i]
                r.add_(stps[i] * (al[i] - be_i))
        if st.get("prev_flat_grad") is None:
            st["prev_flat_grad"] = g.clone(memory_format=torch.contiguous_format)
        else:
            st["prev_flat_grad"].copy_(g)
        # torch's cautious first step, min(1, 1/|g|_1) x lr, and lr after it.
        t = torch.clamp(g.abs().sum().reciprocal(), max=1.0) * lr if st["n_iter"] == 1 else lr
        descent = g.dot(d) <= -1e-9  # torch takes no step along a direction that does not descend
        p.add_(d.view_as(p) * torch.where(descent, t, 0.0))
        st.update(d=d, t=t, old_dirs=dirs, old_stps=stps, ro=ro, H_diag=h_diag)
        return loss


def _make_optimizer(x: Tensor, s: Settings, lr: float):
    if s.optimizer == "lbfgs":
        return LBFGS(x, lr, s.lbfgs_history)
    return torch.optim.Adam([x], lr=lr)


def box(u: Tensor) -> Tensor:
    """Fold any real number into [0, 1] (a triangle wave: 1.1 -> 0.9, -0.2 -> 0.2, 0.3 -> 0.3).

    How L-BFGS meets the pixel box. Clamping the pixels after each step (as the PyTorch tutorial does)
    leaves L-BFGS's curvature pairs describing steps that were never taken: on some CPUs the loss then
    climbs back to ten times its best (pytorch/tutorials#143). Here L-BFGS optimises u without bounds and
    the objective is evaluated on box(u), the very image that is shown and saved, so every pair is true.
    Unlike box = clamp, whose zero gradient outside [0, 1] can strand a pixel there, a folded pixel
    still feels the objective. Folding ends about where clamping does on ordinary runs and, unlike
    optimising u itself and clamping only what is shown, does not blow up (docs/benchmarks.md, "The
    optimiser").
    """
    return 1 - (u.remainder(2) - 1).abs()


# The guard, per optimiser: (blow-up: a loss this many times the best so far, or NaN/inf, restarts the
# optimiser from the best point; the step size is divided by `shrink` at a restart and multiplied by `grow`
# after each new best, up to Settings.lr). L-BFGS without a line search has harmless small upticks, so only
# a real blow-up restarts it (its memory is worth keeping). Adam is kept monotone: its first steps move
# every pixel by about lr whatever the gradient, which from a good start (the style image) only does harm.
GUARD = {"lbfgs": (1.5, 2.0, 1.0), "adam": (1.0, 4.0, 2.0)}


@dataclass
class Curvature:
    """L-BFGS's scale of the inverse Hessian (its H_diag, s'y / y'y of its newest pair) at the end of one
    coarse-to-fine level, for the first step of the next.

    Without it each level's first L-BFGS step is torch's cautious min(1, 1/|g|_1) * lr, a tiny step: the
    level's second evaluation is spent almost where its first was. Every term of the objective is a mean
    over pixels, so its curvature per pixel falls as the pixel count grows and the inverse Hessian's scale
    grows with it: the next level starts from gamma * (its pixels / these pixels). It ends runs lower, and
    half or twice that scale does no better (docs/benchmarks.md, "The optimiser").
    """

    gamma: float | None = None
    pixels: int = 0

    def first_step(self, pixels: int) -> float | None:
        return None if self.gamma is None else self.gamma * pixels / self.pixels

    def remember(self, opt, u: Tensor) -> None:
        state = opt.state[u]
        if not state.get("old_dirs"):
            return
        # One host read for H_diag and the pairs' weights. A pair with weight 0 is one torch would have skipped: with
        # every stored pair such, torch's history would be empty and H_diag its initial 1, not a measured scale.
        h_diag, *weights = to_host(torch.stack([torch.as_tensor(state["H_diag"]), *state["ro"]]))
        if any(w != 0 for w in weights):
            self.gamma, self.pixels = h_diag, u.shape[-1] * u.shape[-2]


def optimise(
    objective: Objective, x0: Tensor, steps: int, s: Settings, curvature: Curvature | None = None
) -> Iterator[tuple[dict[str, float], Tensor]]:
    """`steps` evaluations of `objective` from x0; yields (losses of this evaluation, best image so far).

    The guard (GUARD): the image handed out is always the best one evaluated, and a blow-up (a loss far
    above the best, NaN or inf) puts the optimiser back on the best point with an empty memory and a smaller
    step size (backtracking: the same step again would only blow up again). The restart replays the
    best point's stored gradient instead of evaluating it again, so no step is spent on it.

    `curvature` (L-BFGS only) carries the inverse Hessian's scale from the level before into the first
    step and hands this level's on at the end.
    """
    u = x0.detach().clone().contiguous().requires_grad_(True)
    shown = box if s.optimizer == "lbfgs" else (lambda v: v)  # Adam is projected instead (below)
    blowup, shrink, grow = GUARD[s.optimizer]
    lr = s.lr
    opt = _make_optimizer(u, s, lr)
    best_u = best_grad = best = None
    best_loss = math.inf
    lbfgs_carry = curvature is not None and s.optimizer == "lbfgs"
    carried = curvature.first_step(u.shape[-1] * u.shape[-2]) if lbfgs_carry else None
    for i in range(steps):
        record: dict[str, Tensor] = {}

        def closure():
            opt.zero_grad(set_to_none=True)
            record["u"] = u.detach().clone()  # the optimiser steps u in place after this evaluation
            terms = objective(shown(u))
            terms["total"].backward()
            record.update(terms)
            return terms["total"]

        first = i == 0 and carried is not None  # the first step from the carried curvature (Curvature)
        if first:
            with torch.enable_grad():
                closure()
        else:
            opt.step(closure)
        u_k = record.pop("u")
        losses = dict(zip(record, to_host(torch.stack([v.detach() for v in record.values()])), strict=True))
        total = losses["total"]
        if first:
            opt = _restart(u, u_k, u.grad, total, s, lr, carried)
        if total < best_loss:
            best_u, best_grad, best_loss, best = u_k, u.grad.detach().clone(), total, shown(u_k).clamp(0, 1)
            if lr < s.lr:
                lr = min(s.lr, lr * grow)
                opt.param_groups[0]["lr"] = lr
        elif best is not None and (not math.isfinite(total) or total > blowup * best_loss):
            lr /= shrink
            opt = _restart(u, best_u, best_grad, best_loss, s, lr)
        if s.optimizer == "adam":
            with torch.no_grad():
                u.clamp_(0, 1)  # projected Adam: its moment estimates stay valid under a projection
        yield losses, best if best is not None else x0
    if lbfgs_carry:
        curvature.remember(opt, u)


def _restart(u: Tensor, at: Tensor, grad: Tensor, loss: float, s: Settings, lr: float, first_step: float | None = None):
    """A fresh optimiser at `at` that has already taken its first step there, from the stored gradient.

    That step is torch's own (min(1, 1/|g|_1) * lr along -grad for L-BFGS) or, given `first_step`, that
    multiple of -grad (the learning rate that makes torch take it, then lr again)."""
    with torch.no_grad():
        u.copy_(at)
    first_lr = lr if first_step is None else first_step * max(1.0, float(grad.abs().sum()))
    opt = _make_optimizer(u, s, first_lr)

    def replay():
        u.grad = grad.clone()
        return torch.tensor(loss)

    opt.step(replay)
    opt.param_groups[0]["lr"] = lr
    return opt


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
    st = [images.to_tensor(images.fit(im, s.style_side(size)), dev) for im in styles]
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
    masks = [images.check_mask(images.decode_mask(m), content.size, f"mask {i + 1}") for i, m in enumerate(s.masks)]
    if masks and len(masks) != len(styles):
        raise ValueError(f"{len(masks)} masks for {len(styles)} paintings: give one mask per painting, in order")
    backbone = backbone or load_backbone(s.weights, s.device)
    dev = backbone.device
    gen = torch.Generator().manual_seed(s.seed)
    start = time.perf_counter()
    step, x = 0, None
    curvature = Curvature()
    for size, count in schedule(s):
        c, st, colour_source = level_targets(content, styles, s, size, dev)
        at = (c.shape[-1], c.shape[-2])
        objective = Objective(backbone, s, c, st, [images.mask_tensor(m, at, dev) for m in masks])
        if x is None and init_image is not None:
            x = images.to_tensor(init_image.resize((c.shape[-1], c.shape[-2]), Image.Resampling.LANCZOS), dev)
        elif x is None:
            x = _initial(s, c, st[0], gen)
        else:
            x = F.interpolate(x.detach(), size=c.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        for terms, best in optimise(objective, x, count, s, curvature):
            step += 1
            image = None
            if step % s.preview_every == 0 or step == s.iterations:
                shown = images.with_colors_of(best, colour_source) if s.preserve_colors else best
                image = images.to_pil(shown)
            yield Frame(
                step=step,
                total=s.iterations,
                losses=terms,
                elapsed=time.perf_counter() - start,
                size=(c.shape[-1], c.shape[-2]),
                image=image,
            )
        x = best  # the next level starts from this level's best picture


def run(content: Image.Image, styles: Sequence[Image.Image], settings: Settings | None = None, **kw) -> Frame:
    """Run to the end and return the last frame (which carries the final image)."""
    frame = None
    for frame in stylize(content, styles, settings, **kw):
        pass
    return frame
