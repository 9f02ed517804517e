"""The process-wide runner: queue order, cancellation, closed pages, the concurrency limit."""

import collections
import threading
import time

import pytest

from nst_core import Settings
from nst_core.schedule import pixel_evals
from nst_core.serve.backends.thread import ThreadBackend
from nst_core.serve.cost import CostModel
from nst_core.serve.errors import Busy
from nst_core.serve.job import DONE, FAILED, QUEUED, RUNNING, STOPPED, Shot
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.tasks.still import StyleTask
from nst_core.transfer import Frame
from tests.helpers import Held
from tests.tasks import IMG, Ticking


def runner(concurrency=1, backbone=None, **kw):
    return Runner(ThreadBackend(backbone, concurrency), **kw)


def ticking(n, delay=0.02, log=None, name=None, image_every=1):
    return Ticking(n, delay, log, name, image_every)


class Work:
    """A task made of a plain generator function (only for the in-process backend)."""

    def __init__(self, fn):
        self.fn = fn

    def frames(self, backbone):
        return self.fn()


def wait(cond, timeout=10.0):
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.01)


def test_jobs_run_in_submission_order_one_at_a_time():
    log = []
    r = runner(concurrency=1)
    jobs = [r.submit(ticking(3, log=log, name=k)) for k in "abc"]
    assert r.position(jobs[0]) == 0 and r.position(jobs[1]) == 1 and r.position(jobs[2]) == 2
    assert jobs[2].state == QUEUED
    wait(lambda: all(j.state == DONE for j in jobs))
    assert log == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b"), ("start", "c"), ("end", "c")]
    assert [h["step"] for h in jobs[0].history] == [1, 2, 3] and jobs[0].image[:4] == b"\x89PNG"


def test_the_limit_holds_under_many_concurrent_runs():
    r = runner(concurrency=2)
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            yield from ticking(5, 0.01).frames(None)
        finally:
            with lock:
                active[0] -= 1

    jobs = [r.submit(Work(work)) for _ in range(8)]
    wait(lambda: all(j.state == DONE for j in jobs))
    assert peak[0] == 2


def test_cancel_stops_a_run_and_keeps_its_result():
    r = runner(concurrency=1)
    job = r.submit(ticking(10_000, 0.005))
    wait(lambda: len(job.history) >= 3)
    job.cancel("stopped by you")
    wait(lambda: not job.active)
    assert job.state == STOPPED and job.reason == "stopped by you" and job.finished_ok
    assert job.final_frames()[-1].image().size == IMG.size


def test_a_cancelled_queued_job_never_starts():
    log = []
    r = runner(concurrency=1)
    first = r.submit(ticking(20, 0.01, log, "first"))
    second = r.submit(ticking(3, log=log, name="second"))
    second.cancel()
    wait(lambda: first.state == DONE and second.state == STOPPED)
    assert ("start", "second") not in log


def test_a_closed_page_frees_its_place_within_seconds():
    r = runner(concurrency=1, limits=Limits(heartbeat_timeout=0.5), poll=0.1)
    abandoned = r.submit(ticking(100_000, 0.005))
    waiting = r.submit(ticking(3))
    t = time.monotonic()
    while time.monotonic() - t < 0.4:  # the second page keeps polling; the first has gone
        waiting.heartbeat()
        time.sleep(0.05)
    assert abandoned.state == RUNNING
    while abandoned.active:
        waiting.heartbeat()
        assert time.monotonic() - t < 5
        time.sleep(0.05)
    assert abandoned.state == STOPPED and abandoned.reason == "the page was closed"
    wait(lambda: waiting.state == DONE)


def test_frames_are_bounded_and_spread_over_the_run():
    r = runner(concurrency=1, limits=Limits(max_frames=10))
    job = r.submit(ticking(200, 0.0005))
    wait(lambda: job.state == DONE)
    steps = [f.step for f in job.final_frames()]
    assert len(steps) <= 11 and steps[0] == 1 and steps[-1] == 200
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 2 * 200 / 8


def test_time_limit_and_failures_are_reported():
    r = runner(concurrency=1, limits=Limits(max_seconds=0.2))
    slow = r.submit(ticking(100_000, 0.01))
    wait(lambda: not slow.active)
    assert slow.state == STOPPED and "time limit" in slow.reason and slow.finished_ok

    def broken():
        yield from ticking(2).frames(None)
        raise RuntimeError("out of memory\nmore lines")

    bad = r.submit(Work(broken))
    wait(lambda: not bad.active)
    assert bad.state == FAILED and bad.reason == "RuntimeError: out of memory"


