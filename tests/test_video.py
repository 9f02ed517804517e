"""Clips painted consistently (nst_core.video): warping, the reliability mask, the temporal term, stylize_clip and
the command line on a clip."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import clips, video
from nst_core.images import fit, to_tensor
from nst_core.settings import Settings
from nst_core.transfer import run
from tests.conftest import ROOT, SAMPLES

SAMPLE = SAMPLES / "clips" / "chelsea_pan.mp4"
STYLE = SAMPLES / "styles" / "starry_night.jpg"


def const_flow(dx: float, dy: float, h: int, w: int) -> torch.Tensor:
    f = torch.zeros(1, 2, h, w)
    f[:, 0], f[:, 1] = dx, dy
    return f


def test_warp_moves_pixels_along_the_flow():
    img = torch.zeros(1, 3, 20, 30)
    img[0, :, 5, 10] = 1.0  # a bright pixel at x=10, y=5
    out = video.warp(img, const_flow(3, 2, 20, 30))  # out(p) = img(p + (3, 2)): the pixel shows at (7, 3)
    assert out[0, 0, 3, 7] == pytest.approx(1.0)
    assert out[0, 0].sum() == pytest.approx(1.0)
    half = video.warp(img, const_flow(0.5, 0, 20, 30))  # between two pixels: bilinear, half each
    assert half[0, 0, 5, 9] == pytest.approx(0.5) and half[0, 0, 5, 10] == pytest.approx(0.5)
    # A flow pointing past the right edge: those pixels come from outside the frame.
    ins = video.inside(const_flow(3, 0, 20, 30))
    assert ins[0, 0, :, :27].min() == 1 and ins[0, 0, :, 27:].max() == 0


def square_clip(h=40, w=60, size=12, x0=15, y0=14, dx=4):
    """A still background with a square moving right by dx: the true forward (frame 1 -> 2) and backward
    (2 -> 1) flows, and where frame 2's pixels were hidden in frame 1 (disoccluded)."""
    fw, bw = torch.zeros(1, 2, h, w), torch.zeros(1, 2, h, w)
    fw[0, 0, y0 : y0 + size, x0 : x0 + size] = dx  # the square's pixels in frame 1 go right
    bw[0, 0, y0 : y0 + size, x0 + dx : x0 + dx + size] = -dx  # and in frame 2 they came from the left
    disoccluded = torch.zeros(h, w, dtype=torch.bool)
    disoccluded[y0 : y0 + size, x0 : x0 + dx] = True  # behind the square: background frame 1 did not show
    return fw, bw, disoccluded


def test_mask_is_zero_at_occlusions_and_one_elsewhere():
    fw, bw, disoccluded = square_clip()
    c = video.reliability(fw, bw)[0, 0]
    assert set(c.unique().tolist()) <= {0.0, 1.0}
    assert c[disoccluded].max() == 0
    # Away from the square's edges (where the flow jumps: motion boundaries), every pixel is reliable.
    edges = torch.zeros_like(disoccluded)
    edges[12:28, 13:35] = True  # the moving square's outline (frames 1 and 2) with a pixel's margin
    edges[15:25, 20:30] = False  # its inside in frame 2, away from the outline
    assert c[~edges & ~disoccluded].min() == 1
    assert c[16:24, 21:29].min() == 1  # the square itself, followed consistently
    # A pan: the pixels that come from outside the frame are unreliable, the rest reliable.
    pan = video.reliability(const_flow(-2, 0, 40, 60), const_flow(2, 0, 40, 60))[0, 0]
    assert pan[:, -2:].max() == 0 and pan[:, :-2].min() == 1


def test_dis_flow_finds_a_known_shift():
    photo = fit(Image.open(SAMPLES / "content" / "chelsea.png").convert("RGB"), 160)
    a, b = photo.crop((10, 10, 138, 106)), photo.crop((13, 11, 141, 107))  # b is a moved 3 right, 1 down
    f = video.flow(b, a)  # b(p) = a(p + (3, 1))
    inner = f[0, :, 10:-10, 10:-10]
    assert inner[0].median() == pytest.approx(3, abs=0.25) and inner[1].median() == pytest.approx(1, abs=0.25)


