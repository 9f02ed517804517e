"""A lesson's pace: the settings that keep a class's promise, a student's tab within them, the teacher's runs
first, the class's progress on the wall, and the Studio's default run sized to this host."""

import pytest
from streamlit.testing.v1 import AppTest

from nst_core import Settings
from nst_core.classroom import pace
from nst_core.classroom.wall import Wall
from nst_core.serve.backends.thread import ThreadBackend
from nst_core.serve.cost import CostModel
from nst_core.serve.job import DONE, QUEUED, RUNNING
from nst_core.serve.queue import Runner
from tests.conftest import ROOT, plain, wait
from tests.helpers import Held, slider
from tests.tasks import Ticking


def cost(seconds_at_512: float) -> CostModel:
    """A cost model whose default 512 px run takes `seconds_at_512` (no fixed cost per step)."""
    return CostModel(seconds_at_512 / CostModel(1.0).estimate(Settings()))


def test_the_pace_takes_the_most_detailed_settings_that_keep_the_promise():
    model = cost(30.0)  # this machine: the default run in 30 s
    p = pace.plan(model, slots=1, students=30, minutes=5, max_size=768, max_iterations=1000)
    assert p.fits and p.last <= pace.MARGIN * 300 and p.last == 30 * p.per_picture
    better = pace.LADDER[pace.LADDER.index((p.size, p.iterations)) - 1]  # the rung above did not fit
    assert 30 * model.estimate(Settings(size=better[0], iterations=better[1])) > pace.MARGIN * 300
    assert p.settings().size == p.size and p.settings().iterations == p.iterations
    two = pace.plan(model, slots=2, students=30, minutes=5, max_size=768, max_iterations=1000)
    assert pace.LADDER.index((two.size, two.iterations)) < pace.LADDER.index((p.size, p.iterations))
    longer = pace.plan(model, slots=1, students=30, minutes=15, max_size=768, max_iterations=1000)
    assert (longer.size, longer.iterations) != (p.size, p.iterations) and longer.fits
    one = pace.plan(model, slots=1, students=1, minutes=5, max_size=768, max_iterations=1000)
    assert (one.size, one.iterations) == pace.LADDER[0]  # one student, five minutes: the full default
    assert pace.plan(model, 1, 30, 5, max_size=256, max_iterations=1000).size <= 256  # never past the server's cap
    assert pace.Pace.from_dict(p.to_dict()) == p
    assert p.describe().startswith(f"{p.size} px, {p.iterations} steps: about ")
    assert "30 students in about" in p.describe()


def test_a_server_too_slow_for_the_promise_says_so():
    p = pace.plan(cost(3000.0), slots=1, students=30, minutes=5, max_size=768, max_iterations=1000)
    assert not p.fits and (p.size, p.iterations) == pace.LADDER[-1]
    assert "more than the 5 minutes asked" in p.describe()
    with pytest.raises(ValueError):
        pace.plan(cost(30.0), 1, 0, 5, 768, 1000)


def test_the_default_run_fits_about_a_minute_on_this_host():
    assert pace.host_default(cost(34.0), 768, "cpu") == (Settings(), "")  # a fast CPU: the default as it is
    assert pace.host_default(cost(70.0), 768, "cpu") == (Settings(), "")  # about a minute
    slow, note = pace.host_default(cost(124.0), 768, "cpu")  # a CPU without bf16
    assert slow.size < 512 and cost(124.0).estimate(slow) <= 60 and note.startswith("This server is slow for 512 px")
    gpu, note = pace.host_default(cost(5.0), 2048, "cuda")
    assert gpu.size == 1024 and cost(5.0).estimate(gpu) <= 60 and "GPU" in note
    assert pace.host_default(cost(5.0), 2048, "cpu")[0] == Settings()  # a CPU does not step up


