"""Clips (nst_core.video): DIS presets against a known flow, time per frame (the first against the rest), and the
warping error painted with the temporal term against the same frames painted alone (run by hand; prints figures).

Two clips: the synthetic one of benchmarks/make_sample_clip.render (a pan and zoom over chelsea.png with a cup
sliding across it: its true flow is known), as rendered, and the sample clip samples/clips/chelsea_pan.mp4 (the
same frames through H.264). Each warping error is given with the true flow (and the mask from it) and with DIS's.

    .venv/bin/python -m benchmarks.bench_video [--size 256] [--frames 8] [--full 48]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import ROOT, machine
from benchmarks.make_sample_clip import render
from nst_core import Settings, clips, load_backbone, load_image, video
from nst_core.schedule import later_evaluations
from nst_core.settings import TEMPORAL_WEIGHT
from nst_core.transfer import run

SAMPLE = ROOT / "samples" / "clips" / "chelsea_pan.mp4"


def t(a) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).contiguous()


def scaled(flows, size: tuple[int, int]):
    """Flows (H, W, 2 arrays) resized to `size` (w, h), their vectors scaled with them."""
    import torch.nn.functional as F

    out = []
    for f in flows:
        h, w = f.shape[:2]
        r = F.interpolate(t(f), size=(size[1], size[0]), mode="bilinear", align_corners=True)
        r[:, 0] *= (size[0] - 1) / (w - 1)
        r[:, 1] *= (size[1] - 1) / (h - 1)
        out.append(r[0].permute(1, 2, 0).contiguous().numpy())
    return out


def presets(size: int, n: int) -> None:
    frames, fws, bws = render(n, size)
    print(f"DIS presets on the synthetic clip ({frames[0].width}x{frames[0].height}, {n - 1} pairs; backward flow):")
    for preset in ("ultrafast", "fast", "medium"):
        epe = agree = 0.0
        tic = time.perf_counter()
        for i in range(n - 1):
            video.flow(frames[i + 1], frames[i], preset)
        dt = (time.perf_counter() - tic) / (n - 1)
        for i in range(n - 1):
            bw, mask = video.pair(frames[i], frames[i + 1], preset)
            true_mask = video.reliability(t(fws[i]), t(bws[i]))
            epe += float((bw - t(bws[i])).norm(dim=1).mean())
            agree += float((mask == true_mask).float().mean())
        print(
            f"  {preset:9s} end-point error {epe / (n - 1):.3f} px, mask agrees with the true one on "
            f"{100 * agree / (n - 1):.1f}% of pixels, {1000 * dt:.1f} ms a flow"
        )


def errors(inputs, painted, fws=None, bws=None) -> tuple[float, float, float | None, float | None]:
    """(painted with DIS, input with DIS, painted with the true flow, input with the true flow)."""
    dis, dis_floor = video.warping_errors(inputs, painted)
    if fws is None:
        return dis, dis_floor, None, None
    e = f = 0.0
    for i in range(len(painted) - 1):
        bw, fw = t(bws[i]), t(fws[i])
        mask = video.reliability(fw, bw)
        e += video.warping_error(painted[i], painted[i + 1], bw, mask)
        f += video.warping_error(inputs[i], inputs[i + 1], bw, mask)
    return dis, dis_floor, e / (len(painted) - 1), f / (len(painted) - 1)


def paint(frames, style, s, bb, weight: float | None):
    """(painted frames, seconds per frame, mean style loss of the painted frames): weight None paints each frame
    alone (transfer.run)."""
    if weight is None:
        out, secs, style_loss = [], [], []
        for f in frames:
            tic = time.perf_counter()
            last = run(f, [style], s, backbone=bb)
            out.append(last.image)
            style_loss.append(last.losses["style"])
            secs.append(time.perf_counter() - tic)
        return out, secs, sum(style_loss) / len(style_loss)
    stats = video.ClipStats()
    done = [
        f
        for f in video.stylize_clip(
            iter(frames), [style], s, bb, frames_total=len(frames), temporal_weight=weight, stats=stats
        )
        if f.output
    ]
    return [f.image for f in done], stats.seconds, sum(f.losses["style"] for f in done) / len(done)


def compare(name, frames, style, s, bb, weights, fws=None, bws=None) -> None:
    print(f"{name}: {len(frames)} frames of {frames[0].width}x{frames[0].height}")
    alone_err = None
    for label, w in [("alone", None)] + [(f"temporal {w:g}", w) for w in weights]:
        painted, secs, style_loss = paint(frames, style, s, bb, w)
        dis, dis_floor, true, true_floor = errors(frames, painted, fws, bws)
        if w is None:
            alone_err = (dis, true)
        ratio = f" ({dis / alone_err[0]:.2f}x alone)" if w is not None else ""
        line = f"  {label:14s} warping error, DIS flow {dis:.5f}{ratio} (input {dis_floor:.5f})"
        if true is not None:
            ratio = f" ({true / alone_err[1]:.2f}x alone)" if w is not None else ""
            line += f"; true flow {true:.5f}{ratio} (input {true_floor:.5f})"
        later = sum(secs[1:]) / max(len(secs) - 1, 1)
        line += f"; style loss {style_loss:.3f}; frame 1 {secs[0]:.1f} s, later {later:.2f} s a frame"
        print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=8, help="frames for the comparisons (alone vs temporal)")
    ap.add_argument("--weights", type=float, nargs="+", default=[TEMPORAL_WEIGHT])
    ap.add_argument("--full", type=int, default=0, help="also paint this many frames of the sample clip, timed")
    ap.add_argument("--style", default="starry_night.jpg")
    a = ap.parse_args()
    print(f"machine: {machine()}")
    bb = load_backbone("original", "cpu")
    style = load_image(ROOT / "samples" / "styles" / a.style)
    s = Settings(size=a.size)
    print(
        f"settings: {a.size} px, {s.iterations} evaluations for frame 1, {later_evaluations(s)} for each later "
        f"frame; style {a.style}"
    )
    presets(a.size, 13)
    frames, fws, bws = render(48, a.size)
    compare("synthetic clip (true flow known)", frames[: a.frames], style, s, bb, a.weights, fws, bws)
    sample = list(clips.read_frames(SAMPLE, a.frames, a.size))
    # The sample clip was rendered at 256 px: its true flow is that one, scaled to the size read.
    _, fws, bws = render(48, 256)
    fws, bws = scaled(fws[: a.frames], sample[0].size), scaled(bws[: a.frames], sample[0].size)
    compare("sample clip (H.264)", sample, style, s, bb, a.weights, fws, bws)
    if a.full:
        tic = time.perf_counter()
        stats = video.ClipStats()
        frames = clips.read_frames(SAMPLE, a.full, a.size)
        n = 0
        for f in video.stylize_clip(frames, [style], s, bb, frames_total=a.full, stats=stats):
            n += f.output
        total = time.perf_counter() - tic
        later = sum(stats.seconds[1:]) / max(len(stats.seconds) - 1, 1)
        print(
            f"sample clip, {n} frames at {a.size} px: {total:.0f} s in all; frame 1 {stats.seconds[0]:.1f} s, later "
            f"{later:.2f} s a frame ({later / stats.seconds[0]:.2f}x frame 1); warping error {stats.mean_warping:.5f} "
            f"(input {stats.mean_floor:.5f})"
        )


if __name__ == "__main__":
    main()
