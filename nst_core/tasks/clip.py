"""A clip painted frame by frame, consistently (Ruder et al. 2016, nst_core.video): the Studio's run when the
content is a video or an animated picture.

The task carries the clip's file (bounded by the upload limit), never its decoded frames: the worker streams them
(nst_core.clips.read_frames), so a run's memory is bounded by the frame size, not by the clip's length. The clip is
probed when the task is made, so the page can say how many frames it will paint and the queue can estimate it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from .. import clips
from ..images import MIN_SIDE, fit
from ..schedule import later_evaluations, pixel_evals
from ..settings import TEMPORAL_WEIGHT, Settings


@dataclass(frozen=True)
class ClipTask:
    clip: bytes  # the clip's file, as uploaded (MP4, MOV, WebM, animated GIF or WebP)
    styles: tuple[Image.Image, ...]
    settings: Settings
    count: int  # clip frames to paint (the clip's own, at `fps`, at most the cap)
    fps: float  # the steady rate the frames are read at, and the painted clip is written at
    size: tuple[int, int]  # (width, height) of a painted frame
    temporal_weight: float
    later_iterations: int  # evaluations for each clip frame after the first
    cacheable: ClassVar[bool] = True  # the same clip, paintings and settings give the same run (Results)

    @classmethod
    def of(
        cls,
        clip: bytes,
        styles,
        settings: Settings,
        max_frames: int,
        fps: float | None = None,
        temporal_weight: float | None = None,
        later_iterations: int | None = None,
        max_bytes: int = clips.MAX_BYTES,
        info: clips.ClipInfo | None = None,
    ) -> ClipTask:
        """Probe the clip (clips.ClipError, one line, if it cannot be read) and make the task: at most `max_frames`
        frames at `fps` (default: the clip's own rate), each later one given `later_iterations` evaluations
        (default later_evaluations: a quarter of the first frame's work). `info`: the clip's probe, if the caller
        has it already (a page that probed the upload once)."""
        info = info or clips.probe(clip, max_bytes=max_bytes)
        rate = clips.steady_rate(info, fps)
        scale = settings.size / max(info.width, info.height)  # as images.fit: a painted frame's longest side
        w, h = max(1, round(info.width * scale)), max(1, round(info.height * scale))
        if min(w, h) < MIN_SIDE:  # refused here, in one line, not in the worker after the run was queued
            raise clips.ClipError(
                f"at {settings.size} px the clip's frames would be {w}x{h}; their short side must be at least "
                f"{MIN_SIDE} px (use a larger size or a less elongated clip)"
            )
        side = settings.style_side()  # each painting at its working side, as the Studio's still run (StyleTask.of)
        return cls(
            bytes(clip),
            tuple(fit(im, side) for im in styles),
            settings,
            clips.frame_count(max_frames, info, fps),
            rate,
            (w, h),
            TEMPORAL_WEIGHT if temporal_weight is None else temporal_weight,
            later_iterations or later_evaluations(settings),
        )

    def frames(self, backbone) -> Iterator:
        """nst_core.video.stylize_clip over the clip's frames; a finished clip frame after the first carries its
        warping error and the input clip's (its floor) in its losses, as "warping" and "floor"."""
        from .. import video

        stats = video.ClipStats()
        read = clips.read_frames(self.clip, max_frames=self.count, max_side=self.settings.size, fps=self.fps)
        run = video.stylize_clip(
            read,
            list(self.styles),
            self.settings,
            backbone,
            frames_total=self.count,
            temporal_weight=self.temporal_weight,
            later_iterations=self.later_iterations,
            stats=stats,
        )
        try:
            for frame in run:
                if frame.output and frame.part[0] > 1 and stats.warping:
                    losses = {**frame.losses, "warping": stats.warping[-1], "floor": stats.floor[-1]}
                    frame = dataclasses.replace(frame, losses=losses)
                yield frame
        finally:
            run.close()

    def seconds_of_clip(self) -> float:
        return self.count / self.fps

    def work(self) -> tuple[float, int]:
        w, h = self.size
        aspect = min(w, h) / max(w, h)
        later = (self.count - 1) * self.later_iterations
        return pixel_evals(self.settings, aspect) + later * w * h, self.settings.iterations + later
