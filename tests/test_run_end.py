"""A run's on_end (Job.on_end, given to Runner.submit): called once, whichever way the run ends, by the thread that
ended it, outside the runner's lock, with the job already in its final state; what it raises is only logged."""

import threading
import time

from nst_core.serve.backends.thread import ThreadBackend
from nst_core.serve.job import DONE, FAILED, STOPPED
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.transfer import Frame
from tests.tasks import IMG, Raising, Ticking


class Held:
    """A cacheable run of `n` steps that starts painting only once `gate` is set."""

    cacheable = True

    def __init__(self, n: int, name: str, gate: threading.Event | None = None):
        self.n, self.name = n, name
        self._gate = gate

    def __getstate__(self):  # the digest is the task's fields, not its gate
        return {"n": self.n, "name": self.name}

    def work(self):
        return 1e6 * self.n, self.n

    def frames(self, backbone):
        if self._gate is not None:
            self._gate.wait(30)
        for i in range(1, self.n + 1):
            yield Frame(i, self.n, {"content": 1.0, "style": 1.0, "tv": 0.0, "total": 2.0}, 0.01 * i, (8, 8), IMG)


class Ends:
    """Records each on_end call: the job's state then, and that the runner answered from inside it (its lock free)."""

    def __init__(self, runner):
        self.runner, self.calls, self.lock = runner, [], threading.Lock()
        self.done = threading.Event()

    def __call__(self, job):
        self.runner.stats()  # would deadlock under the runner's lock
        with self.lock:
            self.calls.append((job.id, job.state, threading.current_thread().name))
        self.done.set()

    def of(self, job):
        with self.lock:
            return [c for c in self.calls if c[0] == job.id]


def until(cond, beat=()):
    t = time.monotonic()
    while not cond():
        for job in beat:
            job.heartbeat()
        assert time.monotonic() - t < 60, "timed out"
        time.sleep(0.01)


def joined(job):
    for thread in threading.enumerate():
        if thread.name == f"nst-job-{job.id}":
            thread.join(60)


def test_every_way_a_run_ends_calls_its_on_end_once_in_its_final_state():
    r = Runner(ThreadBackend(None, 1), Limits(heartbeat_timeout=30))
    ends = Ends(r)
    gate = threading.Event()
    first = r.submit(Held(3, "x", gate), owner="a", on_end=ends)
    twin = r.submit(Held(3, "x"), owner="b", on_end=ends)  # waits for first's result, takes no slot
    dropped = r.submit(Ticking(3), owner="c", on_end=ends)
    dropped.cancel()  # closed while it waited
    gate.set()
    until(lambda: not first.active and not twin.active and not dropped.active)
    joined(first)
    assert ends.of(first) == [(first.id, DONE, f"nst-job-{first.id}")]
    assert [c[1] for c in ends.of(twin)] == [DONE] and twin.cached
    assert [c[1] for c in ends.of(dropped)] == [STOPPED]
    served = r.submit(Held(3, "x"), owner="d", on_end=ends)  # served at once: ended before submit returns
    assert served.cached and ends.of(served) == [(served.id, DONE, threading.current_thread().name)]
    failing = r.submit(Raising(2), owner="e", on_end=ends)
    until(lambda: not failing.active)
    joined(failing)
    assert [c[1] for c in ends.of(failing)] == [FAILED]
    assert len(ends.calls) == 5


def test_a_run_whose_page_went_quiet_ends_with_its_on_end_and_one_that_raises_is_only_logged(caplog):
    r = Runner(ThreadBackend(None, 1), Limits(heartbeat_timeout=0.3), poll=0.05)
    ends = Ends(r)
    quiet = r.submit(Ticking(100_000, 0.005), owner="a", on_end=ends)  # nobody sends its heartbeat
    waiting = r.submit(Ticking(100_000, 0.005), owner="b", on_end=ends)  # nor this one's: dropped from the queue
    until(lambda: not quiet.active and not waiting.active)
    joined(quiet)
    assert [c[1] for c in ends.of(quiet)] == [STOPPED] and quiet.reason == "the page was closed"
    assert [c[1] for c in ends.of(waiting)] == [STOPPED]

    def broken(job):
        raise OSError(28, "No space left on device")

    job = r.submit(Ticking(2, 0.001), owner="c", on_end=broken)
    until(lambda: not job.active, beat=[job])
    joined(job)
    assert job.state == DONE and "its on_end failed" in caplog.text
    after = r.submit(Ticking(2, 0.001), owner="c")  # the runner goes on
    until(lambda: not after.active, beat=[after])
    assert after.state == DONE
