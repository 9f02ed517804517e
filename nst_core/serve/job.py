"""A Job (one submitted task, as the pages see it) and a Shot (one of its frames as it crosses to the page), the
Backend seam a queue runs tasks through, and shots()/drive(), which turn a task's frames into Shots for any backend.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from ..tasks import Task

log = logging.getLogger(__name__)
QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"


@dataclass(frozen=True)
class Shot:
    """A frame as it crosses to the page: the step's numbers and, at the preview cadence, a PNG."""

    step: int
    total: int
    losses: dict[str, float]
    elapsed: float
    size: tuple[int, int]
    png: bytes | None = None
    part: tuple[int, int] | None = None  # a run made of parts: (this step's part, 1-based; parts)
    output: bool = False  # this step finished one of the run's outputs (png: that output)

    @classmethod
    def of(cls, frame) -> Shot:
        png = None
        if frame.image is not None:
            buf = io.BytesIO()
            frame.image.save(buf, format="PNG", compress_level=1)  # fast; previews are re-encoded at the end
            png = buf.getvalue()
        part = getattr(frame, "part", None)
        return cls(
            frame.step,
            frame.total,
            dict(frame.losses),
            frame.elapsed,
            tuple(frame.size),
            png,
            tuple(part) if part else None,
            bool(getattr(frame, "output", False)),
        )

    @property
    def done(self) -> bool:
        return self.step == self.total

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png)).convert("RGB")


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
    frames: list[Shot] = field(default_factory=list)  # shots with images, thinned to max_frames (of the first part)
    outputs: list[Shot] = field(default_factory=list)  # the run's outputs, in order, every one of them
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

    def ended_at(self) -> Shot:
        """The shot a run's steps and seconds are told from: the last picture's, or for a run of parts (whose
        picture is its first part's) the latest step of the whole run."""
        return self.latest if self.outputs else self.final_frames()[-1]

    def outputs_so_far(self, last: int) -> tuple[int, list[Shot]]:
        """How many outputs the run has finished, and the last `last` of them (a live view's strip)."""
        with self.lock:
            return len(self.outputs), self.outputs[-last:]

    def _record(self, shot: Shot) -> None:
        with self.lock:
            self.latest = shot
            self.history.append({"step": shot.step, **shot.losses})
            if shot.png is None:
                return
            self.pictured = shot
            if shot.output:
                self.outputs.append(shot)
            if shot.part and shot.part[0] > 1:  # a run of parts: its animation is its first part being made
                return
            self._images_seen += 1
            if shot.done or shot.output or (self._images_seen - 1) % self._stride == 0:
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
            self.outputs = list(twin.outputs)
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
        """Kept shots plus the last image (a stopped run ends on whatever it had); for a run of parts, its first
        part being made, ending on that part's output."""
        with self.lock:
            if self.outputs:
                first = self.outputs[0]
                return [f for f in self.frames if f is not first] + [first]
            frames = list(self.frames)
            if self.pictured is not None and (not frames or frames[-1] is not self.pictured):
                frames.append(self.pictured)
            return frames


@dataclass(frozen=True)
class Finished:
    """What a page shows of a run that ended DONE: the kept shots, the losses of every step, the last picture, and a
    run's outputs."""

    frames: tuple[Shot, ...]
    history: tuple[dict, ...]
    last: Shot
    outputs: tuple[Shot, ...] = ()

    def nbytes(self) -> int:
        pictures = {id(s): s for s in (*self.frames, self.last, *self.outputs)}.values()
        return sum(len(s.png or b"") for s in pictures) + 200 * len(self.history)


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