def test_a_real_style_transfer_run_on_the_runner(backbone, content, style):
    r = runner(concurrency=1, backbone=backbone)
    s = Settings(size=64, iterations=6, preview_every=2)
    job = r.submit(StyleTask(content, (style,), s))
    wait(lambda: not job.active, 60)
    assert job.state == DONE and [f.step for f in job.final_frames()] == [2, 4, 6]


def test_cost_model_estimates_and_learns(backbone):
    cost = CostModel.probe(backbone, sizes=(32, 64), evals=1)
    s = Settings(size=256)
    est = cost.estimate(s)
    assert est > 0 and cost.estimate(s.replace(iterations=2 * s.iterations)) > 1.9 * est
    cost.learn(pixel_evals(s), s.iterations, seconds=2 * est)
    assert cost.estimate(s) > 1.4 * est


def test_the_runner_estimates_each_task_and_learns_from_each_finished_one():
    cost = CostModel(1e-7, 0.0)  # 0.1 s per step of a million pixel-evaluations
    r = Runner(ThreadBackend(None), cost=cost)
    job = r.submit(ticking(10, 0.02))  # its frames say 0.02 s per step: twice the model's
    assert job.estimate == pytest.approx(1.0)
    wait(lambda: job.state == DONE)
    learnt = cost.seconds(*job.task.work())
    assert learnt == pytest.approx(0.2)  # the run took 0.2 s: the model now says so (serve/cost.py's fit)
    stopped = r.submit(ticking(100_000, 0.001))
    wait(lambda: len(stopped.history) >= 3)
    stopped.cancel()
    wait(lambda: not stopped.active)
    assert cost.seconds(*job.task.work()) == learnt  # a run that did not finish teaches nothing


def test_time_left_uses_the_estimate_while_the_straight_line_is_too_hopeful():
    r = runner(concurrency=1)
    job = r.submit(ticking(10, 0.01), estimate=100.0)
    assert job.seconds_left() == 100.0
    wait(lambda: job.state == DONE)
    assert job.seconds_left() == 0.0
    job.latest = Shot(2, 10, {}, 1.0, (8, 8))
    assert job.seconds_left() == 99.0  # linear alone would say 4 s
    job.estimate = 0.0
    assert job.seconds_left() == 4.0


def test_one_session_has_one_run_at_a_time_and_the_queue_knows_its_wait():
    r = runner(concurrency=1)
    held = Held()
    first = r.submit(held, estimate=10.0, owner="tab-a")
    with pytest.raises(Busy, match="already have a run"):
        r.submit(ticking(3), owner="tab-a")
    second = r.submit(ticking(3), estimate=4.0, owner="tab-b")
    third = r.submit(ticking(3), estimate=4.0, owner="tab-c")
    wait(lambda: first.latest is not None)
    # first has 8 s left (its 10 s estimate less the 2 s it has run); second waits for that, third for it and
    # all of second, and a run submitted now for all three
    assert first.seconds_left() == 8.0
    assert r.wait_seconds(second) == 8.0 and r.wait_seconds(third) == 12.0 and r.wait_seconds() == 16.0
    held.release.set()
    first.cancel()
    wait(lambda: not first.active)
    again = r.submit(ticking(3), owner="tab-a")  # once it has ended, the same tab may run again
    wait(lambda: again.state == DONE and third.state == DONE)
    assert r.wait_seconds(third) == 0.0


def test_the_queue_has_a_cap_and_each_client_a_share_of_it():
    from nst_core.serve.errors import QueueFull

    r = runner(concurrency=1, limits=Limits(max_queue=4, runs_per_client=2))
    held = [Held() for _ in range(5)]
    a1 = r.submit(held[0], owner="a1", client="10.0.0.1")
    r.submit(held[1], owner="a2", client="10.0.0.1")
    with pytest.raises(QueueFull, match=r"^2 runs from your network are already waiting or running .*NST_RUNS_PER"):
        r.submit(held[2], owner="a3", client="10.0.0.1")  # one script opening sessions: its own share only
    r.submit(held[2], owner="b1", client="10.0.0.2")
    r.submit(held[3], owner="c1", client="10.0.0.3")
    with pytest.raises(QueueFull, match=r"^the server's queue is full \(4 runs waiting or running, its limit"):
        r.submit(held[4], owner="d1", client="10.0.0.4")
    assert len(r.jobs()) == 4  # nothing refused was queued, nothing queued was shortened
    held[0].release.set()
    a1.cancel()
    wait(lambda: not a1.active)
    r.submit(held[4], owner="d1", client="10.0.0.4")  # a place freed, a new client gets it
    for h in held:
        h.release.set()


