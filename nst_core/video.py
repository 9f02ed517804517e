"""Style transfer for clips: Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos" (GCPR 2016).

Painting each frame alone flickers: every optimisation lands somewhere else. Here frame 1 is today's run
(transfer.stylize, coarse to fine); each later frame starts from the previous painted frame warped by the optical
flow between the two input frames, and the objective gains a temporal term that keeps it close to that warped frame
wherever the flow is reliable (forward-backward consistent and off motion boundaries).

    from nst_core import clips, video
    frames = clips.read_frames("in.mp4", max_frames=48, max_side=256)
    stats = video.ClipStats()
    painted = []
    for f in video.stylize_clip(frames, [style], settings, backbone, frames_total=48, stats=stats):
        if f.output:
            painted.append(f.image)        # one finished clip frame
    # stats.warping: the result's warping error per frame pair; stats.floor: the input clip's own (its floor)

The pieces, usable alone:
  flow(a, b)                    -> (1, 2, H, W) tensor: a(p) ~ b(p + flow(p)), OpenCV's DIS, in pixels
  warp(image, flow)             -> image warped back: out(p) = image(p + flow(p)) (torch grid_sample)
  inside(flow)                  -> 1 where p + flow(p) lies in the frame
  reliability(forward, backward) -> Ruder's 0/1 mask on the pixels of the backward flow's first frame
  warping_error(a, b, flow, mask) -> Lai et al. 2018's warping error of b against a warped by flow (b -> a)
  warping_errors(inputs, painted) -> (the painted clip's mean warping error, the input clip's)
  input_warping_error(inputs)   -> the input clip's own mean warping error (the floor)

Where this departs from the paper: the temporal weight is ours (settings.TEMPORAL_WEIGHT: their weights are for 0-255
Caffe pixels); later frames are optimised at the top level only, with far fewer evaluations than frame 1 (a short
coarse-to-fine for them was not tried); only the short-term term is used (the paper's long-term terms and
multi-pass scheme were not tried: each holds several frames or passes over the clip, which a streamed run with
memory bounded by the frame size does not keep).

Flow is always computed between INPUT frames (painted frames have texture that moves on its own), at the working
size. Memory is bounded by the frame size, not the clip's length: only the previous input frame, the previous
painted frame and the flows between two frames are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import images
from .backbone import Backbone, load_backbone
from .errors import ClipError
from .schedule import later_evaluations
from .settings import TEMPORAL_WEIGHT, Settings
from .transfer import Curvature, Frame, Objective, level_targets, optimise, stylize

# The DIS preset (OpenCV's dense inverse search): benchmarks/bench_video.py measures ULTRAFAST, FAST and MEDIUM
# on a clip whose motion is known. MEDIUM's flow is the closest to the true one and its cost per frame pair at our
# working sizes is a few milliseconds against seconds of optimisation, so the cheaper presets buy nothing here.
DIS_PRESET = "medium"
_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

# Sundaram, Brox and Keutzer 2010's thresholds, as Ruder et al. use them (flows in pixels).
OCCLUSION_REL, OCCLUSION_ABS = 0.01, 0.5
BOUNDARY_REL, BOUNDARY_ABS = 0.01, 0.002


# ------------------------------------------------------------------ flow, warping, reliability


def _grey(im: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(im, Image.Image):
        return np.asarray(im.convert("L"))
    a = np.asarray(im)
    if a.ndim == 3:
        a = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114).astype(np.uint8)
    return np.ascontiguousarray(a)


def flow(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, preset: str = DIS_PRESET) -> Tensor:
    """Dense optical flow from picture `a` to picture `b` (the same size): a (1, 2, H, W) float tensor of (dx, dy)
    in pixels such that a(p) ~ b(p + flow(p)). OpenCV's DIS on the grey pictures (no weights to download)."""
    import cv2

    ga, gb = _grey(a), _grey(b)
    if ga.shape != gb.shape:
        raise ValueError(f"flow between pictures of different sizes: {ga.shape[::-1]} and {gb.shape[::-1]}")
    dis = cv2.DISOpticalFlow_create(_PRESETS[preset])
    f = dis.calc(ga, gb, None)
    return torch.from_numpy(f).permute(2, 0, 1).unsqueeze(0).contiguous()


