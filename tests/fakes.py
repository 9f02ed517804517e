"""Services for page tests whose subject is the page, not the worker (AppTest runs a page in this process, so
a test can put its own Service in place of the server's): the in-process backend on the real network, and a
paced backend that runs no network and takes a step only when the test allows one, so that what a test sees
does not depend on this machine's speed. The worker-process and Ray backends have their own tests
(test_worker.py, test_ray.py), and the browser tests run the real server."""

from __future__ import annotations

import threading

from nst_core.images import fit
from nst_core.serve.backends.thread import ThreadBackend
from nst_core.serve.cost import CostModel
from nst_core.serve.job import Shot
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.serve.service import Service
from nst_core.transfer import Frame


class PacedBackend:
    """Runs a StyleTask as `settings.iterations` steps of made-up losses, each step waiting for the test's
    allow(); the previews are the photo at the run's size. allow() with no argument lets every run finish."""

    slots = 1

    def __init__(self):
        self._allowed = 0
        self._cond = threading.Condition()

    def allow(self, steps: int | None = None) -> None:
        with self._cond:
            self._allowed = 10**9 if steps is None else self._allowed + steps
            self._cond.notify_all()

    def run(self, task, emit, cancelled: threading.Event) -> None:
        s = task.settings
        picture = fit(task.content, s.size)
        for step in range(1, s.iterations + 1):
            with self._cond:
                while self._allowed <= 0 and not cancelled.is_set():
                    self._cond.wait(0.05)
                if cancelled.is_set():
                    return
                self._allowed -= 1
            image = picture if step % s.preview_every == 0 or step == s.iterations else None
            losses = {"content": 1.0 / step, "style": 2.0 / step, "tv": 0.1, "total": 3.0 / step + 0.1}
            emit(Shot.of(Frame(step, s.iterations, losses, 0.01 * step, picture.size, image)))


def service_on(backend, limits: Limits | None = None, weights: str = "no weights") -> Service:
    """A Service over `backend`, with a made-up cost model (these tests check no estimate's value)."""
    limits = limits or Limits()
    return Service(Runner(backend, limits, cost=CostModel(2e-7, 0.002)), limits, "CPU (test)", "cpu", weights)


def threaded(backbone, limits: Limits | None = None) -> Service:
    """Real runs on `backbone`, in this process (the runner's thread)."""
    return service_on(ThreadBackend(backbone), limits, backbone.source)
