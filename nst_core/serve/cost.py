"""The cost model: how long a run takes on this server, probed once by each worker and then learnt from the
runs the runner finishes."""

from __future__ import annotations

import threading
import time

from ..schedule import pixel_evals
from ..settings import Settings


class CostModel:
    """Run time = steps x a fixed cost + pixel-evaluations (nst_core.schedule.pixel_evals) x a rate."""

    def __init__(self, seconds_per_pixel_eval: float, seconds_per_step: float = 0.0):
        self.rate, self.per_step = seconds_per_pixel_eval, seconds_per_step
        self._lock = threading.Lock()

    @classmethod
    def probe(cls, backbone, sizes: tuple[int, int] = (64, 256), evals: int = 6) -> CostModel:
        """Time two short real runs (stylize(): targets, the optimiser, previews every other step, as a run in the
        app) at two sizes and fit a fixed cost per step and a cost per pixel-evaluation (in the worker, at start).
        Timing bare evaluations instead left out a run's own overheads: its runs took 1.37x the estimate
        (benchmarks/bench_class.py, 256 px, 80 steps, 2-core Xeon)."""
        import numpy as np
        from PIL import Image

        from ..transfer import stylize

        rng = np.random.default_rng(0)
        photo, painting = (Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(2))
        times = []
        for size in sizes:
            s = Settings(size=size, iterations=evals, scales=1, preview_every=2)
            for _ in stylize(photo, [painting], s.replace(iterations=2), backbone):  # warm-up
                pass
            t = time.perf_counter()
            for _ in stylize(photo, [painting], s, backbone):
                pass
            times.append((time.perf_counter() - t) / evals)
        (a, b), (ta, tb) = (s * s * 0.75 for s in sizes), times  # a 4:3 picture, as the probe's
        rate = max(1e-12, (tb - ta) / (b - a))
        return cls(rate, max(0.0, ta - rate * a))

    def seconds(self, pixel_evals: float, steps: int) -> float:
        return self.per_step * steps + self.rate * pixel_evals

    def estimate(self, settings: Settings, aspect: float = 1.0) -> float:
        """Seconds for a run with these settings on a picture of this aspect (short side / long side)."""
        return self.seconds(pixel_evals(settings, aspect), settings.iterations)

    # A run of this many pixel-evaluations (a 256 px run of 80 steps has about 4 million) counts fully when the rate is
    # learnt; a smaller one counts less: its time is mostly what the fixed cost per step does not quite capture (a
    # 128 px run of 40 steps put the default run's estimate up by half, seen in the Studio).
    FULL_WEIGHT = 4e6

    def learn(self, pixel_evals: float, steps: int, seconds: float) -> None:
        """Fold a finished run into the per-pixel rate (exponential average: follows the server's load)."""
        seconds -= self.per_step * steps
        if pixel_evals <= 0 or seconds <= 0:
            return
        weight = 0.5 * min(1.0, pixel_evals / self.FULL_WEIGHT)
        with self._lock:
            self.rate = (1 - weight) * self.rate + weight * seconds / pixel_evals
