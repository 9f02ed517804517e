"""The process-wide runner: queue order, cancellation, closed pages, the concurrency limit."""

import threading
import time

from PIL import Image

from nst_core import Settings, stylize
from nst_core.jobs import DONE, FAILED, QUEUED, RUNNING, STOPPED, CostModel, Runner
from nst_core.limits import Limits
from nst_core.transfer import Frame

IMG = Image.new("RGB", (8, 8))


def ticking(n, delay=0.02, log=None, name=None, image_every=1):
    """A frame generator that takes `delay` seconds per step and records when it runs."""

    def work():
        if log is not None:
            log.append(("start", name))
        try:
            for i in range(1, n + 1):
                time.sleep(delay)
                yield Frame(i, n, {"content": 1.0, "style": 1.0, "tv": 0.0, "total": 2.0}, i * delay, (8, 8),
                            IMG if i % image_every == 0 or i == n else None)  # fmt: skip
        finally:
            if log is not None:
                log.append(("end", name))

    return work


def wait(cond, timeout=10.0):
    t = time.monotonic()
    while not cond():
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.01)


def test_jobs_run_in_submission_order_one_at_a_time():
    log = []
    r = Runner(concurrency=1)
    jobs = [r.submit(ticking(3, log=log, name=k)) for k in "abc"]
    assert r.position(jobs[0]) == 0 and r.position(jobs[1]) == 1 and r.position(jobs[2]) == 2
    assert jobs[2].state == QUEUED
    wait(lambda: all(j.state == DONE for j in jobs))
    assert log == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b"), ("start", "c"), ("end", "c")]
    assert [h["step"] for h in jobs[0].history] == [1, 2, 3] and jobs[0].image is IMG


def test_the_limit_holds_under_many_concurrent_runs():
    r = Runner(concurrency=2)
    active, peak, lock = [0], [0], threading.Lock()

    def work():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            yield from ticking(5, 0.01)()
        finally:
            with lock:
                active[0] -= 1

    jobs = [r.submit(work) for _ in range(8)]
    wait(lambda: all(j.state == DONE for j in jobs))
    assert peak[0] == 2


def test_cancel_stops_a_run_and_keeps_its_result():
    r = Runner(concurrency=1)
    job = r.submit(ticking(10_000, 0.005))
    wait(lambda: len(job.history) >= 3)
    job.cancel("stopped by you")
    wait(lambda: not job.active)
    assert job.state == STOPPED and job.reason == "stopped by you" and job.finished_ok
    assert job.final_frames()[-1].image is IMG


def test_a_cancelled_queued_job_never_starts():
    log = []
    r = Runner(concurrency=1)
    first = r.submit(ticking(20, 0.01, log, "first"))
    second = r.submit(ticking(3, log=log, name="second"))
    second.cancel()
    wait(lambda: first.state == DONE and second.state == STOPPED)
    assert ("start", "second") not in log


def test_a_closed_page_frees_its_place_within_seconds():
    r = Runner(concurrency=1, limits=Limits(heartbeat_timeout=0.5), poll=0.1)
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
    r = Runner(concurrency=1, limits=Limits(max_frames=10))
    job = r.submit(ticking(200, 0.0005))
    wait(lambda: job.state == DONE)
    steps = [f.step for f in job.final_frames()]
    assert len(steps) <= 11 and steps[0] == 1 and steps[-1] == 200
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 2 * 200 / 8


def test_time_limit_and_failures_are_reported():
    r = Runner(concurrency=1, limits=Limits(max_seconds=0.2))
    slow = r.submit(ticking(100_000, 0.01))
    wait(lambda: not slow.active)
    assert slow.state == STOPPED and "time limit" in slow.reason and slow.finished_ok

    def broken():
        yield from ticking(2)()
        raise RuntimeError("out of memory\nmore lines")

    bad = r.submit(broken)
    wait(lambda: not bad.active)
    assert bad.state == FAILED and bad.reason == "RuntimeError: out of memory"


def test_a_real_style_transfer_run_on_the_runner(backbone, content, style):
    r = Runner(concurrency=1)
    s = Settings(size=64, iterations=6, preview_every=2)
    job = r.submit(lambda: stylize(content, [style], s, backbone))
    wait(lambda: not job.active, 60)
    assert job.state == DONE and [f.step for f in job.final_frames()] == [2, 4, 6]


def test_cost_model_estimates_and_learns(backbone):
    cost = CostModel.probe(backbone, sizes=(32, 64), evals=1)
    s = Settings(size=256)
    est = cost.estimate(s)
    assert est > 0 and cost.estimate(s.replace(iterations=2 * s.iterations)) > 1.9 * est
    cost.learn(s, 1.0, seconds=2 * est, steps=s.iterations)
    assert cost.estimate(s) > 1.4 * est


def test_time_left_uses_the_estimate_while_the_straight_line_is_too_hopeful():
    r = Runner(concurrency=1)
    job = r.submit(ticking(10, 0.01), estimate=100.0)
    assert job.seconds_left() == 100.0
    wait(lambda: job.state == DONE)
    assert job.seconds_left() == 0.0
    job.latest = Frame(2, 10, {}, 1.0, (8, 8))
    assert job.seconds_left() == 99.0  # linear alone would say 4 s
    job.estimate = 0.0
    assert job.seconds_left() == 4.0
