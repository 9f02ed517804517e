"""The queue: Jobs with heartbeats, one run per session, first come first served over a backend's slots.

Pages submit a task (anything picklable with `frames(backbone) -> Iterator[Frame]` and `work()`: a StyleTask,
a Lab Plan), then poll its Job. The Runner keeps the queue and the promises made to the pages (order, place,
waiting time, one run per session, a closed tab stopped within `heartbeat_timeout`, the time limit) and
teaches the cost model from every finished run. A backend runs one task per slot and reports its frames as
Shots (previews as PNG bytes, never tensors). A run identical to one already done here (a class pressing Run on
the samples) is served from that run's result at once (Results). This module has the Backend seam and the
in-process backend (ThreadBackend); the others are process_backend.py and ray_backend.py, which service.py picks.
The queue never imports them.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import io
import itertools
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Protocol

from PIL import Image

from ..schedule import pixel_evals
from ..settings import Settings
from .limits import Limits

log = logging.getLogger(__name__)
QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"


class Refused(Exception):
    """A run not taken; the message is the one line for the page."""


class Busy(Refused):
    """This session already has a run waiting or in progress."""


class QueueFull(Refused):
    """The server's queue (NST_MAX_QUEUE), or this client address's share of it (NST_RUNS_PER_CLIENT), is full."""


class RunFailed(RuntimeError):
    """A run failed where it ran (a worker); the message is already the one line for the page."""


class StartFailed(RuntimeError):
    """The workers could not start (a cluster out of reach, say); the message is the one line for people."""


class WorkerDied(RunFailed):
    """The process or actor running a run ended during it; the message says so in one line."""


class WorkerHung(RunFailed):
    """The worker sent nothing for longer than the run's time limit and its grace (it is killed)."""


@dataclass(frozen=True)
class Shot:
    """A frame as it crosses to the page: the step's numbers and, at the preview cadence, a PNG."""

    step: int
    total: int
    losses: dict[str, float]
    elapsed: float
    size: tuple[int, int]
    png: bytes | None = None

    @classmethod
    def of(cls, frame) -> Shot:
        png = None
        if frame.image is not None:
            buf = io.BytesIO()
            frame.image.save(buf, format="PNG", compress_level=1)  # fast; previews are re-encoded at the end
            png = buf.getvalue()
        return cls(frame.step, frame.total, dict(frame.losses), frame.elapsed, tuple(frame.size), png)

    @property
    def done(self) -> bool:
        return self.step == self.total

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png)).convert("RGB")


class Task(Protocol):
    # Optional, a class attribute: `cacheable = True` says the frames depend on the task's fields alone (the same
    # pictures and settings give the same run), so a finished run may be served again to an identical task.

    def frames(self, backbone) -> Iterator: ...

    def work(self) -> tuple[float, int]:
        """(pixel-evaluations, steps) of the whole task, for the cost model (nst_core.schedule.pixel_evals)."""


class Backend(Protocol):
    slots: int  # runs at once

    def run(self, task: Task, emit: Callable[[Shot], None], cancelled: threading.Event) -> None:
        """Run `task`, calling emit() per frame, until it ends or `cancelled` is set; raise on failure."""


