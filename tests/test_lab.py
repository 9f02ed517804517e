"""The Lab experiments do what they claim to show, on the real network, at small sizes."""

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import load_image
from nst_core.images import fit, to_tensor
from nst_core.tasks import lab
from nst_core.transfer import Objective
from tests.conftest import SAMPLES

pytestmark = pytest.mark.numerics  # make test-cpus runs these under other CPUs' kernels too


def last_image(frames):
    return [f for f in frames if f.image is not None][-1]


def cells_of(plan, backbone):
    """Run each cell alone and return its final image (what the grid shows)."""
    from nst_core.transfer import run

    return [
        run(c.content, list(c.styles), c.settings, backbone=backbone, init_image=c.init_image).image for c in plan.cells
    ]


def test_pixel_matching_reaches_near_zero_error(backbone, content):
    a = fit(content, 64)
    b = lab.spot_the_difference_pair(a)
    diff = np.abs(np.asarray(a, float) - np.asarray(b, float)).mean(axis=2)
    assert 0.02 < (diff > 10).mean() < 0.3  # a few patches differ, most of the picture does not
    plan = lab.pixel_match(a, b, size=64, iterations=60)
    frames = list(lab.run_plan(plan, backbone))
    assert len(frames) == 60 and frames[-1].losses["content"] < 1e-3 * frames[0].losses["content"]
    out = cells_of(plan, backbone)[0]
    assert np.abs(np.asarray(out, float) - np.asarray(b, float)).mean() < 2.0  # within 2 of 255 per pixel


def test_shallow_layers_reconstruct_the_photo_better_than_deep_ones(backbone, content):
    photo = fit(content, 64)
    plan = lab.layer_reconstructions(photo, size=64, iterations=40, layers=("relu1_1", "relu5_1"))
    shallow, deep = cells_of(plan, backbone)
    err = lambda im: np.abs(np.asarray(im, float) - np.asarray(photo, float)).mean()  # noqa: E731
    assert err(shallow) < 0.5 * err(deep)


def test_style_alone_matches_the_grams_better_than_noise(backbone, style):
    plan = lab.style_alone(style, size=64, iterations=30, depths=("relu1_1", "relu2_1", "relu3_1"))
    results = cells_of(plan, backbone)
    s = plan.cells[-1].settings
    target = to_tensor(fit(style, 64))
    obj = Objective(backbone, s, target, [target])
    noise = torch.rand(target.shape, generator=torch.Generator().manual_seed(s.seed))
    assert obj(to_tensor(results[-1]))["style"] < 0.3 * obj(noise)["style"]
    assert all(c.settings.content_layers == () for c in plan.cells)
    assert [c.settings.style_layers[-1] for c in plan.cells] == ["relu1_1", "relu2_1", "relu3_1"]


def test_tradeoff_grid_fills_cell_by_cell(backbone, content, style):
    plan = lab.tradeoff_grid(
        content, style, size=48, iterations=2, style_weights=(1, 100), depths=("relu1_1", "relu3_1")
    )
    assert len(plan.cells) == 4 and plan.cols == 2 and plan.row_labels == ("content/style 1", "content/style 1e-2")
    frames = list(lab.run_plan(plan, backbone))
    assert [f.step for f in frames] == list(range(1, 9)) and frames[-1].total == 8
    shots = [f.image for f in frames if f.image is not None]
    assert len(shots) == 4 and len({im.size for im in shots}) == 1  # one picture size for the GIF
    # cells appear as they finish: the first picture has one filled cell, the last all four
    grey = lambda im: (np.asarray(im) == (225, 222, 214)).all(axis=2).mean()  # noqa: E731
    assert grey(shots[0]) > grey(shots[-1]) and grey(shots[-1]) == 0


def test_crops_of_one_painting_agree_and_two_paintings_differ(backbone):
    starry = load_image(SAMPLES / "styles" / "starry_night.jpg")
    scream = load_image(SAMPLES / "styles" / "the_scream.jpg")
    a, b = lab.crops(starry)
    g = lambda im: lab.gram_matrix(backbone, im, "relu3_1", size=128)  # noqa: E731
    assert lab.gram_distance(g(a), g(b)) < 0.5 * lab.gram_distance(g(scream), g(starry))


def test_feature_maps_and_heatmap(backbone, content, style, style2):
    maps = lab.feature_maps(backbone, content, "relu2_1", k=9, size=64)
    assert maps.mode == "RGB" and maps.width == 3 * 96
    g = lab.gram_matrix(backbone, content, "relu2_1", size=64)
    assert g.shape == (128, 128) and torch.allclose(g, g.T)
    assert lab.gram_heatmap(g, px=128).size == (128, 128)
    # Why a style is compared by it: a Gram matrix keeps which features occur together and drops where they are. The
    # photo mirrored (every feature moved) stays far nearer the photo's Gram matrix than either painting does.
    mirrored = lab.gram_matrix(backbone, content.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "relu2_1", size=64)
    paintings = [lab.gram_matrix(backbone, p, "relu2_1", size=64) for p in (style, style2)]
    assert lab.gram_distance(g, mirrored) < 0.2 * min(lab.gram_distance(g, p) for p in paintings)
    # Co-activations of ReLU features: no negative entry, and a Gram matrix (F F^T) has no negative eigenvalue.
    assert (g >= 0).all() and torch.linalg.eigvalsh(g.double()).min() >= -1e-6 * g.max()


def test_estimates_scale_with_the_work(backbone, content, style):
    from nst_core.serve.cost import CostModel

    cost = CostModel(1e-6, 0.01)
    small, big = lab.tradeoff_grid(content, style, iterations=10), lab.tradeoff_grid(content, style, iterations=20)
    assert cost.seconds(*big.work()) == pytest.approx(2 * cost.seconds(*small.work()))


def test_why_videos_flicker_paints_both_rows_and_measures_them(backbone, style):
    """Experiment 7 on three frames of the sample clip: both rows painted, the grid shown, and the warping errors of
    both clips and of the photo's frames (the floor) on the last frame, each at least the floor's 0."""
    from nst_core.tasks.lab import why_videos_flicker

    clip = (SAMPLES / "clips" / "chelsea_pan.mp4").read_bytes()
    plan = why_videos_flicker(clip, style, size=64, frames=3, iterations=6)
    frames = list(plan.frames(backbone))
    assert [f.step for f in frames] == list(range(1, plan.iterations + 1))
    last = frames[-1]
    assert last.done and last.image is not None
    assert {"alone", "temporal", "floor"} <= set(last.losses)
    assert all(last.losses[k] >= 0 for k in ("alone", "temporal", "floor"))
    assert last.image.width >= 3 * 64  # three columns
