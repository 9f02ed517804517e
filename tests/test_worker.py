"""The backends that run outside the server, on the same tests: worker processes (the app's default) and
Ray actors on a local Ray instance (NST_RUNNER=ray). Real runs, failures, crashes, stop, order and the
one-run-per-session rule across the process boundary."""

import re
import time

import pytest

from nst_core import Settings
from nst_core.serve.errors import Busy
from nst_core.serve.job import DONE, FAILED, RUNNING, STOPPED
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.tasks.still import StyleTask
from tests.conftest import wait
from tests.tasks import Crashing, Hanging, Logged, Raising, Ticking, read_log

pytestmark = pytest.mark.process

DIED = {
    "process": r"^the worker process ended (while running|during this run) \(exit code 9\); "
    r"it starts again for the next run$",
    "ray": r"^the Ray worker \(pid \d+ on 127\.0\.0\.1\) died during this run; a new one is starting$",
}


@pytest.fixture(scope="module", params=["process", pytest.param("ray", marks=pytest.mark.ray)])
def runner(request):
    if request.param == "process":
        from nst_core.serve.backends.process import ProcessBackend

        backend = ProcessBackend("original", "cpu", Limits())
    else:
        from nst_core.serve.backends.ray import RayBackend

        backend = RayBackend("original", "cpu", Limits(), num_cpus=2)  # a local instance, on 127.0.0.1
    backend.name = request.param
    yield Runner(backend, Limits(heartbeat_timeout=1.0), poll=0.1)
    backend.close()


def worker_pid(backend) -> int:
    slot = backend.pool.idle()[0]
    if backend.name == "process":
        return slot.proc.pid
    return (slot.info or backend.ray.get(slot.ready))["pid"]  # an actor's info is read at its first run


def test_a_real_run_streams_png_previews_from_the_worker(runner, content, style):
    job = runner.submit(StyleTask(content, (style,), Settings(size=64, iterations=6, preview_every=2)))
    wait(lambda: not job.active, beat=[job])
    assert job.state == DONE, job.reason
    assert [h["step"] for h in job.history] == [1, 2, 3, 4, 5, 6]
    shots = job.final_frames()
    assert [s.step for s in shots] == [2, 4, 6] and shots[-1].png[:4] == b"\x89PNG"
    assert shots[-1].image().size == (64, 43)


def test_a_failing_run_is_one_line_and_the_next_run_works(runner):
    bad = runner.submit(Raising(2))
    wait(lambda: not bad.active, beat=[bad])
    assert bad.state == FAILED and bad.reason == "RuntimeError: out of memory"
    assert len(bad.history) == 2
    good = runner.submit(Ticking(3, 0.01))
    wait(lambda: not good.active, beat=[good])
    assert good.state == DONE


def test_a_worker_that_dies_fails_its_run_and_is_restarted(runner):
    pid = worker_pid(runner.backend)
    dead = runner.submit(Crashing(2))
    wait(lambda: not dead.active, beat=[dead])
    assert dead.state == FAILED and re.match(DIED[runner.backend.name], dead.reason), dead.reason
    assert len(dead.history) == 2  # what it had sent before it died is kept
    after = runner.submit(Ticking(3, 0.01))
    wait(lambda: not after.active, timeout=120, beat=[after])
    assert after.state == DONE and worker_pid(runner.backend) != pid


def test_a_cuda_error_that_breaks_the_gpu_is_reported_at_once_and_the_next_run_gets_a_new_worker(runner):
    """After such an error every later call on that GPU fails: the worker says why (not the hang limit, 16 minutes
    later), and its process (its actor) is replaced, so the next run works."""
    from tests.gpu_tasks import CudaBroken

    pid = worker_pid(runner.backend)
    bad = runner.submit(CudaBroken(2))
    wait(lambda: not bad.active, beat=[bad])
    assert bad.state == FAILED and bad.reason == "RuntimeError: CUDA error: an illegal memory access was encountered"
    after = runner.submit(Ticking(3, 0.01))
    wait(lambda: not after.active, timeout=120, beat=[after])
    assert after.state == DONE and worker_pid(runner.backend) != pid, after.reason