def _grid(fl: Tensor) -> Tensor:
    """Sampling positions p + flow(p), in grid_sample's [-1, 1] coordinates (align_corners=True: -1 and 1 are the
    centres of the edge pixels)."""
    _, _, h, w = fl.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=fl.dtype, device=fl.device),
        torch.arange(w, dtype=fl.dtype, device=fl.device),
        indexing="ij",
    )
    gx = (xs + fl[:, 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + fl[:, 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack((gx, gy), dim=-1)


def warp(image: Tensor, fl: Tensor) -> Tensor:
    """Backward warping: out(p) = image(p + flow(p)), bilinear. `image` (1, C, H, W), `flow` (1, 2, H, W) in
    pixels. Positions outside the frame take the nearest edge pixel; `inside` (and `reliability`) mark them."""
    fl = fl.to(image.device, image.dtype)
    return F.grid_sample(image, _grid(fl), mode="bilinear", padding_mode="border", align_corners=True)


def inside(fl: Tensor) -> Tensor:
    """(1, 1, H, W): 1 where p + flow(p) lies inside the frame, 0 where the pixel comes from outside it."""
    _, _, h, w = fl.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=fl.dtype, device=fl.device),
        torch.arange(w, dtype=fl.dtype, device=fl.device),
        indexing="ij",
    )
    x, y = xs + fl[:, 0], ys + fl[:, 1]
    ok = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return ok.unsqueeze(1).to(fl.dtype)


def reliability(forward: Tensor, backward: Tensor) -> Tensor:
    """Ruder et al.'s per-pixel weight c, on the pixels of frame i+1: `forward` is the flow from frame i to frame
    i+1, `backward` from frame i+1 to frame i ((1, 2, H, W) each). A (1, 1, H, W) float mask of 0 and 1:

    - 0 at disocclusions: following the backward flow and then the forward flow from where it lands does not come
      back, |w + w~|^2 > 0.01 (|w|^2 + |w~|^2) + 0.5 with w the backward flow and w~ the forward flow sampled at
      p + w(p) (Sundaram et al. 2010's thresholds, in pixels);
    - 0 on motion boundaries: |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002 (of the backward flow);
    - 0 where p + w(p) lies outside frame i (nothing there to carry over);
    - 1 elsewhere."""
    w = backward
    wt = warp(forward.to(w.dtype), w)
    sq = lambda v: v.pow(2).sum(dim=1, keepdim=True)  # noqa: E731
    occluded = sq(w + wt) > OCCLUSION_REL * (sq(w) + sq(wt)) + OCCLUSION_ABS
    # Central differences (one-sided at the edges): the flow's gradient at the pixel itself.
    dx = torch.zeros_like(w)
    dy = torch.zeros_like(w)
    dx[..., 1:-1] = (w[..., 2:] - w[..., :-2]) / 2
    dx[..., 0], dx[..., -1] = w[..., 1] - w[..., 0], w[..., -1] - w[..., -2]
    dy[..., 1:-1, :] = (w[..., 2:, :] - w[..., :-2, :]) / 2
    dy[..., 0, :], dy[..., -1, :] = w[..., 1, :] - w[..., 0, :], w[..., -1, :] - w[..., -2, :]
    boundary = sq(dx) + sq(dy) > BOUNDARY_REL * sq(w) + BOUNDARY_ABS
    return ((~occluded) & (~boundary)).to(w.dtype) * inside(w)


def _tensor(im: Image.Image | Tensor) -> Tensor:
    return images.to_tensor(im) if isinstance(im, Image.Image) else im


def warping_error(painted_a: Image.Image | Tensor, painted_b: Image.Image | Tensor, fl: Tensor, mask: Tensor) -> float:
    """Lai et al. 2018's warping error: the mean over the reliable pixels (mask = 1) of the squared difference
    (summed over R, G, B, pixels in [0, 1]) between frame b and frame a warped back by `fl`, the flow from b to a
    computed between the INPUT frames (the painted ones have texture of their own). 0 for a perfectly consistent
    pair; the input clip's own figure (the same formula on its frames) is the floor a painted clip can reach."""
    a, b = _tensor(painted_a).float(), _tensor(painted_b).float()
    m = mask.to(b.device, b.dtype)
    diff = (b - warp(a, fl.to(b.device))).pow(2).sum(dim=1, keepdim=True)
    n = m.sum()
    return float((diff * m).sum() / n) if n > 0 else 0.0


def pair(a: Image.Image, b: Image.Image, preset: str = DIS_PRESET) -> tuple[Tensor, Tensor]:
    """(backward flow b -> a, reliability mask on b's pixels) for consecutive input frames a, b."""
    fw, bw = flow(a, b, preset), flow(b, a, preset)
    return bw, reliability(fw, bw)


def warping_errors(
    inputs: Iterable[Image.Image], painted: Iterable[Image.Image], preset: str = DIS_PRESET
) -> tuple[float, float]:
    """(the painted clip's mean warping error, the input clip's own: its floor), over consecutive pairs, streamed.
    The input frames are resized to the painted frames' size; the two clips are walked together (the shorter
    ends it)."""
    prev_in = prev_out = None
    painted_sum = floor_sum = 0.0
    n = 0
    for im, out in zip(inputs, painted):
        im = im.convert("RGB")
        if im.size != out.size:
            im = im.resize(out.size, Image.Resampling.LANCZOS)
        if prev_in is not None:
            bw, mask = pair(prev_in, im, preset)
            painted_sum += warping_error(prev_out, out, bw, mask)
            floor_sum += warping_error(prev_in, im, bw, mask)
            n += 1
        prev_in, prev_out = im, out
    return (painted_sum / n, floor_sum / n) if n else (0.0, 0.0)


def input_warping_error(inputs: Iterable[Image.Image], preset: str = DIS_PRESET) -> float:
    """The input clip's own mean warping error (the floor a painted clip of it is compared with), streamed."""
    prev = None
    total, n = 0.0, 0
    for im in inputs:
        im = im.convert("RGB")
        if prev is not None:
            im = im if im.size == prev.size else im.resize(prev.size, Image.Resampling.LANCZOS)
            bw, mask = pair(prev, im, preset)
            total += warping_error(prev, im, bw, mask)
            n += 1
        prev = im
    return total / n if n else 0.0


# ------------------------------------------------------------------ the temporal objective


class TemporalObjective(Objective):
    """The Gatys objective (Objective) plus Ruder et al.'s short-term temporal term,

        temporal = temporal_weight * mean(c * (x - warped)^2)

    over pixels and channels, c the reliability mask and `warped` the previous painted frame warped to this one.
    Where we depart from the paper: its gamma = 200 weighs a mean over 0-255 Caffe pixels against content and style
    losses that are sums of raw features; ours are relative errors (losses.py) and pixels are in [0, 1], so the
    weight is ours (TEMPORAL_WEIGHT), measured. The style targets are computed once per clip; `next_frame`
    swaps in the next frame's content targets and temporal target without recomputing them."""

    def __init__(
        self,
        backbone: Backbone,
        settings: Settings,
        content: Tensor,
        styles: Sequence[Tensor],
        masks: Sequence[Tensor] | None = None,
        temporal_weight: float = TEMPORAL_WEIGHT,
    ):
        super().__init__(backbone, settings, content, styles, masks)
        self.temporal_weight = float(temporal_weight)
        self.warped: Tensor | None = None
        self.reliable: Tensor | None = None

    def next_frame(self, content: Tensor, warped: Tensor | None, reliable: Tensor | None) -> None:
        """Aim at the next clip frame: its content targets, and the warped previous painting with its mask (None:
        no temporal term)."""
        with torch.no_grad():
            self.content_targets = self.features(content, self.s.content_layers)
        if self.masks:
            self.photo = content
        self.warped, self.reliable = warped, reliable

    def temporal(self, x: Tensor) -> Tensor:
        if self.warped is None or self.reliable is None or self.temporal_weight == 0:
            return x.new_zeros(())
        return self.temporal_weight * (self.reliable * (x - self.warped).pow(2)).mean()

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        out = super().__call__(x)
        total = out.pop("total")
        out["temporal"] = self.temporal(x)
        out["total"] = total + out["temporal"]
        return out


# ------------------------------------------------------------------ the clip


@dataclass
class ClipStats:
    """What stylize_clip measures as it goes (filled in place; read it at any time, also after stopping early).

    warping[i] and floor[i]: the warping error between painted frames i+1 and i+2 and between the input frames
    (the floor), with the flow and mask of the input pair. seconds[i]: the time clip frame i+1 took."""

    warping: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def mean_warping(self) -> float:
        return sum(self.warping) / len(self.warping) if self.warping else 0.0

    @property
    def mean_floor(self) -> float:
        return sum(self.floor) / len(self.floor) if self.floor else 0.0


def stylize_clip(
    frames: Iterable[Image.Image],
    styles: Sequence[Image.Image],
    settings: Settings | None = None,
    backbone: Backbone | None = None,
    *,
    frames_total: int,
    temporal_weight: float = TEMPORAL_WEIGHT,
    later_iterations: int | None = None,
    flow_preset: str = DIS_PRESET,
    stats: ClipStats | None = None,
    prefetch: bool | None = None,
) -> Iterator[Frame]:
    """Paint a clip frame by frame, consistently (Ruder et al. 2016). Yields one Frame per evaluation.

    `frames`: the input frames (e.g. clips.read_frames), read one at a time; at most `frames_total` are painted.
    Frame 1 is transfer.stylize (coarse to fine, settings.iterations evaluations). Each later frame starts from the
    previous painted frame warped by the flow between the two input frames, everywhere, as Ruder et al. start it:
    where the flow is unreliable (disocclusions, motion boundaries) the warped picture is painting in the wrong
    place, which the temporal term leaves free and the style and content terms repaint in a few steps. (Starting
    those pixels from the photo's frame instead leaves them photo-coloured after a later frame's few steps: a halo
    round a moving object, a higher style loss and a higher warping error; docs/benchmarks.md, "Video".) It is
    optimised at the top level only, for `later_iterations`
    evaluations (default later_evaluations: a quarter of frame 1's work), with the temporal term (TemporalObjective,
    `temporal_weight`; 0 paints each frame alone from the warped start).

    Every Frame has a step counter over the whole clip (total = settings.iterations + (frames_total - 1) x later),
    `part` = (clip frame, frames_total) and, on a clip frame's last step, output=True with `image` the finished
    frame (at settings.size, its colours as shown). If the input ends before frames_total, the last painted Frame
    has total = its step and part = (k, k). Closing the generator stops at once (the painted frames already yielded
    are the shorter clip) and closes `frames` if it can be closed. `stats`, if given, is filled as frames finish.

    `prefetch`: compute the next pair of input frames' flows on a helper thread while this frame is optimised
    (default: when the backbone is not on the CPU). The flows need only the input frames, and on a GPU their CPU
    work (two DIS calls and the mask: about 75 ms a frame at 512 px, 2 s at 2048 px, on a 2-core EPYC) would
    otherwise leave the lane's GPU idle for every frame, against a later frame's GPU work of a few hundred ms. On a
    CPU the helper would share the optimisation's own cores, so there they run in turn. The helper touches no
    device (numpy and CPU tensors; they are moved to the device in the run's thread, on its stream), and the frames
    painted are the same either way.
    """
    s = settings or Settings()
    if frames_total < 1:
        raise ValueError("frames_total must be at least 1")
    if temporal_weight < 0:
        raise ValueError("temporal_weight must be >= 0")
    later = later_iterations if later_iterations is not None else later_evaluations(s)
    if later < 1:
        raise ValueError("later_iterations must be at least 1")
    backbone = backbone or load_backbone(s.weights, s.device)
    dev = backbone.device
    it = iter(frames)
    beside = dev.type != "cpu" if prefetch is None else prefetch
    helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flow") if beside else None
    try:
        yield from _clip(it, styles, s, backbone, dev, frames_total, temporal_weight, later, flow_preset, stats, helper)
    finally:
        if helper is not None:
            helper.shutdown(wait=False, cancel_futures=True)
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _clip(it, styles, s, backbone, dev, n, temporal_weight, later, preset, stats, helper) -> Iterator[Frame]:
    first = next(it, None)
    if first is None:
        raise ClipError("the clip has no frames")
    nxt = next(it, None) if n > 1 else None
    count = n if nxt is not None else 1  # known short: a one-frame clip is a still
    total = s.iterations + (count - 1) * later
    start = time.perf_counter()
    t_frame = start
    prev_shown: Image.Image | None = None
    with contextlib.closing(stylize(first, styles, s, backbone)) as run:
        for f in run:
            done = f.done
            if done:
                prev_shown = f.image
                if stats is not None:  # before the yield: the caller may read it at the painted frame
                    stats.seconds.append(time.perf_counter() - t_frame)
            yield dataclasses.replace(f, total=total, elapsed=time.perf_counter() - start, part=(1, count), output=done)
    if nxt is None:
        return
    prev_in = images.fit(first.convert("RGB"), s.size)
    if prev_in.size != prev_shown.size:  # the painted frame's size is the frame's size at settings.size
        prev_in = prev_in.resize(prev_shown.size, Image.Resampling.LANCZOS)
    prev_x = images.to_tensor(prev_shown, dev)
    if s.preserve_colors:
        prev_x = images.luminance(prev_x)  # the optimisation's own (grey) picture
    masks = [images.check_mask(images.decode_mask(m), first.size, f"mask {i + 1}") for i, m in enumerate(s.masks)]
    objective: TemporalObjective | None = None
    curvature = Curvature()  # each later frame's first L-BFGS step from the one before's curvature (same size)
    step, k = s.iterations, 1

    def ready(im: Image.Image | None) -> Image.Image | None:  # an input frame at the painted frames' size
        return None if im is None else im.convert("RGB").resize(prev_in.size, Image.Resampling.LANCZOS)

    cur_in = ready(nxt)
    ahead: Future | None = None  # the flows of (cur_in, the frame after it), from the helper
    while cur_in is not None and k < n:
        k += 1
        t_frame = time.perf_counter()
        nxt = ready(next(it, None)) if k < n else None
        last = nxt is None or k == n
        if last and k < n:  # the input ended early: this frame ends the clip
            total = step + later
        bw_cpu, mask_cpu = ahead.result() if ahead is not None else pair(prev_in, cur_in, preset)
        ahead = helper.submit(pair, cur_in, nxt, preset) if helper is not None and not last else None
        bw, mask = bw_cpu.to(dev), mask_cpu.to(dev)
        if objective is None:
            c, st, colour_source = level_targets(cur_in, styles, s, max(cur_in.size), dev)
            mask_t = [images.mask_tensor(m, (c.shape[-1], c.shape[-2]), dev) for m in masks]
            objective = TemporalObjective(backbone, s, c, st, mask_t, temporal_weight)
        else:  # the paintings' targets are the objective's already: only this frame's content
            c, _, colour_source = level_targets(cur_in, (), s, max(cur_in.size), dev)
        at = (c.shape[-1], c.shape[-2])
        warped = warp(prev_x, bw)
        objective.next_frame(c, warped, mask)
        x0 = warped
        best = x0
        for i, (terms, best) in enumerate(optimise(objective, x0, later, s, curvature), start=1):
            step += 1
            done_here = i == later
            image = None
            if done_here or i % s.preview_every == 0:
                shown = images.with_colors_of(best, colour_source) if s.preserve_colors else best
                image = images.to_pil(shown)
            if done_here and stats is not None:  # before the yield: the caller may read it at the painted frame
                stats.seconds.append(time.perf_counter() - t_frame)
                stats.warping.append(warping_error(prev_shown, image, bw_cpu, mask_cpu))  # (PIL pictures: on the CPU)
                stats.floor.append(warping_error(prev_in, cur_in, bw_cpu, mask_cpu))
            yield Frame(
                step=step,
                total=total,
                losses=terms,
                elapsed=time.perf_counter() - start,
                size=at,
                image=image,
                part=(k, k if last and k < n else n),
                output=done_here,
            )
            if done_here:
                prev_shown = image
        prev_x = best.detach()
        prev_in, cur_in = cur_in, nxt