def test_teachers_runs_go_first_and_the_room_progress_counts_its_runs():
    r = Runner(ThreadBackend(None), cost=CostModel(1e-7))
    held = Held()
    first = r.submit(held, owner="s0", room="K7QF3M")  # running
    students = [r.submit(Ticking(3, 0.01), owner=f"s{i}", room="K7QF3M") for i in range(1, 4)]
    other = r.submit(Ticking(3, 0.01), owner="x", room="OTHER2")
    teacher = r.submit(Ticking(3, 0.01), owner="t", room="K7QF3M", first=True)
    demo = r.submit(Ticking(3, 0.01), owner="t2", room="K7QF3M", first=True)
    wait(lambda: first.state == RUNNING)
    # The teacher's first run goes ahead; a second one from the teacher's link, while that one waits, queues like
    # anyone's (one run per room ahead at a time).
    assert [r.position(j) for j in (teacher, *students, other, demo)] == [1, 2, 3, 4, 5, 6]
    p = r.progress("K7QF3M")
    assert (p.done, p.painting, p.waiting) == (0, 1, 5) and p.last > 0
    assert r.progress("OTHER2").waiting == 1 and r.progress("NOROOM").last == 0
    held.release.set()
    wait(lambda: all(j.state == DONE for j in (teacher, demo, *students, other)))
    assert teacher.started < min(j.started for j in students) and max(j.started for j in students) < demo.started
    p = r.progress("K7QF3M")
    assert (p.done, p.painting, p.waiting, p.last) == (6, 0, 0, 0.0)
    assert QUEUED not in {j.state for j in students}


@pytest.fixture
def room(tmp_path, monkeypatch, threaded_app):
    """A room with a pace of 256 px and 80 steps, in a data directory of its own."""
    from ui.classroom import forget_wall

    monkeypatch.setenv("NST_DATA_DIR", str(tmp_path / "data"))
    forget_wall()
    wall = Wall(tmp_path / "data")
    r, key = wall.open_room("Art 2B")
    p = pace.Pace(30, 5.0, 256, 80, 8.0, 240.0, True)
    wall.set_pace(r.code, key, p.to_dict())
    yield wall, r.code, key
    forget_wall()


def studio(params: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_student_tab_gets_the_rooms_pace_as_its_defaults_and_limits(room):
    wall, code, key = room
    at = studio({"room": code})
    size, steps = slider(at, "Output size (longest side, px)"), slider(at, "Iterations")
    assert (size.value, size.max, steps.value, steps.max) == (256, 256, 80, 80)
    assert any("The room's pace: 256 px, 80 steps" in plain(i.value) for i in at.info)
    at = studio({"room": code, "size": "768", "iterations": "500"})  # not through the address either
    assert slider(at, "Output size (longest side, px)").value == 256 and slider(at, "Iterations").value == 80
    assert any("size=768 is outside what this page offers" in plain(w.value) for w in at.warning)
    teacher = studio({"room": code, "key": key})  # the teacher: the pace's defaults, not its limits
    size = slider(teacher, "Output size (longest side, px)")
    assert size.value == 256 and size.max == 768
    assert any("your runs go ahead of the students'" in plain(i.value) for i in teacher.info)


def test_every_students_page_follows_when_the_teacher_changes_the_pace(room):
    wall, code, key = room
    at = studio({"room": code})
    slider(at, "Iterations").set_value(40).run()  # the student chose less
    wall.set_pace(code, key, pace.Pace(30, 12.0, 384, 120, 20.0, 600.0, True).to_dict())
    at.run()  # the page's 10 s check reruns it
    size, steps = slider(at, "Output size (longest side, px)"), slider(at, "Iterations")
    assert (size.value, size.max, steps.value, steps.max) == (384, 384, 120, 120)
    assert not at.exception


def test_the_wall_shows_the_rooms_progress(room, use_service):
    from tests.fakes import service_on

    wall, code, key = room
    svc = use_service(service_on(ThreadBackend(None)))
    held = Held()
    jobs = [svc.runner.submit(held, owner="s0", room=code)]
    jobs += [svc.runner.submit(Ticking(3, 0.01), owner=f"s{i}", room=code) for i in (1, 2)]
    wait(lambda: jobs[0].state == RUNNING)
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "classroom.py"), default_timeout=60)
    at.query_params.update({"room": code})
    at.run()
    assert not at.exception, at.exception
    [line] = [plain(i.value) for i in at.info if "In this room" in plain(i.value)]
    assert line.startswith("In this room: 0 pictures done, 1 painting, 2 waiting; the last should be done in about")
    held.release.set()
    wait(lambda: not any(j.active for j in jobs), beat=jobs)
    at.run()
    assert any("In this room: 3 pictures done, none painting or waiting." == plain(c.value) for c in at.caption)


