"""The one job panel every page uses: estimate -> Run -> queue place or live progress (a polling fragment) ->
finish, with Stop, and the run's outcome in one line.

The run lives in the runner, not in this script, so a slider moved or a page reloaded does not kill it; the
panel keeps only the Job and what the page needs to finish it in session_state, under its own name. A page
gives the panel its live view (drawn from each poll's snapshot) and its finish (which turns the job's frames
into the page's result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import streamlit as st

from nst_core.serve.errors import Refused
from nst_core.serve.job import DONE, QUEUED, RUNNING, Job

from .common import client_address, fmt_seconds, md, service, session_id

POLL_QUEUED, POLL_RUNNING = 3.0, 1.0  # seconds between a page's polls while its run waits / runs
STRIP = 8  # a run's last outputs shown while it runs (a clip's painted frames)
R = TypeVar("R")  # a page's result (the Studio's results.Result, the Lab's LabResult)
M = TypeVar("M")  # what a page keeps of a run it submitted, for its finish (the Studio's results.Asked)


@dataclass(frozen=True)
class Progress:
    """What a live view draws, from one snapshot of the job."""

    state: str
    latest: object  # the latest Shot, or None
    image: bytes | None  # the latest picture (PNG)
    image_step: int  # the step that picture is of
    history: list[dict]
    outputs: int = 0  # outputs the run has finished (a clip's painted frames)
    strip: list = field(default_factory=list)  # the last of them (Shots)


def wait_note() -> str:
    """For an estimate before Run: the queue's wait, if any."""
    wait = service().runner.wait_seconds()
    return f" plus about {fmt_seconds(wait)} waiting for the runs ahead in the queue" if wait >= 1 else ""


class JobPanel(Generic[R, M]):
    """`name` keeps this panel's job and result apart from other pages' (one run per tab, on any page).

    live(progress) draws the page's live view; finish(job, meta) returns the page's result (kept as
    `self.result`) once the run has ended with a picture; failed(meta), if given, is told of a run that ended
    without one."""

    def __init__(
        self,
        name: str,
        live: Callable[[Progress], None],
        finish: Callable[[Job, M], R],
        failed: Callable[[M | None], None] | None = None,
    ):
        self.name, self._live, self._finish, self._failed = name, live, finish, failed

    def _get(self, what: str, default=None):
        return st.session_state.get(f"{self.name}_{what}", default)

    def _set(self, what: str, value) -> None:
        st.session_state[f"{self.name}_{what}"] = value

    @property
    def job(self) -> Job | None:
        return self._get("job")

    @property
    def result(self) -> R | None:
        return self._get("result")

    @property
    def meta(self) -> M | None:
        """What the page gave submit() for the run waiting or running (None when there is none)."""
        return self._get("meta")

    def keep(self, result: R) -> None:
        """Show `result` as this panel's (one kept elsewhere: a result's address)."""
        self._set("result", result)
        self._set("message", None)

    def adopt(self, job: Job, meta: M) -> None:
        """Watch and finish `job` here: a run submitted under the address this page has (before a reload, say)."""
        self._set("job", job)
        self._set("meta", meta)
        self._set("message", None)

    def busy(self) -> bool:
        """Whether this panel's run is waiting or running (one that ended between reruns is finished here)."""
        job = self.job
        if job is not None and not job.active:
            self._end(job)
        return self.job is not None

    def submit(
        self, task, label: str, meta: M, room: str | None = None, first: bool = False, on_end=None
    ) -> Job | None:
        """Queue `task` for this tab (in class `room`; `first`: a teacher's run); `meta` goes to finish() with the
        job, which is returned. A refusal (another run of this tab, a full queue) is said in one line (None).
        `on_end(job)` is called by the runner when the run ends, whether or not this page is still there."""
        svc = service()
        try:
            job = svc.runner.submit(
                task,
                label,
                owner=session_id(),
                client=client_address(svc.limits),
                room=room,
                first=first,
                on_end=on_end,
            )
        except Refused as e:
            st.error(f"Not started: {e}.")
            return None
        self._set("job", job)
        self._set("meta", meta)
        self._set("message", None)
        return job

    def show(self) -> None:
        """The live view while the run waits or runs (a fragment that polls), then the outcome's line."""
        job = self.job
        if job is not None:
            queued = job.state == QUEUED
            self._set("poll_queued", queued)
            # A waiting page has little news: thirty of them polling every second cost the server and browsers.
            st.fragment(self._poll, run_every=POLL_QUEUED if queued else POLL_RUNNING)()
        message = self._get("message")
        if message:
            getattr(st, message[0])(message[1])

    def _poll(self) -> None:
        job = self.job
        if job is None:
            return
        job.heartbeat()
        state, latest, image, image_step, history = job.snapshot()
        if state != QUEUED and self._get("poll_queued"):
            st.rerun()  # it has started: poll faster from now on (a full rerun makes the fragment anew)
        if state == QUEUED:
            st.info(queue_status(job))
        elif state == RUNNING and latest is not None:
            frame = f"Frame {latest.part[0]} of {latest.part[1]} · " if latest.part else ""
            st.progress(
                latest.step / latest.total,
                text=f"{frame}Step {latest.step} of {latest.total} · {latest.size[0]}x{latest.size[1]} px · "
                f"{fmt_seconds(latest.elapsed)} elapsed · about {fmt_seconds(job.seconds_left())} left",
            )
        elif state == RUNNING:
            st.progress(0.0, text="Computing the targets...")
        if state in (QUEUED, RUNNING) and st.button(
            "Stop", key=f"{self.name}_stop", icon=":material/stop:", help="Stop now and keep the picture so far."
        ):
            job.cancel("stopped by you")
        outputs, strip = job.outputs_so_far(STRIP)
        self._live(Progress(state, latest, image, image_step, history, outputs, strip))
        if not job.active:
            self._end(job)
            st.rerun()

    def _end(self, job: Job) -> None:
        """The run has ended: the page's result (once), and the outcome in one line."""
        meta = self._get("meta")
        self._set("job", None)
        self._set("meta", None)
        if not job.finished_ok:
            why = f"The run failed: {md(job.reason)}" if job.reason else "The run stopped before its first picture."
            self._set("message", ("error", why))
            if self._failed is not None:
                self._failed(meta)
            return
        self._set("result", self._finish(job, meta))
        last = job.ended_at()
        if job.state == DONE:
            done = f"Done: {last.step} steps in {fmt_seconds(last.elapsed)}."
            if job.cached:
                done += (
                    " The same run (these pictures and settings) was painted earlier on this server, so its result "
                    "is shown at once. Change any setting for a run of your own."
                )
            self._set("message", ("success", done))
        else:
            self._set(
                "message",
                ("warning", f"Run {job.reason} at step {last.step} of {last.total}; the picture so far is kept."),
            )


def queue_status(job: Job) -> str:
    runner = service().runner
    pos = runner.position(job)
    if not pos:
        return "Starting..."
    eta = runner.when(job)
    if eta.twin:
        return (
            f"Waiting for the same run (these pictures and settings), which is ahead of yours: its result will be "
            f"yours, in about {fmt_seconds(eta.done)}."
        )
    return (
        f"Waiting for a free slot: you are number {pos} in the queue ({runner.stats().running} run(s) in "
        f"progress). Starts in about {fmt_seconds(eta.start)}, done in about {fmt_seconds(eta.done)}."
    )
