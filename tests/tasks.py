"""Picklable test tasks (a worker process imports them by name): frames on a timer, a crash, an error."""

import os
import time

from PIL import Image

from nst_core.transfer import Frame

IMG = Image.new("RGB", (8, 8), (200, 30, 30))


class Ticking:
    """`n` frames, `delay` seconds apart, an image every `image_every`; logs start and end if given a list."""

    def __init__(self, n, delay=0.02, log=None, name=None, image_every=1):
        self.n, self.delay, self.log, self.name, self.image_every = n, delay, log, name, image_every

    def frames(self, backbone):
        if self.log is not None:
            self.log.append(("start", self.name))
        try:
            for i in range(1, self.n + 1):
                time.sleep(self.delay)
                image = IMG if i % self.image_every == 0 or i == self.n else None
                yield Frame(
                    i, self.n, {"content": 1.0, "style": 1.0, "tv": 0.0, "total": 2.0}, i * self.delay, (8, 8), image
                )
        finally:
            if self.log is not None:
                self.log.append(("end", self.name))


class Raising(Ticking):
    """Two frames, then an exception with a two-line message."""

    def frames(self, backbone):
        yield from Ticking(2, 0.01).frames(backbone)
        raise RuntimeError("out of memory\nmore lines")


class Crashing(Ticking):
    """Two frames, then the worker process dies at once (as under the kernel's out-of-memory killer)."""

    def frames(self, backbone):
        yield from Ticking(2, 0.01).frames(backbone)
        time.sleep(0.2)
        os._exit(9)
