"""A lesson's pace: how many students, how many minutes for everyone's first picture, and the settings that keep
that promise on this server (from its cost model and the runs it does at once). Also the Studio's default run
outside a room, sized to about a minute here.

The promise is for the worst case: every student presses Run at the same moment, on a square photo (the most
pixels for a longest side), so the last picture comes after ceil(students / slots) runs, one after another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..settings import Settings, preview_spacing

# From the most detailed down: the first that fits is taken. Size first, then steps: a picture looks finished only
# when its top level had enough evaluations, so a smaller side with enough steps beats a larger one cut short.
LADDER = (
    (512, 160),
    (448, 160),
    (384, 160),
    (384, 120),
    (320, 120),
    (256, 120),
    (256, 80),
    (224, 80),
    (208, 80),
    (192, 80),
    (192, 60),
    (176, 60),
    (160, 60),
    (144, 60),
    (128, 60),
    (128, 40),
    (96, 40),
    (64, 30),
)
# The share of the promised time the plan fills. The cost model times the worker alone; a class's thirty pages take
# their share of the server's cores too, so under a class each run takes longer than its estimate, and a plan that
# filled most of the time would end late (docs/benchmarks.md, "A lesson").
MARGIN = 0.6
NAMED = {  # named paces a teacher can pick: (students, minutes)
    "a lesson's first pictures: 30 students in 5 minutes": (30, 5.0),
    "more detail: 30 students in 12 minutes": (30, 12.0),
    "a small group: 10 students in 5 minutes": (10, 5.0),
    "a demo on the projector: 1 picture in 1 minute": (1, 1.0),
}


@dataclass(frozen=True)
class Pace:
    students: int
    minutes: float
    size: int  # the room's default and largest output side
    iterations: int  # ... and steps
    per_picture: float  # seconds a picture takes here, by the cost model
    last: float  # seconds until the last student's picture, all pressing Run at once
    fits: bool  # whether even the smallest settings keep the promise

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Pace | None:
        return cls(**d) if d else None

    def settings(self, base: Settings | None = None) -> Settings:
        base = base or Settings()
        return base.replace(size=self.size, iterations=self.iterations, preview_every=preview_spacing(self.iterations))

    def clip_frames(self) -> int:
        """Frames a student's clip may have within the room's time per student: the first frame costs a picture,
        each later one about a quarter of one (nst_core.schedule.later_evaluations). 1: no clips in this room."""
        if self.per_picture <= 0:
            return 1
        rounds = max(1, round(self.last / self.per_picture))
        budget = MARGIN * self.minutes * 60 / rounds
        return 1 + math.floor(max(0.0, budget - self.per_picture) / (self.per_picture / 4))

    def describe(self) -> str:
        """'256 px, 80 steps: about 8 s a picture here; 30 students in about 4 min'."""
        return (
            f"{self.size} px, {self.iterations} steps: about {fmt(self.per_picture)} a picture here; "
            f"{self.students} student{'s' * (self.students != 1)} in about {fmt(self.last)}"
            + ("" if self.fits else f" (more than the {self.minutes:g} minutes asked: this server is too slow for it)")
            + (f"; clips up to {self.clip_frames()} frames" if self.clip_frames() > 1 else "; no time for clips")
        )


def fmt(seconds: float) -> str:
    s = max(1, round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def plan(cost, slots: int, students: int, minutes: float, max_size: int, max_iterations: int) -> Pace:
    """The most detailed rung of LADDER whose runs, all submitted at once, end within MARGIN of `minutes`."""
    if not (1 <= students <= 500 and 0.5 <= minutes <= 240):
        raise ValueError("a pace is 1 to 500 students and half a minute to 4 hours")
    rounds = math.ceil(students / max(1, slots))
    rungs = [(s, n) for s, n in LADDER if s <= max_size and n <= max_iterations] or [LADDER[-1]]
    for size, steps in rungs:
        per = cost.estimate(Settings(size=size, iterations=steps))
        if rounds * per <= MARGIN * minutes * 60:
            return Pace(students, minutes, size, steps, per, rounds * per, True)
    size, steps = rungs[-1]
    per = cost.estimate(Settings(size=size, iterations=steps))
    return Pace(students, minutes, size, steps, per, rounds * per, False)


def host_default(cost, max_size: int, device_type: str, target: float = 60.0) -> tuple[Settings, str]:
    """The Studio's default run outside a room: Settings() if it takes about `target` seconds here (up to 1.25x),
    a smaller size on a slow host, a larger one on a GPU with time to spare; and a line saying so ('' if none)."""
    default = Settings()
    here = cost.estimate(default)
    if here <= 1.25 * target:
        if device_type != "cpu":  # a GPU host may step up: the largest size that still fits the minute
            for size in (1024, 768):
                if size <= max_size and cost.estimate(default.replace(size=size)) <= target:
                    return default.replace(size=size), f"This GPU server starts at {size} px (about a minute a run)."
        return default, ""
    for size in (448, 384, 320, 256, 192, 128):
        if cost.estimate(default.replace(size=size)) <= target:
            break
    return (
        default.replace(size=size),
        f"This server is slow for {default.size} px (about {fmt(here)} a run): the default size is {size} px.",
    )
