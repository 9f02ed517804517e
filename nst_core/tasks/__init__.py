"""What can be run: a task is everything one run needs, as it crosses to a worker (pickled: pictures, settings),
and knows how to run itself on a backbone. The queue (nst_core.serve) runs any task; a new kind of run is one new
module here plus its page, and nothing in serve changes for it.

A task must provide:

- `frames(backbone) -> Iterator[Frame]`: the run, one nst_core.transfer.Frame per evaluation of the objective
  (step counted from 1 to `total` over the whole run), an image on the frames that show one and on the last.
  Closing the iterator stops the run at once.
- `work() -> (pixel-evaluations, steps)`: the whole run's size for the cost model (nst_core.schedule.pixel_evals),
  which gives the waiting times of everyone queued behind it.
- optionally a class attribute `cacheable = True`: the frames depend on the task's fields alone (the same
  pictures and settings give the same run), so a finished run may be served again to an identical task.
- optionally, a run made of parts (a clip's frames) marks each Frame with `part=(k, n)` and the step that finishes
  one of its outputs (a painted frame) with `output=True`, its image that output: the queue then keeps every output
  (Job.outputs) beside the previews, and keeps the first part's previews as the run's animation. Nothing else about
  a task is known to the server: what the outputs are, and how they are put together, is the task's page's.

Tasks import the method (nst_core) and never the server (nst_core.serve).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Task(Protocol):
    # Optional, a class attribute: `cacheable = True` says the frames depend on the task's fields alone (the same
    # pictures and settings give the same run), so a finished run may be served again to an identical task.

    def frames(self, backbone) -> Iterator: ...

    def work(self) -> tuple[float, int]:
        """(pixel-evaluations, steps) of the whole task, for the cost model (nst_core.schedule.pixel_evals)."""
