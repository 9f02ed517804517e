"""The run errors: a run refused (the page says why in one line), or failed where it ran."""

from __future__ import annotations


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


def one_line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, (RunFailed, StartFailed)):
        return text
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
