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

    def work(self):
        """(pixel-evaluations, steps) for the cost model: a million per step."""
        return 1e6 * self.n, self.n

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


class Logged(Ticking):
    """Ticking that writes, in whichever process runs it, each step it yields and how it ended ("closed" when
    the run was stopped, "done" when it ran out) with a monotonic time stamp (one clock for every process on
    this machine) to `path`."""

    def __init__(self, n, delay, path):
        super().__init__(n, delay)
        self.path = str(path)

    def frames(self, backbone):
        with open(self.path, "w") as log:
            how = "closed"
            try:
                for frame in Ticking(self.n, self.delay).frames(backbone):
                    log.write(f"step {frame.step} {time.monotonic()}\n")
                    log.flush()
                    yield frame
                how = "done"
            finally:
                log.write(f"{how} {time.monotonic()}\n")


def read_log(path) -> list[tuple[str, int | None, float]]:
    rows = []
    for line in open(path).read().split("\n"):
        if line:
            *what, t = line.split()
            rows.append((what[0], int(what[1]) if len(what) > 1 else None, float(t)))
    return rows


class Hanging(Ticking):
    """One frame, then nothing at all (a worker stuck in a C call, say)."""

    def frames(self, backbone):
        yield from Ticking(1, 0.01).frames(backbone)
        time.sleep(3600)
