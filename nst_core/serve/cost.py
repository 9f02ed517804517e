"""The cost model: how long a run takes on this server, probed by each worker when it starts and then fitted to the
runs the runner finishes."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

from ..schedule import pixel_evals
from ..settings import Settings

# The probe's two sizes per device. On a CPU a 64 px evaluation is mostly the fixed cost per step and a 256 px one
# mostly pixels. On a GPU both of those are launch-bound (a VGG19 pass and its backward are about a hundred kernels,
# whose launches take about as long as a 256 px pass computes): their times hardly differ, so the fitted rate
# collapses and every estimate above them is far too hopeful. At 256 and 1024 px the larger is compute-bound.
PROBE_SIZES = {"cpu": (64, 256), "cuda": (256, 1024), "mps": (128, 512)}
# Typical runs the probe's shape is kept by while the runs finished so far cannot tell both terms apart: a class's
# small run and the Studio's default.
TYPICAL = (Settings(size=128, iterations=40), Settings())


def probe_sizes(device_type: str) -> tuple[int, int]:
    return PROBE_SIZES.get(device_type, PROBE_SIZES["cuda"])


class CostModel:
    """Run time = steps x a fixed cost + pixel-evaluations (nst_core.schedule.pixel_evals) x a rate.

    It starts from the worker's probe and is fitted to the last RUNS finished runs (both terms, least squares in
    relative error). A probe taken while the host was busy (a neighbour, another worker starting) can be several
    times too slow: the runs correct it, both terms. While the runs alone cannot tell the two terms apart (all of
    one shape), the probe's shape is kept and scaled to them."""

    RUNS = 16  # the window of finished runs: the model follows the server's load
    PRIOR = 0.5  # the weight of each of the probe's (scaled) typical runs against one real run's 1

    def __init__(self, seconds_per_pixel_eval: float, seconds_per_step: float = 0.0):
        self.rate, self.per_step = seconds_per_pixel_eval, seconds_per_step
        self.probed = (self.rate, self.per_step)
        self._runs: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=self.RUNS)
        self._lock = threading.Lock()

    @classmethod
    def fit_probe(cls, sizes: tuple[int, int], seconds_per_step: Callable[[int], float], repeats: int = 3) -> CostModel:
        """A model from the time per step at two sizes (a 4:3 picture). Each size is timed up to `repeats` times
        and the fastest kept: a busy host only ever makes a run slower, so the fastest is the nearest to this host
        at rest. Two timings that agree within 15% are enough."""
        times = []
        for size in sizes:
            seen = [seconds_per_step(size)]
            while len(seen) < repeats:
                seen.append(seconds_per_step(size))
                a, b = sorted(seen)[:2]
                if b <= 1.15 * a:
                    break
            times.append(min(seen))
        (a, b), (ta, tb) = (s * s * 0.75 for s in sizes), times
        rate = max(1e-12, (tb - ta) / (b - a))
        return cls(rate, max(0.0, ta - rate * a))

    @classmethod
    def probe(cls, backbone, sizes: tuple[int, int] | None = None, evals: int = 6, repeats: int = 3) -> CostModel:
        """Time short real runs (stylize(): targets, the optimiser, previews every other step, as a run in the
        app) at two sizes for the backbone's device (probe_sizes) and fit a fixed cost per step and a cost per
        pixel-evaluation (in the worker, at start). Timing bare evaluations instead would leave out a run's own
        overheads, and every estimate would fall short of the real run."""
        import numpy as np
        from PIL import Image

        from ..transfer import stylize

        rng = np.random.default_rng(0)
        photo, painting = (Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(2))
        warm: set[int] = set()

        def seconds_per_step(size: int) -> float:
            s = Settings(size=size, iterations=evals, scales=1, preview_every=2)
            if size not in warm:  # a new shape's first passes pay for kernels chosen and memory found
                for _ in stylize(photo, [painting], s.replace(iterations=2), backbone):
                    pass
                warm.add(size)
            t = time.perf_counter()
            for _ in stylize(photo, [painting], s, backbone):
                pass
            return (time.perf_counter() - t) / evals

        return cls.fit_probe(sizes or probe_sizes(backbone.device.type), seconds_per_step, repeats)

    def seconds(self, pixel_evals: float, steps: int) -> float:
        return self.per_step * steps + self.rate * pixel_evals

    def estimate(self, settings: Settings, aspect: float = 1.0) -> float:
        """Seconds for a run with these settings on a picture of this aspect (short side / long side)."""
        return self.seconds(pixel_evals(settings, aspect), settings.iterations)

    def learn(self, pixel_evals: float, steps: int, seconds: float) -> None:
        """Fold a finished run in: both terms are fitted anew to the recent runs."""
        if pixel_evals <= 0 or steps <= 0 or not seconds > 0 or not math.isfinite(seconds):
            return
        with self._lock:
            self._runs.append((float(pixel_evals), int(steps), float(seconds)))
            self.rate, self.per_step = self._fit()

    @property
    def probe_is_off(self) -> bool:
        """Whether the finished runs say the probe was off by more than twice (too slow: taken under load; or too
        fast): the estimates now follow the runs, and a new probe would agree with them."""
        with self._lock:
            return bool(self._runs) and not 0.5 <= self._scale() <= 2.0

    def _probe_seconds(self, pe: float, steps: int) -> float:
        rate, per_step = self.probed
        return per_step * steps + rate * pe

    def _scale(self) -> float:
        """How much slower the runs were than the probe said (a geometric mean: one odd run moves it little)."""
        logs = [math.log(t / max(1e-12, self._probe_seconds(pe, n))) for pe, n, t in self._runs]
        return math.exp(sum(logs) / len(logs))

    def _fit(self) -> tuple[float, float]:
        """Least squares of (per_step x steps + rate x pixel-evaluations) / seconds - 1 over the runs and the
        probe's typical runs scaled to them, both terms >= 0."""
        scale = self._scale()
        rows = [(n, pe, t, 1.0) for pe, n, t in self._runs]
        for s in TYPICAL:
            pe, n = pixel_evals(s), s.iterations
            rows.append((n, pe, scale * self._probe_seconds(pe, n), self.PRIOR))
        sxx = sxy = syy = sx = sy = 0.0
        for n, pe, t, w in rows:
            x, y = n / t, pe / t
            sxx, sxy, syy, sx, sy = sxx + w * x * x, sxy + w * x * y, syy + w * y * y, sx + w * x, sy + w * y
        det = sxx * syy - sxy * sxy
        if det > 1e-12 * sxx * syy:
            per_step, rate = (sx * syy - sy * sxy) / det, (sy * sxx - sx * sxy) / det
            if per_step >= 0 and rate > 0:
                return rate, per_step
        # The best fit has a term below zero: the better of each term alone.
        rate_alone, per_step_alone = sy / syy, sx / sxx

        def error(per_step: float, rate: float) -> float:
            return sum(w * ((per_step * n + rate * pe) / t - 1) ** 2 for n, pe, t, w in rows)

        if error(0.0, rate_alone) <= error(per_step_alone, 0.0):
            return max(1e-12, rate_alone), 0.0
        return 1e-12, per_step_alone