@dataclass(eq=False)  # a job is an identity: hashable, compared by id
class Job:
    """One submitted run. The runner's thread writes it; pages read it (under `lock`)."""

    task: Task
    label: str = ""
    estimate: float = 0.0  # seconds the cost model expected at submission (0 = unknown)
    max_frames: int = 48
    owner: str | None = None  # the session that submitted it (one active run per owner)
    client: str | None = None  # the client address it came from (Limits.runs_per_client)
    room: str | None = None  # the class room it belongs to (Runner.progress)
    first: bool = False  # a teacher's run: ahead of every run that is not
    key: str | None = None  # the task's digest, if it is cacheable (Results)
    cached: bool = False  # served from an identical run done before, not run
    # Called once with the job when it has ended (any state), by the thread that ended it, outside the runner's
    # lock: the submitter's own work on a run's end (writing its result), done whether or not a page is watching.
    on_end: Callable[[Job], None] | None = field(default=None, repr=False)
    id: int = 0
    state: str = QUEUED
    reason: str = ""  # why it stopped or failed, in one line
    frames: list[Shot] = field(default_factory=list)  # shots with images, thinned to max_frames
    history: list[dict] = field(default_factory=list)  # {step, content, style, tv, total} per step
    latest: Shot | None = None  # the most recent shot (with or without image)
    pictured: Shot | None = None  # the most recent shot with an image: the result so far
    started: float | None = None
    seen: float = field(default_factory=time.monotonic)  # last heartbeat from the page
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _stride: int = 1  # keep every _stride-th image frame
    _images_seen: int = 0

    @property
    def image(self) -> bytes | None:
        """PNG of the most recent image."""
        return self.pictured.png if self.pictured is not None else None

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

    def snapshot(self) -> tuple[str, Shot | None, bytes | None, int, list[dict]]:
        """state, the latest shot, the latest image (PNG) and its step, the losses of every step so far."""
        with self.lock:
            step = self.pictured.step if self.pictured is not None else 0
            return self.state, self.latest, self.image, step, list(self.history)

    def _record(self, shot: Shot) -> None:
        with self.lock:
            self.latest = shot
            self.history.append({"step": shot.step, **shot.losses})
            if shot.png is None:
                return
            self.pictured = shot
            self._images_seen += 1
            if shot.done or (self._images_seen - 1) % self._stride == 0:
                self.frames.append(shot)
            if len(self.frames) > self.max_frames:
                # Keep the first and every other one after it, and keep half as many from now on.
                self.frames = self.frames[:1] + self.frames[2::2]
                self._stride *= 2

    def _set_state(self, state: str) -> None:
        with self.lock:
            self.state = state

    def _end_as(self, twin: Finished) -> None:
        """End as the identical run `twin` ended, without running."""
        with self.lock:
            self.frames, self.history = list(twin.frames), list(twin.history)
            self.latest = self.pictured = twin.last
            self.started, self.cached, self.state = time.monotonic(), True, DONE

    def _ended(self) -> None:
        """Tell on_end, once, that the run has ended; what it raises is only logged."""
        with self.lock:
            call, self.on_end = self.on_end, None
        if call is not None:
            try:
                call(self)
            except Exception:
                log.exception("run %d: its on_end failed", self.id)

    def final_frames(self) -> list[Shot]:
        """Kept shots plus the last image (a stopped run ends on whatever it had)."""
        with self.lock:
            frames = list(self.frames)
            if self.pictured is not None and (not frames or frames[-1] is not self.pictured):
                frames.append(self.pictured)
            return frames


@dataclass(frozen=True)
class Finished:
    """What a page shows of a run that ended DONE: the kept shots, the losses of every step, the last picture."""

    frames: tuple[Shot, ...]
    history: tuple[dict, ...]
    last: Shot

    def nbytes(self) -> int:
        pictures = {id(s): s for s in (*self.frames, self.last)}.values()
        return sum(len(s.png or b"") for s in pictures) + 200 * len(self.history)