def test_temporal_term_is_zero_for_a_frame_equal_to_its_warped_predecessor(backbone, style):
    s = Settings(size=48)
    x = to_tensor(fit(Image.open(SAMPLES / "content" / "coffee.png").convert("RGB"), 48))
    obj = video.TemporalObjective(backbone, s, x, [to_tensor(fit(style, 48))], temporal_weight=100.0)
    mask = torch.ones(1, 1, *x.shape[-2:])
    obj.next_frame(x, x.clone(), mask)
    terms = obj(x)
    assert terms["temporal"].item() == 0.0
    assert terms["total"].item() == pytest.approx((terms["content"] + terms["style"] + terms["tv"]).item(), rel=1e-6)
    other = (x + 0.1).clamp(0, 1)
    assert obj(other)["temporal"].item() > 0
    obj.next_frame(x, other, torch.zeros_like(mask))  # nothing reliable: no pull at all
    assert obj(x)["temporal"].item() == 0.0


def test_warping_error_zero_for_a_consistent_pair():
    a = to_tensor(fit(Image.open(SAMPLES / "content" / "chelsea.png").convert("RGB"), 64))
    f = const_flow(2, 0, *a.shape[-2:])
    b = video.warp(a, f)
    mask = video.inside(f)
    assert video.warping_error(a, b, f, mask) == pytest.approx(0.0, abs=1e-10)
    assert video.warping_error(a, (b + 0.1).clamp(0, 1), f, mask) > 0.001


def pan_frames(n: int, size: int, step: int = 2) -> list[Image.Image]:
    """A photo seen through a window moving right `step` pixels a frame."""
    base = fit(Image.open(SAMPLES / "content" / "chelsea.png").convert("RGB"), size * 2)
    h = size * 3 // 4
    return [base.crop((8 + i * step, 20, 8 + i * step + size, 20 + h)) for i in range(n)]


def test_stylize_clip_counts_steps_over_the_clip_and_stops_when_closed(backbone, style):
    s = Settings(size=48, iterations=6, scales=1, preview_every=100)
    frames = pan_frames(3, 48)
    stats = video.ClipStats()
    got = list(video.stylize_clip(iter(frames), [style], s, backbone, frames_total=3, later_iterations=2, stats=stats))
    assert [f.step for f in got] == list(range(1, 11)) and {f.total for f in got} == {10}
    painted = [f for f in got if f.output]
    assert [f.part for f in painted] == [(1, 3), (2, 3), (3, 3)] and got[-1].done and got[-1].output
    assert all(f.image is not None and f.image.size == (48, 36) for f in painted)
    assert "temporal" in got[-1].losses and "temporal" not in got[0].losses
    assert len(stats.seconds) == 3 and len(stats.warping) == 2 and len(stats.floor) == 2
    # Closing the generator stops the run: nothing is read or painted after it.
    read = []
    gen = video.stylize_clip(
        (read.append(f) or f for f in pan_frames(5, 48)), [style], s, backbone, frames_total=5, later_iterations=2
    )
    for f in gen:
        if f.output:
            gen.close()
    assert len(read) <= 2  # frame 1 and the look-ahead
    # An input shorter than announced: its last painted frame ends the run.
    short = list(video.stylize_clip(iter(frames[:2]), [style], s, backbone, frames_total=5, later_iterations=2))
    assert short[-1].output and short[-1].done and short[-1].part == (2, 2)


def test_the_next_flows_computed_beside_the_run_give_the_same_clip(backbone, style, monkeypatch):
    """On a GPU the next pair of input frames' flows are computed on a helper thread while a frame is optimised
    (stylize_clip's prefetch), off the run's thread. The clip is the same: bitwise on a CPU (the same flows from the
    same input frames, and the optimisation is deterministic there), within rounding on CUDA (cuDNN is not)."""
    s = Settings(size=48, iterations=6, scales=1, preview_every=100)
    frames = pan_frames(4, 48)
    seen, pairs = [], []
    real = video.pair

    def pair(a, b, preset=video.DIS_PRESET):
        seen.append(threading.current_thread().name)
        pairs.append((a.tobytes(), b.tobytes()))
        return real(a, b, preset)

    monkeypatch.setattr(video, "pair", pair)

    def clip(prefetch: bool):
        stats = video.ClipStats()
        run = video.stylize_clip(
            iter(frames), [style], s, backbone, frames_total=4, later_iterations=3, stats=stats, prefetch=prefetch
        )
        return [np.asarray(f.image, dtype=np.float32) for f in run if f.output], stats

    here = threading.current_thread().name
    in_turn, stats_in_turn = clip(False)
    assert seen == [here] * 3
    turn_pairs = list(pairs)
    seen.clear(), pairs.clear()
    ahead, stats_ahead = clip(True)
    assert seen == [here, "flow_0", "flow_0"]  # the first pair in the run's thread, the next two beside it
    assert pairs == turn_pairs  # the same input frames, in the same order: on any device
    assert len(ahead) == len(in_turn) == 4 and stats_ahead.floor == stats_in_turn.floor
    if backbone.device.type == "cpu":
        assert all((a == b).all() for a, b in zip(ahead, in_turn))
        assert stats_ahead.warping == stats_in_turn.warping
    # Stopped mid-clip, the helper ends with it.
    run = video.stylize_clip(iter(frames), [style], s, backbone, frames_total=4, later_iterations=3, prefetch=True)
    for f in run:
        if f.output and f.part[0] == 2:
            run.close()
    helpers = [t for t in threading.enumerate() if t.name.startswith("flow")]
    for t in helpers:
        t.join(timeout=30)  # (a flow under way finishes first; nothing is queued after it)
    assert not any(t.is_alive() for t in helpers)


