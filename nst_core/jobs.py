"""A process-wide runner: runs frame generators on worker threads, a few at a time, with a queue.

Pages submit work and poll the Job; a page that stops polling (tab closed) stops its run within
`heartbeat_timeout` seconds. Nothing here knows about Streamlit.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from PIL import Image

from .limits import Limits
from .transfer import Frame

QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"


@dataclass(eq=False)  # a job is an identity: hashable, compared by id
class Job:
    """One submitted run. The worker thread writes it; pages read it (under `lock`)."""

    work: Callable[[], Iterator[Frame]]
    label: str = ""
    estimate: float = 0.0  # seconds the cost model expected at submission (0 = unknown)
    max_frames: int = 48
    id: int = 0
    state: str = QUEUED
    reason: str = ""  # why it stopped or failed, in one line
    frames: list[Frame] = field(default_factory=list)  # frames with images, thinned to max_frames
    history: list[dict] = field(default_factory=list)  # {step, content, style, tv, total} per step
    latest: Frame | None = None  # the most recent frame (with or without image)
    image: Image.Image | None = None  # the most recent image: the result so far
    started: float | None = None
    seen: float = field(default_factory=time.monotonic)  # last heartbeat from the page
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _stride: int = 1  # keep every _stride-th image frame
    _images_seen: int = 0

    @property
    def finished_ok(self) -> bool:
        return self.state in (DONE, STOPPED) and self.image is not None

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    def seconds_left(self) -> float:
        """Time left: the larger of the estimate's remainder and a straight-line extrapolation (which
        alone is too hopeful in a coarse-to-fine run, whose later steps are the expensive ones)."""
        f = self.latest
        if f is None:
            return self.estimate
        linear = f.elapsed / f.step * (f.total - f.step)
        return max(linear, self.estimate - f.elapsed) if f.step < f.total else 0.0

    def heartbeat(self) -> None:
        self.seen = time.monotonic()

    def cancel(self, reason: str = "stopped") -> None:
        if self.active and not self._cancel.is_set():
            self.reason = reason
            self._cancel.set()

    def snapshot(self) -> tuple[str, Frame | None, Image.Image | None, list[dict]]:
        with self.lock:
            return self.state, self.latest, self.image, list(self.history)

    def _record(self, frame: Frame) -> None:
        with self.lock:
            self.latest = frame
            self.history.append({"step": frame.step, **frame.losses})
            if frame.image is None:
                return
            self.image = frame.image
            self._images_seen += 1
            if frame.done or (self._images_seen - 1) % self._stride == 0:
                self.frames.append(frame)
            if len(self.frames) > self.max_frames:
                # Keep the first and every other one after it, and keep half as many from now on.
                self.frames = self.frames[:1] + self.frames[2::2]
                self._stride *= 2

    def final_frames(self) -> list[Frame]:
        """Kept frames plus the last image (a stopped run ends on whatever it had)."""
        with self.lock:
            frames = list(self.frames)
            if self.latest is not None and self.image is not None and (not frames or frames[-1].image is not self.image):
                last = self.latest
                frames.append(Frame(last.step, last.total, last.losses, last.elapsed, last.size, self.image))
            return frames


class Runner:
    """Runs Jobs on threads, at most `concurrency` at once, first come first served."""

    def __init__(self, concurrency: int = 1, limits: Limits | None = None, poll: float = 0.5):
        self.limits = limits or Limits()
        self.concurrency = concurrency
        self._queue: list[Job] = []
        self._running: set[Job] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._poll = poll
        threading.Thread(target=self._watchdog, name="nst-watchdog", daemon=True).start()

    def submit(self, work: Callable[[], Iterator[Frame]], label: str = "", estimate: float = 0.0) -> Job:
        job = Job(work=work, label=label, estimate=estimate, max_frames=self.limits.max_frames, id=next(self._ids))
        with self._lock:
            self._queue.append(job)
        self._dispatch()
        return job

    def position(self, job: Job) -> int:
        """1 for the next to start, 0 if not waiting."""
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else 0

    def stats(self) -> dict:
        with self._lock:
            return {"running": len(self._running), "queued": len(self._queue), "concurrency": self.concurrency}

    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and len(self._running) < self.concurrency:
                job = self._queue.pop(0)
                if job._cancel.is_set():
                    job.state = STOPPED
                    continue
                self._running.add(job)
                job.state, job.started = RUNNING, time.monotonic()
                threading.Thread(target=self._run, args=(job,), name=f"nst-job-{job.id}", daemon=True).start()

    def _run(self, job: Job) -> None:
        gen = None
        try:
            gen = job.work()
            for frame in gen:
                job._record(frame)
                if job._cancel.is_set():
                    break
                if time.monotonic() - job.started > self.limits.max_seconds:
                    job.reason = f"time limit of {self.limits.max_seconds:.0f} s per run reached"
                    break
            state = STOPPED if (job._cancel.is_set() or job.reason) else DONE
        except Exception as e:  # reported to the page in one line; the runner keeps going
            job.reason = f"{type(e).__name__}: {e}".splitlines()[0]
            state = FAILED
        finally:
            if gen is not None:
                gen.close()
        with job.lock:
            job.state = state
        with self._lock:
            self._running.discard(job)
        self._dispatch()

    def _watchdog(self) -> None:
        """Stop runs (and drop queued ones) whose page has gone quiet."""
        while True:
            time.sleep(self._poll)
            now = time.monotonic()
            with self._lock:
                jobs = list(self._queue) + list(self._running)
            for job in jobs:
                if now - job.seen > self.limits.heartbeat_timeout:
                    job.cancel("the page was closed")
            with self._lock:
                dropped = [j for j in self._queue if j._cancel.is_set()]
                self._queue = [j for j in self._queue if not j._cancel.is_set()]
            for job in dropped:
                job.state = STOPPED


class CostModel:
    """Run time = steps x fixed cost + (pixels x evaluations) x rate: probed once, then learnt from runs."""

    def __init__(self, seconds_per_pixel_eval: float, seconds_per_step: float = 0.0):
        self.rate, self.per_step = seconds_per_pixel_eval, seconds_per_step
        self._lock = threading.Lock()

    @classmethod
    def probe(cls, backbone, sizes: tuple[int, int] = (64, 256), evals: int = 2) -> CostModel:
        """Time a few real evaluations at two sizes and fit a fixed and a per-pixel cost."""
        import torch

        from .settings import Settings
        from .transfer import Objective

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

    @staticmethod
    def pixel_evals(settings, aspect: float = 1.0) -> float:
        """Sum over the schedule of (pixels at that level) x (evaluations there); aspect = short/long side."""
        from .transfer import scale_sizes, split_iterations

        sizes = scale_sizes(settings)
        counts = split_iterations(settings.iterations, len(sizes))
        return sum(s * s * aspect * n for s, n in zip(sizes, counts, strict=True))

    def estimate(self, settings, aspect: float = 1.0) -> float:
        return self.per_step * settings.iterations + self.rate * self.pixel_evals(settings, aspect)

    def learn(self, settings, aspect: float, seconds: float, steps: int) -> None:
        """Fold a finished run into the per-pixel rate (exponential average: follows the server's load)."""
        pe = self.pixel_evals(settings.replace(iterations=steps), aspect) if steps > 0 else 0
        seconds -= self.per_step * steps
        if pe <= 0 or seconds <= 0:
            return
        with self._lock:
            self.rate = 0.5 * self.rate + 0.5 * seconds / pe


@dataclass
class Engine:
    """What a server shares between all sessions: the backbone, the runner, the cost model, the limits."""

    backbone: object
    runner: Runner
    cost: CostModel
    limits: Limits

    @classmethod
    def start(cls, weights: str = "original", device: str = "auto", limits: Limits | None = None) -> Engine:
        import torch

        from .backbone import load_backbone

        limits = limits or Limits.from_env()
        backbone = load_backbone(weights, device)
        gpus = torch.cuda.device_count() if backbone.device.type == "cuda" else 0
        runner = Runner(limits.concurrent(backbone.device.type, gpus), limits)
        return cls(backbone, runner, CostModel.probe(backbone), limits)

    @property
    def device_type(self) -> str:
        return self.backbone.device.type
