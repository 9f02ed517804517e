"""Every limit that keeps a shared server alive, in one place; each can be set by an NST_* variable."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    upload_mb: int = 20  # largest upload (also server.maxUploadSize in .streamlit/config.toml)
    max_pixels: int = 40_000_000  # decoded pixels of an uploaded image
    max_size_cpu: int = 768  # longest output side on a CPU host
    max_size_gpu: int = 2048  # ... and on a GPU
    max_iterations: int = 1000  # per run
    max_seconds: float = 900.0  # wall time per run; the run stops and keeps its result
    max_frames: int = 48  # preview frames kept per run (older ones are thinned out evenly)
    concurrent_cpu: int = 1  # simultaneous runs on a CPU host; others wait in a queue
    concurrent_per_gpu: int = 1  # ... per GPU
    ray_cpus: int = 0  # CPUs per worker on a Ray cluster without GPUs (0: the smallest node's, at most 8)
    heartbeat_timeout: float = 20.0  # a run whose page has not been seen for this long is stopped
    room_hours: float = 24.0  # a class room and everything shared in it are deleted this long after it opens
    room_entries: int = 100  # pictures per class wall
    room_entry_mb: float = 12.0  # picture + animation, per shared result
    max_rooms: int = 50  # open class rooms per server

    @classmethod
    def from_env(cls, env=os.environ) -> Limits:
        changes = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"NST_{f.name.upper()}")
            if raw is not None:
                try:
                    changes[f.name] = type(f.default)(raw)
                except ValueError:
                    raise ValueError(f"NST_{f.name.upper()}={raw!r} is not a number") from None
        return cls(**changes)

    def max_size(self, device_type: str) -> int:
        return self.max_size_cpu if device_type == "cpu" else self.max_size_gpu

    def concurrent(self, device_type: str, gpus: int = 1) -> int:
        return self.concurrent_cpu if device_type == "cpu" else self.concurrent_per_gpu * max(1, gpus)
