"""The classroom Lab: experiments that show why style transfer works, built on stylize() and losses.

Each optimising experiment is a Plan: a list of small stylize() runs ("cells") shown side by side.
run_plan() runs them one after another and yields Frames whose image is the grid so far, so the
Lab uses the same runner, progress display and GIF writer as the main page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import images
from ..schedule import later_evaluations, pixel_evals
from ..settings import DEFAULT_STYLE_LAYERS, LR, PIXELS, Settings

if TYPE_CHECKING:  # torch is imported by the functions that run the network: building a Plan (the server) needs none
    import torch

    from ..backbone import Backbone
    from ..transfer import Frame

DEPTHS = DEFAULT_STYLE_LAYERS  # the style layers, shallow to deep: one more in each experiment's column


@dataclass(frozen=True)
class Cell:
    label: str
    settings: Settings | None  # None: a picture shown as it is (no run)
    content: Image.Image
    styles: tuple[Image.Image, ...] = ()
    init_image: Image.Image | None = None


@dataclass(frozen=True)
class Plan:
    title: str
    cells: tuple[Cell, ...]
    cols: int
    row_labels: tuple[str, ...] = ()  # shown left of each row (the trade-off grid)
    notes: dict = field(default_factory=dict)
    cacheable: ClassVar[bool] = True  # the same pictures and settings give the same frames (serve.results.Results)

    @property
    def iterations(self) -> int:
        return sum(c.settings.iterations for c in self.cells if c.settings)

    def frames(self, backbone) -> Iterator:
        """The runner's task interface: a Plan runs on a worker like a StyleTask."""
        return run_plan(self, backbone)

    def work(self) -> tuple[float, int]:
        """(pixel-evaluations, steps) of the whole plan, for the server's cost model."""
        aspect = [min(c.content.size) / max(c.content.size) for c in self.cells]
        return sum(pixel_evals(c.settings, a) for c, a in zip(self.cells, aspect) if c.settings), self.iterations


# ------------------------------------------------------------------ the experiments


