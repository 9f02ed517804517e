"""Neural style transfer after Gatys, Ecker and Bethge (2015/2016), on a frozen VGG19. No UI code here.

Names are imported on first use (PEP 562), so `import nst_core` and the CLI's --help do not load torch.
"""

from importlib import import_module

_WHERE = {
    "Backbone": "backbone",
    "describe_device": "backbone",
    "load_backbone": "backbone",
    "ImageLoadError": "errors",
    "NSTError": "errors",
    "WeightsError": "errors",
    "load_image": "images",
    "png_bytes": "images",
    "PRESETS": "settings",
    "Settings": "settings",
    "preset": "settings",
    "Frame": "transfer",
    "stylize": "transfer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'nst_core' has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)