class Results:
    """Finished runs by their task's digest, the most recently used kept within `mb`: a run identical to one already
    done on this server (same pictures and settings; one server has one set of weights) is served from it at once.
    Measured: a class of thirty on the samples at its room's pace gets every picture in about the time of one
    (benchmarks/bench_class.py --same)."""

    def __init__(self, mb: float):
        self.budget = mb * 2**20
        self._runs: collections.OrderedDict[str, tuple[Finished, int]] = collections.OrderedDict()  # with its bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def key(self, task) -> str | None:
        """The task's digest (of everything it is made of, pictures included), or None if it is not cacheable."""
        if self.budget <= 0 or not getattr(task, "cacheable", False):
            return None
        try:
            return hashlib.sha256(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()
        except (pickle.PicklingError, TypeError, AttributeError):  # a task only ever run in this process, say
            return None

    def get(self, key: str | None) -> Finished | None:
        with self._lock:
            if key is None or key not in self._runs:
                return None
            self._runs.move_to_end(key)
            return self._runs[key][0]

    def put(self, job: Job) -> None:
        """Keep a run that ended DONE (not one that was stopped or failed)."""
        with job.lock:
            if job.key is None or job.state != DONE or job.pictured is None:
                return
            run = Finished(tuple(job.frames), tuple(job.history), job.pictured)
        size = run.nbytes()
        with self._lock:
            if job.key in self._runs or size > self.budget:
                return
            self._runs[job.key] = (run, size)
            self._bytes += size
            while self._bytes > self.budget:
                self._bytes -= self._runs.popitem(last=False)[1][1]


class Eta(NamedTuple):
    """When a job should start and be done, in seconds from now; `twin`: an identical run ahead of it will be its
    result (it takes no slot)."""

    start: float
    done: float
    twin: bool = False


def one_line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, (RunFailed, StartFailed)):
        return text
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


