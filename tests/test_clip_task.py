"""A clip through the queue as one task like any other: the frames painted, the first frame's optimisation as the
run's animation, every finished clip frame kept in order, the warping figures on the frames that have them, the
cost model's work, and a stop keeping the frames done so far."""

from pathlib import Path

import pytest

from nst_core import clips
from nst_core.serve.backends.thread import ThreadBackend
from nst_core.serve.job import DONE, STOPPED
from nst_core.serve.limits import Limits
from nst_core.serve.queue import Runner
from nst_core.settings import Settings
from nst_core.tasks.clip import ClipTask
from tests.conftest import ROOT, wait

CLIP = ROOT / "samples" / "clips" / "chelsea_pan.mp4"
SMALL = Settings(size=64, iterations=8, scales=1)


@pytest.fixture(scope="module")
def clip_bytes() -> bytes:
    return Path(CLIP).read_bytes()


def test_the_task_is_probed_when_made_and_sized_for_the_queue(clip_bytes, style):
    task = ClipTask.of(clip_bytes, [style], SMALL, max_frames=3, later_iterations=2)
    assert task.count == 3
    assert max(task.size) == 64
    info = clips.probe(clip_bytes)
    assert task.fps == pytest.approx(clips.steady_rate(info))
    work, steps = task.work()
    assert steps == 8 + 2 * 2
    first, _ = ClipTask.of(clip_bytes, [style], SMALL, max_frames=1).work()
    assert work == pytest.approx(first + 2 * 2 * task.size[0] * task.size[1])


def test_a_bad_clip_is_one_line_when_the_task_is_made(style):
    with pytest.raises(clips.ClipError) as e:
        ClipTask.of(b"not a clip at all" * 10, [style], SMALL, max_frames=3)
    assert "\n" not in str(e.value)


def run_through_queue(task, backbone, stop_after_painted=None):
    runner = Runner(ThreadBackend(backbone), Limits(max_frames=6), poll=0.05)
    job = runner.submit(task, owner="a")
    if stop_after_painted:
        wait(lambda: len(job.outputs) >= stop_after_painted or not job.active, 300, beat=(job,))
        job.cancel("stopped by the test")
    wait(lambda: not job.active, 300, beat=(job,))
    return job


def test_a_clip_runs_through_the_queue_and_keeps_every_painted_frame(clip_bytes, style, backbone):
    task = ClipTask.of(clip_bytes, [style], SMALL, max_frames=3, later_iterations=2)
    job = run_through_queue(task, backbone)
    assert job.state == DONE, job.reason
    assert [s.part for s in job.outputs] == [(1, 3), (2, 3), (3, 3)]
    assert all(s.png for s in job.outputs)
    assert job.outputs[0].image().size == task.size
    # the run's animation is the first frame being painted, ending on it
    assert job.frames and all(s.part[0] == 1 for s in job.frames)
    assert job.frames[-1].output
    # the warping figures ride on the finished frames after the first, the same number on each side
    assert "warping" not in job.outputs[0].losses
    for s in job.outputs[1:]:
        assert s.losses["warping"] >= 0 and s.losses["floor"] >= 0
    assert job.latest.step == job.latest.total == 8 + 2 * 2


def test_stopping_a_clip_keeps_the_frames_done(clip_bytes, style, backbone):
    task = ClipTask.of(clip_bytes, [style], SMALL, max_frames=40, later_iterations=2)
    job = run_through_queue(task, backbone, stop_after_painted=2)
    assert job.state == STOPPED
    assert 2 <= len(job.outputs) < 40
    assert [s.part[0] for s in job.outputs] == list(range(1, len(job.outputs) + 1))
