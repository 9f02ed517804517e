"""Real runs of the generator on the CPU with the original weights, at tiny sizes."""

import statistics

import numpy as np
import pytest
import torch

from nst_core import Settings, stylize
from nst_core.images import fit, rgb_to_yiq, to_tensor
from nst_core.schedule import scale_sizes, split_iterations
from nst_core.transfer import Objective, run

pytestmark = pytest.mark.numerics  # make test-cpus runs these under other CPUs' kernels too

TINY = Settings(size=64, iterations=12, preview_every=4)


def test_a_real_run_lowers_the_loss(backbone, content, style):
    frames = list(stylize(content, [style], TINY.replace(iterations=20), backbone))
    assert [f.step for f in frames] == list(range(1, 21))
    assert all(f.total == 20 for f in frames)
    first, last = frames[0].losses, frames[-1].losses
    assert set(first) == {"content", "style", "tv", "total"}
    assert last["total"] < 0.5 * first["total"]
    assert last["style"] < first["style"]
    assert frames[-1].image is not None and frames[-1].image.size == (64, 43)
    assert all(b.elapsed >= a.elapsed for a, b in zip(frames, frames[1:]))


def test_images_come_every_preview_every_and_at_the_end(backbone, content, style):
    frames = list(stylize(content, [style], TINY.replace(iterations=10), backbone))
    assert [f.step for f in frames if f.image is not None] == [4, 8, 10]
    assert frames[-1].done and not frames[0].done


def test_same_seed_same_pixels(backbone, content, style):
    s = TINY.replace(init="noise", seed=7, iterations=6)
    a, b = run(content, [style], s, backbone=backbone), run(content, [style], s, backbone=backbone)
    # Bit for bit on a CPU (its kernels are deterministic for one input); cuDNN's are not, so on a GPU the same seed
    # gives the same picture within a level or two of 255.
    if backbone.device.type == "cpu":
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    else:
        assert np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16)).max() <= 2
    c = run(content, [style], s.replace(seed=8), backbone=backbone)
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_closing_the_generator_stops_the_run(backbone, content, style):
    gen = stylize(content, [style], TINY.replace(iterations=1000), backbone)
    seen = [next(gen) for _ in range(3)]
    gen.close()
    assert seen[-1].step == 3
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize(
    "change",
    [
        {"optimizer": "adam", "lr": 0.05},
        {"init": "style"},
        {"init": "noise"},
        {"pooling": "avg"},
        {"style_scale": 0.5},
        {"tv_weight": 0.0},
    ],
)
def test_options_run_and_improve(backbone, content, style, change):
    frames = list(stylize(content, [style], TINY.replace(**change), backbone))
    assert len(frames) == 12 and frames[-1].losses["total"] < frames[0].losses["total"]


def test_two_styles_blend_their_grams(backbone, content, style, style2):
    s = TINY.replace(style_blend=(1.0, 0.0))
    only_first = Objective(backbone, s, to_tensor(content), [to_tensor(style), to_tensor(style2)])
    single = Objective(backbone, TINY, to_tensor(content), [to_tensor(style)])
    for layer in TINY.style_layers:
        torch.testing.assert_close(only_first.style_targets[layer], single.style_targets[layer])
    frames = list(stylize(content, [style, style2], TINY.replace(style_blend=(0.3, 0.7)), backbone))
    assert frames[-1].losses["total"] < frames[0].losses["total"]
    with pytest.raises(ValueError, match="style_blend has 2 weights for 1"):
        next(stylize(content, [style], TINY.replace(style_blend=(0.3, 0.7)), backbone))


def test_preserve_colors_keeps_the_content_chrominance(backbone, content, style):
    out = run(content, [style], TINY.replace(preserve_colors=True, style_weight=100), backbone=backbone)
    c = rgb_to_yiq(to_tensor(fit(content, 64)))
    o = rgb_to_yiq(to_tensor(out.image))
    plain = rgb_to_yiq(to_tensor(run(content, [style], TINY.replace(style_weight=100), backbone=backbone).image))
    chroma_err = (o[:, 1:] - c[:, 1:]).abs().mean()
    # Kept by construction (up to 8-bit rounding), where a plain run moves the colours (0.016 to 0.026 here).
    assert chroma_err < 1e-3
    assert (plain[:, 1:] - c[:, 1:]).abs().mean() > 0.005


def test_coarse_to_fine_schedule(backbone, content, style):
    assert scale_sizes(Settings(size=512)) == [128, 256, 512]
    assert scale_sizes(Settings(size=512, scales=1)) == [512]
    assert scale_sizes(Settings(size=200)) == [100, 200] and scale_sizes(Settings(size=100)) == [100]
    assert split_iterations(160, 3) == [57, 38, 65] and split_iterations(200, 3) == [72, 48, 80]
    assert split_iterations(100, 2) == [60, 40] and sum(split_iterations(7, 3)) == 7
    assert split_iterations(2, 3).count(0) == 1 and split_iterations(1, 1) == [1]
    s = Settings(size=64, min_scale_size=32, iterations=9, preview_every=3)
    frames = list(stylize(content, [style], s, backbone))
    assert [f.size for f in frames[:1] + frames[-1:]] == [(32, 21), (64, 43)]
    assert len(frames) == 9 and frames[-1].image.size == (64, 43)


