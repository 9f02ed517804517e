"""Helpers that more than one test module uses: pictures made in memory, a stored result, a run held until released,
a slider found by its label. A test module imports them from here, never from another test module (that would run
the other module's top level and tie the two files together; tests/test_layout.py checks it)."""

import io
import threading

from PIL import Image

from nst_core.serve.job import Shot
from nst_core.serve.store import Stored
from nst_core.transfer import Frame
from tests.tasks import IMG


def picture(colour, size=(48, 32)) -> bytes:
    """A PNG of one colour, as a page would share it to the wall."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def animation(colour) -> bytes:
    """A two-frame GIF: `colour`, then black."""
    buf = io.BytesIO()
    frames = [Image.new("RGB", (48, 32), c) for c in (colour, (0, 0, 0))]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0)
    return buf.getvalue()


def png(colour, size=(64, 43), noise=False) -> bytes:
    """A PNG of one colour, or of noise (which compresses badly: mostly writing, little encoding)."""
    im = Image.effect_noise(size, 90).convert("RGB") if noise else Image.new("RGB", size, colour)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def result(frames: int = 5, noise=False, masks=True, size=(64, 43), photo=(1200, 800)) -> Stored:
    """A finished Studio result as the result store keeps it: `frames` previews, the pictures it was made from."""
    shots = tuple(
        Shot(i + 1, frames, {"total": 1.0 / (i + 1)}, 0.1 * i, size, png((10 * i, 0, 0), size, noise))
        for i in range(frames)
    )
    return Stored(
        png=shots[-1].png,
        gif=b"GIF89a" + b"\0" * 100,
        frames=shots,
        info={"settings": {"size": 64, "iterations": frames}, "steps": frames, "seconds": 1.5},
        label="Chelsea × Starry Night",
        paintings="Starry Night",
        stopped=False,
        history=tuple({"step": i + 1, "total": 1.0} for i in range(frames)),
        photo=Image.new("RGB", photo, "green"),
        painting=Image.new("RGB", (900, 1200), "blue"),
        masks=Image.new("RGB", (240, 160), "red") if masks else None,
    )


class Held:
    """One frame (step 5 of 10, 2 s into the run by its own clock), then nothing until released: its time left
    stays fixed however fast or slow this machine is."""

    def __init__(self):
        self.release = threading.Event()

    def work(self):
        return 1e7, 10

    def frames(self, backbone):
        yield Frame(5, 10, {"content": 1.0, "style": 1.0, "tv": 0.0, "total": 2.0}, 2.0, (8, 8), IMG)
        self.release.wait(60)


def slider(at, label):
    """The slider of an AppTest page with this label."""
    return next(s for s in at.slider if s.label == label)


def mp4_boxes(data: bytes) -> list[str]:
    """The top-level boxes of an MP4 file, in order (ftyp, moov, mdat, ...)."""
    boxes, i = [], 0
    while i + 8 <= len(data):
        size, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8].decode("latin-1")
        if size == 1:  # a 64-bit size follows the type
            size = int.from_bytes(data[i + 8 : i + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        i += size
    return boxes
