"""The cost model (serve/cost.py): a robust probe and both terms learnt from finished runs, with the times
injected (nothing here is timed against the real clock)."""

import itertools

import pytest

from nst_core import Settings
from nst_core.schedule import pixel_evals
from nst_core.serve import cost as cost_module
from nst_core.serve.cost import CostModel, probe_sizes

TRUE_RATE, TRUE_STEP = 2e-7, 0.05  # this host at rest: 0.05 s per step and 0.2 s per million pixel-evaluations
RUNS = [Settings(size=128, iterations=40), Settings(size=256, iterations=80), Settings()]


def truth(s: Settings) -> float:
    return TRUE_STEP * s.iterations + TRUE_RATE * pixel_evals(s)


def true_probe(size: int) -> float:
    """Seconds per step of the probe's run at this size (a 4:3 picture), on this host at rest."""
    return TRUE_STEP + TRUE_RATE * size * size * 0.75


def test_the_probe_keeps_the_fastest_of_its_repeats():
    loads = itertools.cycle([5.0, 1.0, 1.05])  # the first timing of each size under load, then two at rest
    model = CostModel.fit_probe((64, 256), lambda size: next(loads) * true_probe(size))
    assert model.rate == pytest.approx(TRUE_RATE, rel=0.06) and model.per_step == pytest.approx(TRUE_STEP, rel=0.06)
    # Trusting one timing (the old probe) keeps the load's 5x for the worker's life.
    once = CostModel.fit_probe((64, 256), lambda size: 5.0 * true_probe(size), repeats=1)
    assert once.estimate(Settings()) == pytest.approx(5 * truth(Settings()))
    calls = []
    CostModel.fit_probe((64, 256), lambda size: calls.append(size) or true_probe(size))
    assert calls == [64, 64, 256, 256]  # two that agree are enough


@pytest.mark.parametrize("inflation", [3.0, 5.0, 10.0])
def test_a_probe_taken_under_load_recovers_after_a_few_real_runs(inflation):
    model = CostModel(inflation * TRUE_RATE, inflation * TRUE_STEP)
    default = Settings()
    assert model.estimate(default) == pytest.approx(inflation * truth(default))
    noise = itertools.cycle([1.1, 0.92, 1.05])  # real runs are not all alike
    for s in RUNS:
        model.learn(pixel_evals(s), s.iterations, next(noise) * truth(s))
    for s in [*RUNS, Settings(size=384, iterations=120), Settings(size=768)]:
        assert 1 / 1.5 <= model.estimate(s) / truth(s) <= 1.5, s
    assert model.probe_is_off


def test_both_terms_move_to_the_runs():
    """A probe whose fixed cost per step is ten times too high and whose rate is right: runs of several sizes
    bring each term within 1.3x of the truth (the old model moved only the rate, by half a run at most)."""
    model = CostModel(TRUE_RATE, 10 * TRUE_STEP)
    before = model.rate, model.per_step
    for s in RUNS * 2:
        model.learn(pixel_evals(s), s.iterations, truth(s))
    assert model.per_step != before[1] and model.rate != before[0]
    assert 1 / 1.3 <= model.per_step / TRUE_STEP <= 1.3 and 1 / 1.3 <= model.rate / TRUE_RATE <= 1.3


def test_one_run_scales_both_terms_and_runs_of_one_shape_keep_the_probes_shape():
    model = CostModel(3 * TRUE_RATE, 3 * TRUE_STEP)
    s = Settings(size=256, iterations=80)
    model.learn(pixel_evals(s), s.iterations, truth(s))
    assert model.rate == pytest.approx(TRUE_RATE, rel=1e-6) and model.per_step == pytest.approx(TRUE_STEP, rel=1e-6)
    assert not model.probe_is_off or model.estimate(Settings()) == pytest.approx(truth(Settings()), rel=1e-6)


def test_the_model_follows_the_host_and_forgets_old_runs():
    model = CostModel(TRUE_RATE, TRUE_STEP)
    for _ in range(CostModel.RUNS):
        for s in RUNS:
            model.learn(pixel_evals(s), s.iterations, 2 * truth(s))  # the host got twice as busy
    assert model.estimate(Settings()) == pytest.approx(2 * truth(Settings()), rel=0.01)
    for _ in range(CostModel.RUNS):
        model.learn(pixel_evals(Settings()), 160, truth(Settings()))  # and quiet again
    assert model.estimate(Settings()) == pytest.approx(truth(Settings()), rel=0.01)


def test_nonsense_runs_teach_nothing():
    model = CostModel(TRUE_RATE, TRUE_STEP)
    for pe, steps, seconds in [(0, 10, 1.0), (1e6, 0, 1.0), (1e6, 10, 0.0), (1e6, 10, float("nan"))]:
        model.learn(pe, steps, seconds)
    assert (model.rate, model.per_step) == (TRUE_RATE, TRUE_STEP) and not model.probe_is_off


def test_the_probe_sizes_are_larger_on_a_gpu():
    assert probe_sizes("cpu") == (64, 256)
    small, large = probe_sizes("cuda")
    assert small >= 256 and large >= 1024  # past the sizes where a GPU's pass is launch-bound
    # A launch-bound GPU (a fixed 5 ms per step up to 512 px, then compute): the CPU's sizes see no slope.
    gpu = lambda size: max(0.005, 2e-9 * size * size * 6)  # noqa: E731
    at_cpu_sizes = CostModel.fit_probe(probe_sizes("cpu"), gpu)
    at_gpu_sizes = CostModel.fit_probe(probe_sizes("cuda"), gpu)
    big = Settings(size=2048, iterations=160, scales=1)
    real = 160 * gpu(2048)
    assert at_cpu_sizes.estimate(big) < real / 3  # collapsed: far too hopeful
    assert 1 / 1.5 <= at_gpu_sizes.estimate(big) / real <= 1.5
    assert cost_module.probe_sizes("some-new-accelerator") == probe_sizes("cuda")
