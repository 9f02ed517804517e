"""Results: finished runs kept by their task's digest, so that a run identical to one already done on this server
is served from it at once."""

from __future__ import annotations

import collections
import hashlib
import pickle
import threading

from .job import DONE, Finished, Job


class Results:
    """Finished runs by their task's digest, the most recently used kept within `mb`: a run identical to one already
    done on this server (same pictures and settings; one server has one set of weights) is served from it at once,
    so a class that all asks for the room's defaults waits for one run, not thirty (benchmarks/bench_class.py
    --same)."""

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
            run = Finished(tuple(job.frames), tuple(job.history), job.pictured, tuple(job.outputs))
        size = run.nbytes()
        with self._lock:
            if job.key in self._runs or size > self.budget:
                return
            self._runs[job.key] = (run, size)
            self._bytes += size
            while self._bytes > self.budget:
                self._bytes -= self._runs.popitem(last=False)[1][1]