def test_loss_magnitudes_do_not_depend_on_image_size(backbone, content, style):
    """The style weight means the same at any size: the objective of the same picture at 64 and
    128 px is of the same magnitude (the raw Gatys sums would differ by 4x per doubling)."""
    big = fit(content, 128)
    o_small = Objective(backbone, TINY, to_tensor(fit(big, 64)), [to_tensor(fit(style, 64))])
    o_big = Objective(backbone, TINY, to_tensor(big), [to_tensor(fit(style, 128))])
    noise_s, noise_b = torch.full((1, 3, 43, 64), 0.5), torch.full((1, 3, 85, 128), 0.5)
    ls, lb = o_small(noise_s), o_big(noise_b)
    assert 0.5 < ls["style"].item() / lb["style"].item() < 2
    assert 0.5 < ls["content"].item() / lb["content"].item() < 2


def test_settings_validation():
    with pytest.raises(ValueError, match="size=5"):
        Settings(size=5)
    with pytest.raises(ValueError, match="unknown layer 'relu7_1'"):
        Settings(style_layers=("relu7_1",))
    with pytest.raises(ValueError, match="one weight per style layer"):
        Settings(style_layer_weights=(1.0,))
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        Settings(optimizer="sgd")
    assert Settings(style_layers="relu1_1, relu2_1").style_layers == ("relu1_1", "relu2_1")
    s = Settings(style_weight=3.0)
    assert Settings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="tv_weight='x': must be a number"):
        Settings(tv_weight="x")


def test_numbers_have_one_type_so_the_same_settings_are_the_same_bytes():
    import pickle

    ints = Settings(content_weight=1, style_weight=10, style_layer_weights=(1, 2, 1, 1, 1), style_blend=(1,), lr=1)
    floats = Settings(style_layer_weights=(1.0, 2.0, 1.0, 1.0, 1.0), style_blend=(1.0,))
    assert pickle.dumps(ints) == pickle.dumps(floats) and ints.to_json() == floats.to_json()
    assert type(ints.content_weight) is float and {type(w) for w in ints.style_layer_weights} == {float}


def test_every_preset_runs(backbone, content, style):
    from nst_core.settings import PRESETS

    for name, p in PRESETS.items():
        s = p.replace(size=48, iterations=3, min_scale_size=24)
        frames = list(stylize(content, [style], s, backbone))
        assert frames[-1].image is not None, name


PAINTINGS = ("starry_night.jpg", "the_scream.jpg", "composition_vii.jpg")


@pytest.fixture(scope="module")
def paintings():
    from nst_core import load_image
    from tests.conftest import SAMPLES

    return [fit(load_image(SAMPLES / "styles" / p), 48) for p in PAINTINGS]


@pytest.mark.sweep
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("init", ["content", "noise", "style"])
def test_no_run_ends_worse_than_it_was(backbone, content, paintings, init, optimizer, precision):
    """Over inits x style weights x optimisers x three paintings: the image a run returns (evaluated afresh,
    as the saved 8-bit picture) is within 1.2x of the best evaluation of the run and below its start.
    Wide margins on purpose: a guard makes this hold on any CPU, however chaotic the trajectory. In float32
    and in bfloat16 (emulated where the CPU lacks it), whatever "auto" picks on this machine.

    From the style image the start is the style term's exact optimum (the init is the style target
    itself); at style weight 1e4 the best trade-off is then less than one 8-bit level away from it, so
    the saved picture can only be "not worse" there, and that is what is asserted for that init."""
    from nst_core.transfer import level_targets

    photo = fit(content, 48)
    for painting in paintings:
        for weight in (1.0, 100.0, 1e4):
            s = Settings(
                size=48,
                iterations=12,
                init=init,
                style_weight=weight,
                optimizer=optimizer,
                precision=precision,
                scales=1,
                lr=1.0 if optimizer == "lbfgs" else 0.05,
                preview_every=12,
            )
            frames = list(stylize(photo, [painting], s, backbone))
            totals = [f.losses["total"] for f in frames]
            c, st, _ = level_targets(photo, [painting], s, s.size)
            final = float(Objective(backbone, s, c, st)(to_tensor(frames[-1].image))["total"])
            assert np.isfinite(final) and all(np.isfinite(t) or t == np.inf for t in totals)
            assert final <= 1.2 * min(totals), (painting.size, weight, final, min(totals))
            if init == "style":
                assert final <= totals[0] * 1.001, (weight, final, totals[0])
            else:
                assert final < totals[0], (weight, final, totals[0])


