"""Two CPU slots (NST_CONCURRENT_CPU=2), two real worker processes: a class pressing Run on one run paints it once
(the second waits for the first and is served its result), while two different runs use both slots."""

import pytest

from nst_core import Settings
from nst_core.serve.job import DONE, QUEUED, RUNNING
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.tasks.still import StyleTask
from tests.conftest import wait

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def runner():
    from nst_core.serve.backends.process import ProcessBackend

    limits = Limits(concurrent_cpu=2, heartbeat_timeout=60)
    backend = ProcessBackend("original", "cpu", limits)
    assert backend.slots == 2
    yield Runner(backend, limits, poll=0.1)
    backend.close()


def states(jobs, seen):
    """Records every state each job has been seen in (the runner's thread moves them; this polls)."""
    for j in jobs:
        seen.setdefault(j.id, set()).add(j.state)
    return all(not j.active for j in jobs)


def test_two_identical_runs_paint_once_and_two_different_runs_use_both_slots(runner, content, style, style2):
    settings = Settings(size=64, iterations=8, preview_every=4, scales=1)
    a = runner.submit(StyleTask(content, (style,), settings), owner="tab-a")
    b = runner.submit(StyleTask(content.copy(), (style.copy(),), settings), owner="tab-b")
    seen: dict[int, set] = {}
    wait(lambda: states([a, b], seen), timeout=180, beat=[a, b])
    assert a.state == DONE and not a.cached
    assert b.state == DONE and b.cached and seen[b.id] <= {QUEUED, DONE}  # it never held a slot
    assert b.history == a.history

    c = runner.submit(StyleTask(content, (style2,), settings.replace(iterations=40, preview_every=8)), owner="tab-c")
    c_active = c.active  # a worker round trip away from its first step: it cannot have ended yet
    d = runner.submit(StyleTask(content, (style2,), settings.replace(iterations=40, seed=1)), owner="tab-d")
    # A different run takes the second slot at once, beside the first (the runner dispatches on submit).
    assert c_active and d.state == RUNNING and runner.position(d) == 0
    wait(lambda: not (c.active or d.active), timeout=180, beat=[c, d])
    assert c.state == d.state == DONE and not c.cached and not d.cached
