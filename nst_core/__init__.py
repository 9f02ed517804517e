"""Neural style transfer after Gatys, Ecker and Bethge (2015/2016), on a frozen VGG19. No UI code here."""

from .backbone import Backbone, describe_device, load_backbone
from .errors import ImageLoadError, NSTError, WeightsError
from .images import load_image, png_bytes
from .settings import PRESETS, Settings, preset
from .transfer import Frame, stylize

__all__ = [
    "Backbone", "Frame", "ImageLoadError", "NSTError", "PRESETS", "Settings", "WeightsError",
    "describe_device", "load_backbone", "load_image", "png_bytes", "preset", "stylize",
]  # fmt: skip