class Runner:
    """Runs Jobs through a backend, at most `backend.slots` at once, first come first served. With a cost model,
    it estimates each submitted task and learns from each finished one."""

    def __init__(self, backend: Backend, limits: Limits | None = None, poll: float = 0.5, cost=None):
        self.backend = backend
        self.limits = limits or Limits()
        self.cost = cost
        self._queue: list[Job] = []
        self._running: set[Job] = set()
        self._done_in: collections.Counter[str] = collections.Counter()  # pictures finished, per room
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._poll = poll
        self.results = Results(self.limits.result_cache_mb)
        threading.Thread(target=self._watchdog, name="nst-watchdog", daemon=True).start()

    @property
    def slots(self) -> int:
        return self.backend.slots

    def submit(
        self,
        task: Task,
        label: str = "",
        estimate: float | None = None,
        owner: str | None = None,
        client: str | None = None,
        room: str | None = None,
        first: bool = False,
        on_end: Callable[[Job], None] | None = None,
    ) -> Job:
        """Queue a run, or raise (Refused) if `owner` already has one waiting or running (Busy), or the queue is
        full, or `client`'s share of it (QueueFull). `estimate`: seconds, by default the cost model's. `first`:
        a teacher's run, queued ahead of every run that is not (after the teachers' before it), one per room at a
        time: while that room's teacher has one ahead, waiting or running, a further one queues like anyone's. A
        run identical to one done before is served at once: the job comes back DONE, with `cached` set. `on_end(job)`
        is called once when the job has ended, however it ends (before submit returns, for a run served at once)."""
        if estimate is None:
            estimate = self.cost.seconds(*task.work()) if self.cost is not None else 0.0
        job = Job(
            task=task,
            label=label,
            estimate=estimate,
            max_frames=self.limits.max_frames,
            owner=owner,
            client=client,
            room=room,
            first=first,
            key=self.results.key(task),
            id=next(self._ids),
            on_end=on_end,
        )
        lim = self.limits
        with self._lock:
            active = [j for j in self._queue + list(self._running) if j.active]
            if owner is not None and any(j.owner == owner for j in active):
                raise Busy("you already have a run waiting or in progress: stop it (or let it finish) first")
            if self._serve(job):  # takes no place in the queue
                served = True
            else:
                served = False
                if len(active) >= lim.max_queue:
                    raise QueueFull(
                        f"the server's queue is full ({len(active)} runs waiting or running, its limit: "
                        "NST_MAX_QUEUE); try again in a few minutes"
                    )
                if client is not None and sum(j.client == client for j in active) >= lim.runs_per_client:
                    raise QueueFull(
                        f"{lim.runs_per_client} runs from your network are already waiting or running (its limit: "
                        "NST_RUNS_PER_CLIENT); try again when one has finished"
                    )
                # A room's teacher goes ahead of the queue with one run at a time: a further run from the teacher's
                # link (another tab, another page) waits like anyone's, so a teacher link cannot starve a class.
                if first and any(j.first and j.room == room for j in active):
                    job.first = False
                at = sum(j.first for j in self._queue) if job.first else len(self._queue)
                self._queue.insert(at, job)
        if served:
            job._ended()
        else:
            self._dispatch()
        return job

    def position(self, job: Job) -> int:
        """1 for the next to start, 0 if not waiting."""
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else 0

    def wait_seconds(self, job: Job | None = None) -> float:
        """Expected wait before `job` (or a run submitted now) starts (see when())."""
        if job is None:
            with self._lock:
                return self._schedule()[1][0]
        return self.when(job).start

    def when(self, job: Job) -> Eta:
        """When `job` should start and be done: a waiting one as the runner will schedule it, a running one now."""
        with self._lock:
            if job in self._queue:
                return self._schedule()[0][job]
            return Eta(0.0, job.seconds_left() if job in self._running else 0.0)

    def _schedule(self) -> tuple[dict[Job, Eta], list[float]]:
        """(Under _lock.) Each waiting job's Eta, as the runner will run them: on the first free slot (each slot free
        when its run's time left is over), or, for a twin of a run ahead of it, when that run is done; and when the
        slots are free after them all (a heap: the first is the soonest)."""
        free = [j.seconds_left() for j in self._running]
        free += [0.0] * max(0, self.slots - len(free))
        heapq.heapify(free)
        done_at = {j.key: j.seconds_left() for j in self._running if j.key is not None}
        etas = {}
        for j in self._queue:
            if j.key is not None and j.key in done_at:
                etas[j] = Eta(done_at[j.key], done_at[j.key], twin=True)
                continue
            start = heapq.heappop(free)
            etas[j] = Eta(start, start + j.estimate)
            heapq.heappush(free, etas[j].done)
            if j.key is not None:
                done_at[j.key] = etas[j].done
        return etas, free

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._running) + list(self._queue)

    def progress(self, room: str) -> dict:
        """A class room's pictures: done (since this server started), painting, waiting, and the seconds until the
        last of them should be done (0 if none)."""
        with self._lock:
            running = [j for j in self._running if j.room == room]
            waiting = [j for j in self._queue if j.room == room and not j._cancel.is_set()]
            done = self._done_in[room]
            etas = self._schedule()[0]
        last = max([etas[j].done for j in waiting] + [j.seconds_left() for j in running] + [0.0])
        return {"done": done, "painting": len(running), "waiting": len(waiting), "last": last}

    def stats(self) -> dict:
        with self._lock:
            return {"running": len(self._running), "queued": len(self._queue), "slots": self.slots}

    def _serve(self, job: Job) -> bool:
        """(Under _lock.) End `job` as an identical run done before ended, if there is one."""
        twin = self.results.get(job.key)
        if twin is None:
            return False
        job._end_as(twin)
        if job.room is not None:
            self._done_in[job.room] += 1
        log.info("run %d done: served from an identical run of %d steps", job.id, twin.last.step)
        return True

    def _dispatch(self) -> None:
        ended = []
        with self._lock:
            for job in list(self._queue):  # twins of a run that has just ended need no slot: served now
                if not job._cancel.is_set() and self._serve(job):
                    self._queue.remove(job)
                    ended.append(job)
            while len(self._running) < self.slots:
                # The first waiting run that is not a twin of a running one: a twin takes no slot (it is served when
                # its run is done), so with several slots a class pressing Run on one run paints it once.
                painting = {j.key for j in self._running if j.key is not None}
                job = next((j for j in self._queue if j.key is None or j.key not in painting), None)
                if job is None:
                    break
                self._queue.remove(job)
                if job._cancel.is_set():
                    job._set_state(STOPPED)
                    ended.append(job)
                    continue
                self._running.add(job)
                job.started = time.monotonic()
                job._set_state(RUNNING)
                threading.Thread(target=self._run, args=(job,), name=f"nst-job-{job.id}", daemon=True).start()
        for job in ended:
            job._ended()

    def _run(self, job: Job) -> None:
        def emit(shot: Shot) -> None:
            job._record(shot)
            self._check_time(job)

        try:
            self.backend.run(job.task, emit, job._cancel)
            state = STOPPED if job._cancel.is_set() else DONE
        except Exception as e:  # reported to the page in one line; the runner keeps going
            job.reason = one_line(e)
            state = FAILED
        with self._lock:
            self._running.discard(job)
        job._set_state(state)
        self.results.put(job)
        last = job.latest
        if state == DONE and self.cost is not None and last is not None:
            self.cost.learn(*job.task.work(), seconds=last.elapsed)
        if state in (DONE, STOPPED) and job.room is not None and job.finished_ok:
            with self._lock:
                self._done_in[job.room] += 1
        log.info(
            "run %d %s: %d steps in %.2f s (%.2f s after it started)%s",
            job.id,
            state,
            last.step if last else 0,
            last.elapsed if last else 0.0,
            time.monotonic() - job.started,
            f"; {job.reason}" if job.reason else "",
        )
        self._dispatch()
        job._ended()  # after the next run has its slot

    def _check_time(self, job: Job) -> None:
        if job.started is not None and time.monotonic() - job.started > self.limits.max_seconds:
            job.cancel(f"time limit of {self.limits.max_seconds:.0f} s per run reached")

    def _watchdog(self) -> None:
        """Stop runs (and drop queued ones) whose page has gone quiet, and runs past their time limit (also those
        that send nothing: their backend kills a worker that stays silent, see slots.relay)."""
        while True:
            time.sleep(self._poll)
            now = time.monotonic()
            for job in self.jobs():
                if now - job.seen > self.limits.heartbeat_timeout:
                    job.cancel("the page was closed")
                elif job.state == RUNNING:
                    self._check_time(job)
            with self._lock:
                dropped = [j for j in self._queue if j._cancel.is_set()]
                self._queue = [j for j in self._queue if not j._cancel.is_set()]
            for job in dropped:
                job._set_state(STOPPED)
                job._ended()