def test_a_clip_makes_the_paintings_targets_once(backbone, style, monkeypatch):
    """The paintings' style targets are the same for every frame: each painting is fitted to its working size for
    frame 1's level and for the temporal objective, not again for every later frame."""
    from nst_core import images

    s = Settings(size=48, iterations=4, scales=1, preview_every=100)
    fitted = []
    real = images.fit

    def fit_(im, side, *a, **kw):
        if im is style:
            fitted.append(side)
        return real(im, side, *a, **kw)

    monkeypatch.setattr(images, "fit", fit_)
    painted = [
        f
        for f in video.stylize_clip(iter(pan_frames(5, 48)), [style], s, backbone, frames_total=5, later_iterations=2)
        if f.output
    ]
    assert len(painted) == 5 and len(fitted) == 2, fitted


@pytest.mark.numerics
def test_temporal_term_lowers_the_warping_error(backbone, style):
    """A pan painted with the temporal term flickers far less than the same frames painted alone (the same
    settings, each from its own photo): its warping error is under half, with a wide margin (docs/benchmarks.md,
    Video)."""
    s = Settings(size=64, iterations=20, scales=1, preview_every=100)
    frames = pan_frames(3, 64)
    alone = [run(f, [style], s, backbone=backbone).image for f in frames]
    painted = [
        f.image
        for f in video.stylize_clip(iter(frames), [style], s, backbone, frames_total=3, later_iterations=8)
        if f.output
    ]
    e_alone, floor = video.warping_errors(frames, alone)
    e_clip, floor2 = video.warping_errors(frames, painted)
    assert floor == floor2 == pytest.approx(video.input_warping_error(frames))
    assert e_clip < 0.5 * e_alone, (e_clip, e_alone)


@pytest.mark.process
def test_cli_paints_a_clip(tmp_path):
    out, metrics = tmp_path / "out.mp4", tmp_path / "m.json"
    args = [str(SAMPLE), str(STYLE), "--output", str(out), "--size", "64", "--iterations", "8", "--scales", "1"]
    args += ["--video-frames", "3", "--later-iterations", "3", "--metrics", str(metrics), "--device", "cpu", "-q"]
    r = subprocess.run([sys.executable, "-m", "nst_core", *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    info = clips.probe(out)
    assert info.frames == 3 and info.fps == 12 and info.has_audio and (info.width, info.height) == (64, 48)
    m = json.loads(metrics.read_text())
    assert [f["frame"] for f in m["frames"]] == [1, 2, 3] and all(f["seconds"] > 0 for f in m["frames"])
    assert len(m["warping_errors"]) == 2 and m["evaluations"] == 8 + 2 * 3
    assert m["warping_error"] > 0 and m["input_warping_error"] > 0


@pytest.mark.parametrize("make", ["empty", "truncated", "text"])
def test_cli_bad_clip_one_line_exit_2(tmp_path, capsys, make):
    from nst_core.__main__ import main

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(
        {"empty": b"", "truncated": SAMPLE.read_bytes()[:3000], "text": b"\x00\x00\x00\x18ftypmp42junk"}[make]
    )
    code = main([str(bad), str(STYLE), "--output", str(tmp_path / "o.mp4"), "--size", "64", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o.mp4").exists()


def test_cli_clip_output_must_be_a_clip(tmp_path, capsys):
    from nst_core.__main__ import main

    with pytest.raises(SystemExit) as e:
        main([str(SAMPLE), str(STYLE), "--output", str(tmp_path / "o.png"), "-q"])
    assert e.value.code == 2 and ".mp4, .gif or .webp" in capsys.readouterr().err