def test_stop_ends_the_run_in_the_worker_and_keeps_the_picture(runner, tmp_path):
    """Stop ends the run in the worker at the next step: the worker closes the run right after the step in
    progress (every step it made reached the page, none came after), and the page hears of the end soon after
    (bounds with room for a loaded machine: the steps here take 10 ms)."""
    log = tmp_path / "run.log"
    job = runner.submit(Logged(100_000, 0.01, log))
    wait(lambda: len(job.history) >= 5, beat=[job])
    job.cancel("stopped by you")
    t = time.monotonic()
    wait(lambda: not job.active, beat=[job])
    ended = time.monotonic()
    assert job.state == STOPPED and job.reason == "stopped by you" and job.finished_ok
    wait(lambda: log.exists() and read_log(log)[-1][0] != "step")  # the worker writes its last line
    rows = read_log(log)
    *steps, (how, _, closed) = rows
    assert how == "closed" and len(job.history) == len(steps) == steps[-1][1] < 100_000
    assert closed - steps[-1][2] < 5  # closed after the step that saw the stop, not later
    assert ended - closed < 10 and ended - t < 30
    follow = runner.submit(Ticking(2, 0.01))  # the worker is free again, with no stale "stop" in its way
    wait(lambda: not follow.active, beat=[follow])
    assert follow.state == DONE and len(follow.history) == 2


def test_queue_order_one_run_per_session_and_closed_tabs_across_the_process_boundary(runner):
    a = runner.submit(Ticking(100, 0.02), owner="tab-a")  # 2 s: longer than the 1 s heartbeat timeout
    with pytest.raises(Busy):
        runner.submit(Ticking(3), owner="tab-a")
    b = runner.submit(Ticking(3, 0.02), owner="tab-b")
    closed = runner.submit(Ticking(3, 0.02), owner="tab-closed")  # this tab never polls again
    c = runner.submit(Ticking(3, 0.02), owner="tab-c")
    wait(lambda: not c.active, beat=[a, b, c])
    assert [j.state for j in (a, b, closed, c)] == [DONE, DONE, STOPPED, DONE]
    assert closed.reason == "the page was closed" and not closed.history
    assert a.started < b.started < c.started
    # b started only after a had sent its last frame: one run at a time in the one worker
    assert b.started >= a.started + a.history[-1]["step"] * 0.02 - 0.05
    assert runner.backend.slots == 1 and RUNNING not in (a.state, b.state, c.state)


def test_a_worker_that_sends_nothing_past_the_time_limit_is_killed_and_its_slot_comes_back(runner):
    """The runner asks a run past NST_MAX_SECONDS to stop; a worker that cannot even answer is killed once it has
    been silent for the limit plus NST_HANG_GRACE, its run fails in one line and the next run gets the slot."""
    from nst_core.serve.backends.slots import silence_limit

    limits = Limits(max_seconds=1.0, hang_grace=1.0)
    if runner.backend.name == "process":
        from nst_core.serve.backends.process import ProcessBackend

        backend = ProcessBackend("original", "cpu", limits)
        backend.name = "process"
    else:  # the module's backend (its Ray instance has no CPUs left for a second one), with these limits' silence
        backend = runner.backend
        backend.silence = silence_limit(limits)
    try:
        pid = worker_pid(backend)
        job = Runner(backend, limits, poll=0.1).submit(Hanging(1))
        wait(lambda: not job.active, timeout=60, beat=[job])
        assert job.state == FAILED and job.reason.startswith("the worker sent nothing for 2 s"), job.reason
        assert "\n" not in job.reason and len(job.history) == 1
        after = Runner(backend, Limits(), poll=0.1).submit(Ticking(3, 0.01))  # the slot, with a new worker
        wait(lambda: not after.active, timeout=120, beat=[after])
        assert after.state == DONE and worker_pid(backend) != pid, after.reason
    finally:
        if backend is runner.backend:
            backend.silence = silence_limit(Limits())
        else:
            backend.close()