@dataclass(frozen=True)
class StyleTask:
    """A style-transfer run, as it crosses to a worker (images already fitted to the output size)."""

    content: Image.Image
    styles: tuple[Image.Image, ...]
    settings: Settings
    cacheable: ClassVar[bool] = True  # the same pictures and settings give the same run (Results)

    def frames(self, backbone) -> Iterator:
        from ..transfer import stylize

        return stylize(self.content, list(self.styles), self.settings, backbone)

    def work(self) -> tuple[float, int]:
        w, h = self.content.size
        return pixel_evals(self.settings, min(w, h) / max(w, h)), self.settings.iterations


class ThreadBackend:
    """Runs tasks in the runner's own thread, in this process, on a backbone loaded here."""

    def __init__(self, backbone, slots: int = 1):
        self.backbone, self.slots = backbone, slots

    def run(self, task: Task, emit: Callable[[Shot], None], cancelled: threading.Event) -> None:
        drive(task.frames(self.backbone), emit, cancelled)


def shots(frames: Iterator, cancelled) -> Iterator[Shot]:
    """Frames as shots until the end or until `cancelled` (anything with is_set()); closes the run."""
    try:
        for frame in frames:
            yield Shot.of(frame)
            if cancelled.is_set():
                break
    finally:
        frames.close()


def drive(frames: Iterator, emit: Callable[[Shot], None], cancelled) -> None:
    """shots() handed to `emit` one by one."""
    for shot in shots(frames, cancelled):
        emit(shot)