def test_the_lanes_a_gpu_worker_takes_are_the_fewest_near_the_best_that_its_memory_holds(backbone):
    from nst_core.serve.backends import lanes

    gib = 2**30
    assert lanes.choose({1: 10.0, 2: 18.0, 4: 30.0, 8: 31.0}, per_run_bytes=2 * gib, free_bytes=140 * gib) == 4
    assert lanes.choose({1: 10.0, 2: 18.0, 4: 30.0, 8: 31.0}, per_run_bytes=20 * gib, free_bytes=60 * gib) == 2
    assert lanes.choose({1: 10.0, 2: 9.0, 4: 8.0, 8: 7.0}, per_run_bytes=1, free_bytes=1e12) == 1
    assert lanes.choose({1: 10.0, 8: 40.0}, per_run_bytes=100 * gib, free_bytes=10 * gib) == 1  # always one
    # The measuring itself runs on the CPU too (where a worker never uses it): two lanes side by side, each a real
    # run of its own (not one run shared) that takes its warm-up step and then `evals` steps.
    steps: list[list[int]] = []

    def counted(bb, size):
        step, mine = lanes.run_steps(bb, size), []
        steps.append(mine)
        return lambda: mine.append(step().step)

    lanes.throughput(backbone, 2, size=48, evals=2, setup=counted)
    assert sorted(steps) == [[1, 2, 3], [1, 2, 3]]
    if backbone.device.type == "cpu":  # a CPU run has no stream of its own, and none is made for it
        with lanes.own_stream(backbone) as stream:
            assert stream is None
        assert lanes.streams_for(backbone.device).made == 0


def test_a_rooms_smallest_pace_leaves_nothing_to_choose_and_no_error(room):
    wall, code, key = room
    wall.set_pace(code, key, pace.Pace(30, 5.0, 64, 30, 20.0, 600.0, False).to_dict())
    at = studio({"room": code})
    assert not at.exception
    assert any(
        plain(c.value).startswith("Output size (longest side, px): 64 (this room's limit)") for c in at.sidebar.caption
    )
    assert slider(at, "Iterations").max == 30
    assert at.session_state["w_size"] == 64


def test_a_pace_allows_clips_only_as_long_as_its_time_per_student_pays_for():
    """A clip's first frame costs a picture and each later one a quarter of one: a pace whose students each have four
    pictures' time may paint clips of up to 13 frames; a class that has time for one picture each paints none."""
    one = pace.Pace(30, 5.0, 256, 80, per_picture=6.0, last=180.0, fits=True)  # 30 rounds in 3 of the 5 minutes
    assert one.clip_frames() == 1 and "no time for clips" in one.describe()
    roomy = pace.Pace(1, 1.0, 256, 80, per_picture=9.0, last=9.0, fits=True)  # one student, 36 s of time: 4 pictures
    assert roomy.clip_frames() == 1 + 12 and "clips up to 13 frames" in roomy.describe()
    assert pace.Pace(1, 1.0, 256, 80, per_picture=0.0, last=0.0, fits=True).clip_frames() == 1
