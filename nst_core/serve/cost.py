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
    def probe(cls, backbone, sizes: tuple[int, int] = (64, 256), evals: int = 2) -> CostModel:
        """Time a few real evaluations at two sizes and fit a fixed and a per-pixel cost (in the worker)."""
        import torch

        from ..transfer import Objective

        times = []
        for size in sizes:
            x = torch.rand(1, 3, size, size, device=backbone.device)
            obj = Objective(backbone, Settings(), x, [x])
            y = x.clone().requires_grad_(True)
            obj(y)["total"].backward()  # warm-up
            t = time.perf_counter()
            for _ in range(evals):
                y.grad = None
                obj(y)["total"].backward()
            if backbone.device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) / evals)
        (a, b), (ta, tb) = sizes, times
        rate = max(1e-12, (tb - ta) / (b * b - a * a))
        return cls(rate, max(0.0, ta - rate * a * a))

    def seconds(self, pixel_evals: float, steps: int) -> float:
        return self.per_step * steps + self.rate * pixel_evals

    def estimate(self, settings: Settings, aspect: float = 1.0) -> float:
        """Seconds for a run with these settings on a picture of this aspect (short side / long side)."""
        return self.seconds(pixel_evals(settings, aspect), settings.iterations)

    def learn(self, pixel_evals: float, steps: int, seconds: float) -> None:
        """Fold a finished run into the per-pixel rate (exponential average: follows the server's load)."""
        seconds -= self.per_step * steps
        if pixel_evals <= 0 or seconds <= 0:
            return
        with self._lock:
            self.rate = 0.5 * self.rate + 0.5 * seconds / pixel_evals