def test_a_run_past_its_time_limit_is_stopped_even_when_it_sends_nothing():
    class Silent:
        def frames(self, backbone):
            yield Frame(1, 10, {"total": 1.0}, 0.1, (8, 8), IMG)
            time.sleep(1.5)  # a step far longer than the limit: the runner stops the run at the next step
            yield Frame(2, 10, {"total": 1.0}, 1.6, (8, 8), IMG)
            time.sleep(30)
            yield Frame(3, 10, {"total": 1.0}, 31.6, (8, 8), IMG)

    r = runner(concurrency=1, limits=Limits(max_seconds=0.5), poll=0.05)
    job = r.submit(Silent())
    wait(lambda: job.reason != "", timeout=5)
    assert "time limit" in job.reason and len(job.history) == 1  # the watchdog noticed, not the next frame
    wait(lambda: not job.active, timeout=10)
    assert job.state == STOPPED and len(job.history) == 2


def test_quota_is_a_sliding_window_per_key():
    from nst_core.serve.limits import Quota

    clock = [0.0]
    q = Quota(2, 60, clock=lambda: clock[0])
    assert q.take("a") and q.take("a")
    assert q.wait("a") == 60 and not q.take("a") and q.wait("b") == 0
    clock[0] = 30
    assert q.wait("a") == 30 and not q.take("a")
    clock[0] = 60.01
    assert q.wait("a") == 0 and q.take("a")


# Cacheable test runs: their frames depend on their fields alone. A run waits at its gate (GATES[name], opened by
# the test) before its first step; RUNS counts the runs that really ran.
GATES: dict[str, threading.Event] = {}
RUNS: collections.Counter = collections.Counter()


class Gated:
    cacheable = True

    def __init__(self, n: int, name: str):
        self.n, self.name = n, name

    def work(self):
        return 1e6 * self.n, self.n

    def frames(self, backbone):
        RUNS[self.name] += 1
        GATES.setdefault(self.name, threading.Event()).wait(30)
        for i in range(1, self.n + 1):
            yield Frame(
                i, self.n, {"content": 1.0 / i, "style": 1.0, "tv": 0.0, "total": 1.0 + 1.0 / i}, i, (8, 8), IMG
            )


def gate(name: str, open_: bool) -> str:
    GATES[name] = threading.Event()
    if open_:
        GATES[name].set()
    return name


def test_a_run_identical_to_one_done_is_served_at_once_and_only_a_run_that_ended_done_is_kept():
    r = runner(concurrency=1)
    a = r.submit(Gated(4, gate("a", True)), owner="t1", room="K7QF3M")
    wait(lambda: a.state == DONE)
    b = r.submit(Gated(4, "a"), owner="t2", room="K7QF3M")  # another tab, the same pictures and settings
    assert b.state == DONE and b.cached and not a.cached and RUNS["a"] == 1 and r.position(b) == 0
    assert b.history == a.history and [f.png for f in b.final_frames()] == [f.png for f in a.final_frames()]
    assert r.progress("K7QF3M").done == 2
    # A stopped run is not kept: the next identical one runs.
    c = r.submit(Gated(4, gate("c", False)), owner="t3")
    wait(lambda: c.state == RUNNING)
    c.cancel()
    GATES["c"].set()
    wait(lambda: not c.active)
    d = r.submit(Gated(4, "c"), owner="t4")
    wait(lambda: d.state == DONE)
    assert c.state == STOPPED and not d.cached and RUNS["c"] == 2
    # A task that does not say it is cacheable always runs.
    e, f = (r.submit(ticking(2), owner=o) for o in ("t5", "t6"))
    wait(lambda: e.state == DONE and f.state == DONE)
    assert not e.cached and not f.cached and e.key is None


def test_twins_waiting_in_the_queue_take_no_slot_and_are_served_when_their_run_is_done():
    r = runner(concurrency=1)
    first = r.submit(Gated(3, gate("x", False)), estimate=10.0, owner="o0")
    twins = [r.submit(Gated(3, "x"), estimate=10.0, owner=f"o{i}") for i in (1, 2, 3)]
    other = r.submit(Gated(3, gate("y", True)), estimate=10.0, owner="o4")
    wait(lambda: first.state == RUNNING)
    # The twins will be first's result when it is done (10 s, its estimate); the other run waits for first alone.
    assert all(r.when(t) == (10.0, 10.0, True) for t in twins)
    assert r.when(other) == (10.0, 20.0, False) and r.wait_seconds() == 20.0
    GATES["x"].set()
    wait(lambda: first.state == DONE and other.state == DONE)
    assert all(t.state == DONE and t.cached for t in twins) and RUNS["x"] == 1 and RUNS["y"] == 1
    assert max(t.started for t in twins) <= other.started  # served as first ended, before the next run started


