"""The in-process backend: tasks run in the runner's own thread, on a backbone loaded here (tests, the CLI's
--runner thread, a laptop)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ...tasks import Task
from ..job import Shot, drive


class ThreadBackend:
    """Runs tasks in the runner's own thread, in this process, on a backbone loaded here."""

    def __init__(self, backbone, slots: int = 1):
        self.backbone, self.slots = backbone, slots

    def run(self, task: Task, emit: Callable[[Shot], None], cancelled: threading.Event) -> None:
        drive(task.frames(self.backbone), emit, cancelled)