def test_two_lanes_of_one_worker_run_two_runs_at_once_each_as_it_would_run_alone(content, style, tmp_path):
    """The GPU's way (serve/backends/lanes.py) on the CPU: one worker process with two lanes. Two runs overlap in
    time, and each ends on exactly the picture it ends on alone (they share only the read-only VGG19); a worker that
    dies fails both, and the next run starts it again."""
    import numpy as np

    from nst_core.serve.backends.process import ProcessBackend

    backend = ProcessBackend("original", "cpu", Limits(), lanes=2)
    backend.name = "process"
    try:
        assert backend.slots == 2 and len({lane.worker for lane in backend.pool.idle()}) == 1
        # Every run runs (none is served from an identical one: the same task goes three times).
        r = Runner(backend, Limits(heartbeat_timeout=60, result_cache_mb=0), poll=0.1)
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        jobs = [r.submit(Logged(20, 0.02, log)) for log in logs]
        wait(lambda: not any(j.active for j in jobs), beat=jobs)
        (a0, a1), (b0, b1) = ((read_log(log)[0][2], read_log(log)[-1][2]) for log in logs)
        assert a0 < b1 and b0 < a1  # at once, in one process
        task = StyleTask(content, (style,), Settings(size=64, iterations=10, preview_every=10))
        alone = r.submit(task)
        wait(lambda: not alone.active, beat=[alone])
        pair = [r.submit(task), r.submit(task)]
        wait(lambda: not any(j.active for j in pair), beat=pair)
        assert not any(j.cached for j in (alone, *pair)) and pair[1].started < pair[0].started + pair[0].latest.elapsed
        pictures = [np.asarray(j.final_frames()[-1].image()) for j in (alone, *pair)]
        assert all(j.state == DONE for j in (alone, *pair))
        # Exact: these workers run on the CPU, where the same run computes the same numbers in whichever thread. (On a
        # GPU cuDNN may pick other kernels or summation orders from run to run: there, a tolerance.)
        assert np.array_equal(pictures[0], pictures[1]) and np.array_equal(pictures[0], pictures[2])
        pid = worker_pid(backend)
        dead = [r.submit(Crashing(2)), r.submit(Ticking(100_000, 0.01))]
        wait(lambda: not any(j.active for j in dead), beat=dead)
        assert [j.state for j in dead] == [FAILED, FAILED], [j.reason for j in dead]
        assert all(re.match(DIED["process"], j.reason) for j in dead), [j.reason for j in dead]
        after = r.submit(Ticking(3, 0.01))
        wait(lambda: not after.active, timeout=120, beat=[after])
        assert after.state == DONE and worker_pid(backend) != pid
    finally:
        backend.close()


def test_closing_a_backend_ends_a_shared_worker_only_after_its_busy_lane_has_stopped():
    from nst_core.serve.backends.process import ProcessBackend

    backend = ProcessBackend("original", "cpu", Limits(), lanes=2)
    r = Runner(backend, Limits(heartbeat_timeout=60), poll=0.1)
    job = r.submit(Ticking(100_000, 0.01))
    wait(lambda: len(job.history) >= 3, beat=[job])
    [idle] = backend.pool.idle()
    backend.close()  # the idle lane is retired at once; the process is not: the other lane is busy
    assert idle.worker.proc.poll() is None
    n = len(job.history)
    wait(lambda: len(job.history) > n + 3, beat=[job])  # the run goes on
    job.cancel("stopped by you")
    wait(lambda: not job.active, beat=[job])
    wait(lambda: idle.worker.proc.poll() is not None, timeout=10)  # and then the process ends
    assert job.state == STOPPED and job.finished_ok


def test_the_end_of_a_killed_worker_is_not_told_to_the_next_run_on_its_new_process():
    """A hung worker is killed and the next run starts a new process at once (run() holds the worker's lock while it
    starts one). The old process's reader hears of the end meanwhile: it must tell only the old process's runs, and
    leave the new process alone. Before, it told the new run that its worker had died (seen once in CI)."""
    import queue
    import threading

    from nst_core.serve.backends.process import WorkerProcess

    def readers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "nst-worker-reader"}

    others = readers()  # of other tests' workers
    w = WorkerProcess("original", "cpu")
    try:
        old, (old_reader,) = w.proc, readers() - others
        with w._lock:  # as run() does
            w.kill()  # the old process ends; its reader hears it at once and waits for the lock
            wait(lambda: old.poll() is not None)
            time.sleep(0.5)  # (the reader has seen the end before the new process starts, as in CI)
            w._start()  # the next run's new process ...
            box = w._inbox.setdefault(999, queue.Queue())  # ... and that run's inbox
        old_reader.join(timeout=30)  # the old reader has had the lock and said what it says
        assert not old_reader.is_alive()
        assert box.empty() and w.proc is not old and w.proc.poll() is None
        w._inbox.pop(999)
        shots = []
        w.run(Ticking(3, 0.01), shots.append, threading.Event(), silence=60)  # and the new process runs
        assert [s.step for s in shots] == [1, 2, 3]
    finally:
        w.close()