def test_the_results_kept_fit_their_budget_and_none_are_kept_without_one():
    one_run = runner(concurrency=1)
    a = one_run.submit(Gated(3, gate("p", True)), owner="o1")
    wait(lambda: a.state == DONE)
    size = one_run.results.get(a.key).nbytes()
    r = runner(concurrency=1, limits=Limits(result_cache_mb=1.5 * size / 2**20))  # room for one run, not two
    for name in ("p", "q", "p", "q"):
        job = r.submit(Gated(3, gate(name, True)), owner="o")
        wait(lambda: job.state == DONE)
    assert RUNS["p"] == 3 and RUNS["q"] == 2  # each pushed the other out
    again = r.submit(Gated(3, "q"), owner="o")
    assert again.cached and RUNS["q"] == 2  # the most recent is kept
    off = runner(concurrency=1, limits=Limits(result_cache_mb=0))
    for _ in range(2):
        job = off.submit(Gated(3, "q"), owner="o")
        wait(lambda: job.state == DONE)
        assert job.key is None and not job.cached
    assert RUNS["q"] == 4


def test_a_style_tasks_digest_is_its_pictures_and_settings(content, style, style2):
    from nst_core.serve.results import Results
    from nst_core.tasks.lab import pixel_match

    res = Results(1)
    task = StyleTask(content, (style,), Settings(size=64))
    assert res.key(task) == res.key(StyleTask(content.copy(), (style.copy(),), Settings(size=64)))
    others = [
        StyleTask(content, (style2,), Settings(size=64)),
        StyleTask(content.transpose(0), (style,), Settings(size=64)),
        StyleTask(content, (style,), Settings(size=64, seed=1)),
    ]
    assert len({res.key(t) for t in [task, *others]}) == 4
    # the same settings written another way (1 for 1.0, as an address or a widget may give them): the same run
    assert res.key(StyleTask(content, (style,), Settings(size=64, style_weight=10))) == res.key(task)
    assert res.key(pixel_match(content, style, 64, 10)) == res.key(pixel_match(content, style, 64, 10)) is not None


def test_with_two_slots_a_twin_of_a_running_run_waits_for_it_and_different_runs_use_both_slots():
    r = runner(concurrency=2)
    first = r.submit(Gated(3, gate("t2a", False)), estimate=10.0, owner="o0")
    twin = r.submit(Gated(3, "t2a"), estimate=10.0, owner="o1")
    wait(lambda: first.state == RUNNING)
    # A free slot is there, but the twin does not take it: it will be first's result.
    assert twin.state == QUEUED and r.stats().running == 1 and r.when(twin).twin
    other = r.submit(Gated(3, gate("t2b", False)), estimate=10.0, owner="o2")
    wait(lambda: other.state == RUNNING)  # a different run takes the second slot, past the waiting twin
    assert twin.state == QUEUED and r.stats().running == 2
    GATES["t2a"].set()
    GATES["t2b"].set()
    wait(lambda: not (first.active or twin.active or other.active))
    assert twin.state == DONE and twin.cached and RUNS["t2a"] == 1 and RUNS["t2b"] == 1


def test_a_rooms_teacher_goes_ahead_with_one_run_at_a_time():
    r = runner(concurrency=1)
    busy = r.submit(Gated(2, gate("tq0", False)), owner="s0", room="K7QF3M")
    wait(lambda: busy.state == RUNNING)
    students = [r.submit(Gated(2, gate(f"tq{i}", True)), owner=f"s{i}", room="K7QF3M") for i in (1, 2)]
    teacher = [r.submit(Gated(2, gate(f"tt{i}", True)), owner=f"t{i}", room="K7QF3M", first=True) for i in (1, 2)]
    other_room = r.submit(Gated(2, gate("to", True)), owner="u", room="ABCDEF", first=True)
    # The teacher's first run and the other room's teacher's run go ahead; the second teacher tab waits its turn.
    assert [r.position(j) for j in (teacher[0], other_room, *students, teacher[1])] == [1, 2, 3, 4, 5]
    assert teacher[0].first and not teacher[1].first
    GATES["tq0"].set()
    wait(lambda: all(j.state == DONE for j in (*students, *teacher, other_room)))
    # Once the teacher's run ahead has ended, the next one goes ahead again.
    again = r.submit(Gated(2, gate("tt3", True)), owner="t3", room="K7QF3M", first=True)
    assert again.first
