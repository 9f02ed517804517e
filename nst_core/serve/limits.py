"""Every limit that keeps a shared server alive, in one place; each can be set by an NST_* variable."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..images import MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    upload_mb: int = 20  # largest upload (also server.maxUploadSize in .streamlit/config.toml)
    max_pixels: int = MAX_PIXELS  # decoded pixels of an uploaded image
    max_size_cpu: int = 768  # longest output side on a CPU host
    max_size_gpu: int = 2048  # ... and on a GPU
    max_iterations: int = 1000  # per run
    max_seconds: float = 900.0  # wall time per run; the run stops and keeps its result
    max_frames: int = 48  # preview frames kept per run (older ones are thinned out evenly)
    # Slots: runs at once. The others wait in the queue.
    concurrent_cpu: int = 1  # on a CPU host
    concurrent_per_gpu: int = 1  # per GPU
    ray_cpus: int = 0  # CPUs per slot on a Ray cluster without GPUs (0: the smallest node's, at most 8)
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

    def slots(self, device_type: str, gpus: int = 1) -> int:
        """Runs at once on one host: NST_CONCURRENT_CPU, or NST_CONCURRENT_PER_GPU for each GPU."""
        return self.concurrent_cpu if device_type == "cpu" else self.concurrent_per_gpu * max(1, gpus)

    def cluster_slots(self, gpus: int, node_cpus: list[int]) -> tuple[int, int]:
        """(slots, CPU threads per slot) on a Ray cluster: NST_CONCURRENT_PER_GPU per GPU (a GPU slot gets no CPU
        threads of its own), or on a cluster without GPUs a slot per NST_RAY_CPUS CPUs of each node (default: all
        the CPUs of the smallest node, at most 8, as one run already uses every thread it is given)."""
        if gpus:
            return self.slots("cuda", gpus), 0
        threads = self.ray_cpus or min(8, min((c for c in node_cpus if c > 0), default=1))
        return sum(c // threads for c in node_cpus), threads