def test_a_blow_up_puts_the_optimiser_back_on_the_best_point(backbone, content, style):
    """An objective that returns NaN once in the middle: the run carries on from the best image."""
    from nst_core.transfer import optimise

    s = Settings(size=48, iterations=10, scales=1)
    x0 = to_tensor(fit(content, 48))
    real = Objective(backbone, s, x0, [to_tensor(fit(style, 48))])
    calls = []

    def flaky(x):
        calls.append(1)
        out = real(x)
        if len(calls) == 5:
            out = {k: v * float("nan") for k, v in out.items()}
        return out

    seen = list(optimise(flaky, x0, 10, s))
    totals = [t["total"] for t, _ in seen]
    assert np.isnan(totals[4]) and all(np.isfinite(t) for t in totals[:4] + totals[5:])
    best_before = min(totals[:4])
    assert totals[5] <= 1.5 * best_before  # restarted from the best point, not from the NaN one
    assert all(torch.isfinite(img).all() for _, img in seen) and min(totals[5:]) < best_before


def test_a_carried_curvature_makes_the_first_step_a_quasi_newton_step(backbone, content, style):
    """Curvature, the mechanism: given the coarser level's inverse-Hessian scale gamma, the first L-BFGS step of a
    level is -gamma * (its pixels / the coarser level's pixels) * gradient, not torch's cautious first step. The
    second evaluation is compared with the point computed here from the same gradient: the same arithmetic on
    any CPU, so the tolerance is float32 rounding."""
    from nst_core.transfer import Curvature, box, optimise

    s = Settings(size=48, iterations=2, scales=1, precision="float32")
    x0 = to_tensor(fit(content, 48))
    objective = Objective(backbone, s, x0, [to_tensor(fit(style, 48))])
    seen = []

    def recording(x):
        seen.append(x.detach().clone())
        return objective(x)

    u = x0.clone().requires_grad_(True)
    objective(box(u))["total"].backward()
    pixels = x0.shape[-1] * x0.shape[-2]
    curvature = Curvature(gamma=0.5, pixels=pixels // 4)  # a level of a quarter of the pixels, before this one
    step = curvature.first_step(pixels)
    assert step == pytest.approx(2.0)
    list(optimise(recording, x0, 2, s, curvature))
    torch.testing.assert_close(seen[0], x0)
    torch.testing.assert_close(seen[1], box(x0 - step * u.grad), rtol=1e-4, atol=1e-5)
    # ... and it hands this level's own scale on to the next: measured from its curvature pair, positive
    assert curvature.gamma is not None and curvature.gamma > 0 and curvature.pixels == pixels
    # Without a carried curvature the first step is torch's: min(1, 1/|g|_1) * lr along -g, a tiny one here.
    seen.clear()
    list(optimise(recording, x0, 2, s))
    cautious = min(1.0, 1.0 / float(u.grad.abs().sum())) * s.lr
    torch.testing.assert_close(seen[1], box(x0 - cautious * u.grad), rtol=1e-4, atol=1e-5)
    assert cautious < 0.01 * step


def test_each_level_after_the_first_starts_with_the_curvature_of_the_level_before(
    backbone, content, paintings, monkeypatch
):
    """Curvature, in a run: every level after the first takes its first step from the scale the level before
    measured (the coarsest has none to take), and that step matters. torch's cautious first step moves a finer
    level's loss by at most 1.1% (measured over four paintings x three inits); the carried one moved it 3-72%
    (3% on an Intel Xeon with AMX, 9.5% and more on an AMD EPYC). A single level's move depends on the CPU's
    rounding of a chaotic trajectory, so the assertion is on the median of six levels against the median
    without the carry-over, with a factor of three where about twenty is measured."""
    from nst_core.transfer import Curvature

    asked = []
    real_first_step = Curvature.first_step

    def first_step(self, pixels):
        step = real_first_step(self, pixels)
        asked.append((pixels, self.pixels, step))
        return step

    monkeypatch.setattr(Curvature, "first_step", first_step)

    def moves() -> list[float]:
        out = []
        for painting in paintings:
            s = Settings(size=96, iterations=24, min_scale_size=24, preview_every=24, precision="float32")
            levels: dict[tuple[int, int], list[float]] = {}
            for f in stylize(content, [painting], s, backbone):
                levels.setdefault(f.size, []).append(f.losses["total"])
            assert len(levels) == 3
            out += [abs(totals[1] / totals[0] - 1) for totals in list(levels.values())[1:]]
        return out

    carried = moves()
    # Per run: the 24 px level has nothing to carry; the 48 and 96 px levels start from the level before's scale.
    assert len(asked) == 9
    for i in range(0, 9, 3):
        (p1, _, none), (p2, from2, step2), (p3, from3, step3) = asked[i : i + 3]
        assert none is None and step2 > 0 and step3 > 0
        assert from2 == p1 and from3 == p2 and p1 < p2 < p3
    monkeypatch.setattr(Curvature, "first_step", lambda self, pixels: None)  # torch's cautious first step
    cautious = moves()
    assert statistics.median(carried) > 3 * statistics.median(cautious), (carried, cautious)