def spot_the_difference_pair(image: Image.Image, seed: int = 0) -> Image.Image:
    """A copy of `image` with three small changes (a patch swapped, a tint, a missing spot)."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    w, h = out.size
    s = max(8, min(w, h) // 6)
    draw = ImageDraw.Draw(out)
    x, y = (int(v) for v in rng.integers([0, 0], [w - s, h - s]))
    x2, y2 = (int(v) for v in rng.integers([0, 0], [w - s, h - s]))
    out.paste(image.crop((x2, y2, x2 + s, y2 + s)).rotate(180), (x, y))
    x, y = (int(v) for v in rng.integers([0, 0], [w - s, h - s]))
    tint = Image.new("RGB", (s, s), (255, 40, 40))
    out.paste(Image.blend(out.crop((x, y, x + s, y + s)), tint, 0.5), (x, y))
    x, y = (int(v) for v in rng.integers([0, 0], [w - s, h - s]))
    draw.ellipse([x, y, x + s // 2, y + s // 2], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return out


def pixel_match(a: Image.Image, b: Image.Image, size: int = 128, iterations: int = 60) -> Plan:
    """1. The optimiser alone: change A's pixels to reduce the plain squared difference to B."""
    b = images.fit(b, size)
    s = Settings(
        size=size,
        iterations=iterations,
        content_layers=(PIXELS,),
        style_layers=(),
        style_weight=0,
        tv_weight=0,
        optimizer="adam",
        lr=LR["adam"],
        scales=1,
        preview_every=max(1, iterations // 30),
    )
    return Plan("A becomes B", (Cell("A, optimised towards B", s, b, init_image=a),), cols=1)


def layer_reconstructions(content: Image.Image, size: int = 128, iterations: int = 80, layers=DEPTHS) -> Plan:
    """2. What each layer sees: from noise, match the photo's features at one layer only."""
    cells = tuple(
        Cell(
            f"from {layer}",
            Settings(
                size=size,
                iterations=iterations,
                content_layers=(layer,),
                style_layers=(),
                style_weight=0,
                tv_weight=0,
                init="noise",
                scales=1,
                preview_every=max(1, iterations // 10),
            ),
            content,
        )
        for layer in layers
    )
    return Plan("Reconstructions of the photo", cells, cols=len(cells))


def style_alone(style: Image.Image, size: int = 128, iterations: int = 80, depths=DEPTHS) -> Plan:
    """3. Style alone: from noise, match only the Gram matrices of relu1_1 ... up to each depth."""
    style = images.fit(style, size)
    cells = tuple(
        Cell(
            f"up to {depths[k]}",
            Settings(
                size=size,
                iterations=iterations,
                content_layers=(),
                style_layers=depths[: k + 1],
                style_weight=1.0,
                tv_weight=0,
                init="noise",
                scales=1,
                preview_every=max(1, iterations // 10),
            ),
            style,
            (style,),
        )
        for k in range(len(depths))
    )
    return Plan("Textures of growing scale", cells, cols=len(cells))


def tradeoff_grid(
    content: Image.Image,
    style: Image.Image,
    size: int = 96,
    iterations: int = 40,
    style_weights: Sequence[float] = (1, 10, 100, 1000),
    depths=DEPTHS,
) -> Plan:
    """4. The content/style trade-off: rows are the style/content weight ratio, columns the style layers."""
    cells = tuple(
        Cell(
            f"up to {depths[k]}",
            Settings(
                size=size,
                iterations=iterations,
                style_weight=float(w),
                style_layers=depths[: k + 1],
                init="noise",
                scales=1,
                preview_every=iterations,
            ),
            content,
            (style,),
        )
        for w in style_weights
        for k in range(len(depths))
    )
    rows = tuple(f"content/style 1e{-round(np.log10(w))}" if w != 1 else "content/style 1" for w in style_weights)
    return Plan("Content vs style", cells, cols=len(depths), row_labels=rows)


def half_painted(content: Image.Image, style: Image.Image, size: int = 128, iterations: int = 60) -> Plan:
    """6. Spatial control (Gatys et al. 2017): the same run everywhere, then only on the right half of the photo
    (a mask: guided Gram matrices there, the photo kept on the left, the content term everywhere)."""
    photo = images.fit(content, size)
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (photo.width // 2, 0, photo.width, photo.height))
    s = Settings(size=size, iterations=iterations, preview_every=max(1, iterations // 10))
    cells = (
        Cell("the mask", None, mask.convert("RGB")),
        Cell("painted where it is white", s.replace(masks=(images.encode_mask(mask),)), photo, (style,)),
        Cell("painted everywhere", s, photo, (style,)),
    )
    return Plan("Half a photo painted", cells, cols=3)


def run_plan(plan: Plan, backbone: Backbone) -> Iterator[Frame]:
    """Run the cells one after another; every frame with an image carries the whole grid so far."""
    from ..transfer import Frame, stylize

    cell_px = max(c.settings.size for c in plan.cells if c.settings) + 8
    w, h = plan.cells[-1].content.size
    cell_h = round((cell_px - 8) * min(1.0, h / w)) + 8
    results: list[Image.Image | None] = [c.content if c.settings is None else None for c in plan.cells]
    total, step, start = plan.iterations, 0, time.perf_counter()
    for i, cell in enumerate(plan.cells):
        if cell.settings is None:
            continue
        for f in stylize(cell.content, list(cell.styles), cell.settings, backbone, init_image=cell.init_image):
            step += 1
            grid = None
            if f.image is not None:
                results[i] = f.image
                grid = grid_image(results, [c.label for c in plan.cells], plan.cols, cell_px, plan.row_labels, cell_h)
            yield Frame(step, total, f.losses, time.perf_counter() - start, f.size, grid)


# ------------------------------------------------------------------ inside the network


def feature_maps(backbone: Backbone, image: Image.Image, layer: str, k: int = 16, size: int = 224) -> Image.Image:
    """The k most active feature maps of `layer` (by mean activation), each scaled to [0, 1], as a grid."""
    import torch

    x = images.to_tensor(images.fit(image, size), backbone.device)
    with torch.no_grad():
        f = backbone.extract(x, [layer])[layer][0]
    top = f.mean(dim=(1, 2)).argsort(descending=True)[:k]
    tiles = []
    for c in top.tolist():
        m = f[c]
        m = (m - m.min()) / (m.max() - m.min() + 1e-8)
        tiles.append(
            colormap(m.cpu().numpy()).resize((96, round(96 * m.shape[0] / m.shape[1])), Image.Resampling.NEAREST)
        )
    return grid_image(tiles, [f"#{c}" for c in top.tolist()], cols=int(np.ceil(np.sqrt(k))), cell_px=96)


def gram_matrix(backbone: Backbone, image: Image.Image, layer: str, size: int = 224) -> torch.Tensor:
    import torch

    from .. import losses

    x = images.to_tensor(images.fit(image, size), backbone.device)
    with torch.no_grad():
        return losses.gram(backbone.extract(x, [layer])[layer])[0].cpu()


def gram_heatmap(g: torch.Tensor, channels: int = 64, px: int = 320) -> Image.Image:
    """The first `channels` x `channels` block of a Gram matrix as a heat map (log scale)."""
    block = g[:channels, :channels].clamp(min=0).log1p().numpy()
    block = (block - block.min()) / (block.max() - block.min() + 1e-8)
    return colormap(block).resize((px, px), Image.Resampling.NEAREST)


def gram_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative Gram difference (the style loss of one layer): 0 = same texture statistics."""
    return float((a - b).pow(2).mean() / (b.pow(2).mean() + 1e-8))


def crops(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """Two non-overlapping halves of one picture (left and right)."""
    w, h = image.size
    return image.crop((0, 0, w // 2, h)), image.crop((w - w // 2, 0, w, h))


# ------------------------------------------------------------------ drawing


_ANCHORS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)


def colormap(a: np.ndarray) -> Image.Image:
    """Values in [0, 1] -> RGB through a viridis-like ramp (dark blue -> green -> yellow)."""
    t = np.clip(a, 0, 1) * (len(_ANCHORS) - 1)
    i = np.minimum(t.astype(int), len(_ANCHORS) - 2)
    frac = (t - i)[..., None]
    rgb = _ANCHORS[i] * (1 - frac) + _ANCHORS[i + 1] * frac
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def grid_image(
    tiles: Sequence[Image.Image | None],
    labels: Sequence[str],
    cols: int,
    cell_px: int,
    row_labels: Sequence[str] = (),
    cell_h: int | None = None,
) -> Image.Image:
    """Tiles in a grid with a caption under each; empty (None) tiles are left grey."""
    cell_h = cell_h or cell_px
    rows = (len(tiles) + cols - 1) // cols
    font = ImageFont.load_default(size=12)
    side, cap = (130 if row_labels else 0), 18
    sheet = Image.new("RGB", (side + cols * cell_px, rows * (cell_h + cap)), (246, 244, 239))
    draw = ImageDraw.Draw(sheet)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        r, c = divmod(i, cols)
        x, y = side + c * cell_px, r * (cell_h + cap)
        if tile is None:
            draw.rectangle([x + 2, y + 2, x + cell_px - 3, y + cell_h - 3], fill=(225, 222, 214))
        else:
            t = tile.copy()
            t.thumbnail((cell_px - 4, cell_h - 4))
            sheet.paste(t, (x + (cell_px - t.width) // 2, y + (cell_h - t.height) // 2))
        draw.text((x + 4, y + cell_h + 2), label, fill=(40, 40, 40), font=font)
    for r, label in enumerate(row_labels):
        draw.text((6, r * (cell_h + cap) + cell_h // 2 - 6), label, fill=(40, 40, 40), font=font)
    return sheet


# ------------------------------------------------------------------ why videos flicker


@dataclass(frozen=True)
class Flicker:
    """7. Why videos flicker (Ruder et al. 2016): the same short clip painted frame by frame, each frame alone from
    its own photo (every optimisation lands somewhere else), and painted with the temporal term (each frame starts
    from the one before moved along the optical flow, and is kept close to it where the flow is reliable). Two rows
    of frames; the last frame carries both clips' warping errors and the input clip's own (the floor) in its losses
    ("alone", "temporal", "floor"), and `notes` says what they mean."""

    title: str
    clip: bytes
    style: Image.Image
    settings: Settings
    count: int  # clip frames, in both rows
    later_iterations: int  # evaluations of each later frame with the temporal term
    notes: dict = field(default_factory=dict)
    cacheable: ClassVar[bool] = True

    @property
    def iterations(self) -> int:
        alone, temporal = self.count * self.settings.iterations, self.settings.iterations
        return alone + temporal + (self.count - 1) * self.later_iterations

    def work(self) -> tuple[float, int]:
        each = pixel_evals(self.settings)
        later = (self.count - 1) * self.later_iterations * self.settings.size**2
        return self.count * each + each + later, self.iterations

    def frames(self, backbone) -> Iterator:
        return run_flicker(self, backbone)


def why_videos_flicker(
    clip: bytes, style: Image.Image, size: int = 128, frames: int = 6, iterations: int = 60, info=None
) -> Flicker:
    """Experiment 7 on `clip` (`info`: its probe, if the caller has it)."""
    from .. import clips

    info = info or clips.probe(clip)
    s = Settings(size=size, iterations=iterations, preview_every=max(1, iterations // 6), init="content")
    count = clips.frame_count(frames, info)
    notes = {
        "read": "The warping error (Lai et al. 2018) compares each painted frame with the one before moved along the "
        "optical flow of the photo's frames: 0 is perfectly steady. The photo's frames have one of their own "
        "(light and edges move too): no painted clip goes below that floor."
    }
    return Flicker("Why videos flicker", bytes(clip), style, s, count, later_evaluations(s), notes)


def run_flicker(plan: Flicker, backbone: Backbone) -> Iterator[Frame]:
    """Row 1: each frame alone (transfer.stylize from its own photo); row 2: video.stylize_clip. One Frame per
    evaluation over both; every frame with an image carries both rows so far."""
    from .. import clips, video
    from ..transfer import Frame, stylize

    s, n = plan.settings, plan.count
    frames = list(clips.read_frames(plan.clip, max_frames=n, max_side=s.size))  # a few small frames: kept
    n = len(frames)
    tiles: list[Image.Image | None] = [None] * (2 * n)
    labels = [f"alone {i + 1}" for i in range(n)] + [f"temporal {i + 1}" for i in range(n)]
    w, h = images.fit(frames[0], s.size).size
    cell_px = s.size + 8
    cell_h = round(s.size * min(1.0, h / w)) + 8
    total = plan.iterations - (plan.count - n) * (s.iterations + plan.later_iterations)
    step, start = 0, time.perf_counter()

    def grid():
        return grid_image(tiles, labels, n, cell_px, ("each frame alone", "with the temporal term"), cell_h)

    for i, photo in enumerate(frames):
        for f in stylize(photo, [plan.style], s, backbone):
            step += 1
            if f.done:
                tiles[i] = f.image
            yield Frame(step, total, f.losses, time.perf_counter() - start, f.size, grid() if f.done else None)
    stats = video.ClipStats()
    run = video.stylize_clip(
        frames, [plan.style], s, backbone, frames_total=n, later_iterations=plan.later_iterations, stats=stats
    )
    for f in run:
        step += 1
        if f.output:
            tiles[n + f.part[0] - 1] = f.image
        last = step == total
        losses = dict(f.losses)
        if last:
            alone, floor = video.warping_errors(frames, tiles[:n])
            losses.update(alone=alone, temporal=stats.mean_warping, floor=floor)
        yield Frame(step, total, losses, time.perf_counter() - start, f.size, grid() if f.output else None)
