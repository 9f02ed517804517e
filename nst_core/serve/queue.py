"""The queue: Jobs with heartbeats, one run per session, first come first served over a backend's slots.

Pages submit a task (nst_core.tasks: anything picklable with `frames(backbone) -> Iterator[Frame]` and
`work()`), then poll its Job. The Runner keeps the queue and the promises made to the pages (order, place,
waiting time, one run per session, a closed tab stopped within `heartbeat_timeout`, the time limit) and
teaches the cost model from every finished run. A backend runs one task per slot and reports its frames as
Shots (previews as PNG bytes, never tensors). A run identical to one already done here (a class pressing Run on
the samples) is served from that run's result at once (Results). The backends (backends/) run
the tasks; service.py picks one, and the queue never imports them.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from ..tasks import Task
from .errors import Busy, QueueFull, one_line
from .job import DONE, FAILED, RUNNING, STOPPED, Backend, Job, Shot
from .limits import Limits
from .results import Results

log = logging.getLogger(__name__)


class QueueStats(NamedTuple):
    running: int  # runs in progress
    queued: int  # runs waiting
    slots: int  # runs at once


class Eta(NamedTuple):
    """When a job should start and be done, in seconds from now; `twin`: an identical run ahead of it will be its
    result (it takes no slot)."""

    start: float
    done: float
    twin: bool = False


class RoomProgress(NamedTuple):
    """A class room's pictures: done (since this server started), painting, waiting, and the seconds until the last
    of them should be done (0 if none)."""

    done: int
    painting: int
    waiting: int
    last: float


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

    def progress(self, room: str) -> RoomProgress:
        """Where class `room`'s pictures are (RoomProgress)."""
        with self._lock:
            running = [j for j in self._running if j.room == room]
            waiting = [j for j in self._queue if j.room == room and not j._cancel.is_set()]
            done = self._done_in[room]
            etas = self._schedule()[0]
        last = max([etas[j].done for j in waiting] + [j.seconds_left() for j in running] + [0.0])
        return RoomProgress(done, len(running), len(waiting), last)

    def stats(self) -> QueueStats:
        with self._lock:
            return QueueStats(len(self._running), len(self._queue), self.slots)

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
