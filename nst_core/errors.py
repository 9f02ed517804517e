"""The exceptions the core raises for user mistakes; front ends print their message as one line."""


class NSTError(Exception):
    """Base class: a problem the user can fix (bad file, bad option, missing weights)."""


class ImageLoadError(NSTError):
    """An image could not be decoded or is outside the accepted limits."""


class WeightsError(NSTError):
    """Backbone weights could not be found or read."""


class ClipError(ImageLoadError):
    """A clip (video or animated picture) could not be read, or is outside the accepted limits."""
