"""The Studio's run: one photo painted in the style of one or more paintings (Gatys et al.)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from ..images import fit
from ..schedule import pixel_evals
from ..settings import Settings


@dataclass(frozen=True)
class StyleTask:
    """A style-transfer run, as it crosses to a worker (images already fitted to the output size: build it with
    StyleTask.of)."""

    content: Image.Image
    styles: tuple[Image.Image, ...]
    settings: Settings
    cacheable: ClassVar[bool] = True  # the same pictures and settings give the same run (Results)

    @classmethod
    def of(cls, content: Image.Image, styles, settings: Settings) -> StyleTask:
        """The run of these pictures with these settings, each picture at the size the run works at: the photo at
        the output's size, each painting at its working side (Settings.style_side). A worker then gets no more
        pixels than it needs, whatever size the uploads were, and the same pictures and settings make the same
        task (and so the same digest in the cache of finished runs). Raises ImageLoadError for a picture too
        elongated for that size."""
        side = settings.style_side()
        return cls(fit(content, settings.size), tuple(fit(im, side) for im in styles), settings)

    def frames(self, backbone) -> Iterator:
        from ..transfer import stylize

        return stylize(self.content, list(self.styles), self.settings, backbone)

    def work(self) -> tuple[float, int]:
        w, h = self.content.size
        return pixel_evals(self.settings, min(w, h) / max(w, h)), self.settings.iterations
