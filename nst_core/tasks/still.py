"""The Studio's run: one photo painted in the style of one or more paintings (Gatys et al.)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from ..schedule import pixel_evals
from ..settings import Settings


@dataclass(frozen=True)
class StyleTask:
    """A style-transfer run, as it crosses to a worker (images already fitted to the output size)."""

    content: Image.Image
    styles: tuple[Image.Image, ...]
    settings: Settings
    cacheable: ClassVar[bool] = True  # the same pictures and settings give the same run (Results)

    def frames(self, backbone) -> Iterator:
        from ..transfer import stylize

        return stylize(self.content, list(self.styles), self.settings, backbone)

    def work(self) -> tuple[float, int]:
        w, h = self.content.size
        return pixel_evals(self.settings, min(w, h) / max(w, h)), self.settings.iterations
