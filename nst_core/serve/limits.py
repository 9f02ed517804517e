"""Every limit that keeps a shared server alive, in one place; each can be set by an NST_* variable (read by
serve/config.py: limits_from_env).
Also the per-client quota (Quota) that the limits on rooms and on room codes tried are counted with."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..images import MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    upload_mb: int = 20  # largest upload (also server.maxUploadSize in .streamlit/config.toml)
    max_pixels: int = MAX_PIXELS  # decoded pixels of an uploaded image
    max_size_cpu: int = 768  # longest output side on a CPU host
    max_size_gpu: int = 2048  # ... and on a GPU
    max_iterations: int = 1000  # per run
    # The memory the server and its workers may use, in MB (0: their memory group's limit, cgroup v2 or v1, or what
    # the machine has). Sizes are capped to the runs that fit (serve/memory.py).
    memory_mb: float = 0.0
    max_seconds: float = 900.0  # wall time per run; the run stops and keeps its result
    hang_grace: float = 60.0  # a worker silent for max_seconds plus this long is killed, and its run fails
    max_frames: int = 48  # preview frames kept per run (older ones are thinned out evenly)
    # Finished runs kept in the server to serve an identical run again at once (jobs.Results); 0: none.
    result_cache_mb: float = 100.0
    # A Studio result on disk (NST_DATA_DIR/results, serve/store.py): its address works this long; one result and
    # its kept animations at most result_mb (previews are thinned to fit), all results at most results_mb.
    result_hours: float = 24.0
    result_mb: float = 40.0
    results_mb: float = 2000.0
    # One client address's results at most (its own oldest go first; a class behind one router is one address).
    results_mb_per_client: float = 500.0
    results_loaded_mb: float = 200.0  # results read back from disk kept in memory, shared by the pages showing them
    encodes_at_once: int = 1  # animations (MP4, WebP, GIF) encoded at once in the server process
    # Slots: runs at once. The others wait in the queue.
    concurrent_cpu: int = 1  # on a CPU host
    concurrent_per_gpu: int = 0  # per GPU; 0: as many as the GPU's worker measured to pay (serve/backends/lanes.py)
    ray_cpus: int = 0  # CPUs per slot on a Ray cluster without GPUs (0: the smallest node's, at most 8)
    heartbeat_timeout: float = 20.0  # a run whose page has not been seen for this long is stopped
    max_queue: int = 100  # runs waiting or running on this server; more are refused, with a message
    # Runs waiting or running per client address. A class behind one school router shares one address, so
    # this is a class's size, not one: it stops one script from filling the queue, not one pupil.
    runs_per_client: int = 40
    # The header a trusted reverse proxy puts the client's address in (X-Forwarded-For, X-Real-IP); empty:
    # the address of the connection itself. Only set it behind such a proxy: a client can send any header.
    client_header: str = ""
    rooms_per_client: int = 5  # rooms one client address may open per hour (none with NST_TEACHER_PASSWORD)
    # Wrong room codes per 10 minutes. A right code is never refused; a class of 30 behind one router is one
    # address, each may mistype a few times: the address gets a class's budget, a tab a small one.
    codes_per_client: int = 100
    codes_per_session: int = 10
    # Past codes_per_client, each lookup of a code new to its tab waits this long, one at a time per address: a
    # right code still joins, and codes cannot be tried at the server's speed.
    codes_delay: float = 3.0
    # Wrong teacher passwords (NST_TEACHER_PASSWORD) per client address per 10 minutes; once they are spent, every
    # try from the address waits, the right password too, so that it cannot be guessed (students' codes don't count).
    passwords_per_client: int = 20
    room_hours: float = 24.0  # a class room and everything shared in it are deleted this long after it opens
    empty_room_hours: float = 4.0  # ... or this long after it opens if nothing was ever shared (the longest pace)
    room_entries: int = 100  # pictures per class wall
    room_entry_mb: float = 12.0  # picture + animation, per shared result
    room_mb: float = 150.0  # all the pictures of one class wall
    max_rooms: int = 50  # open class rooms per server; one client address may have a fifth of them open at once
    wall_mb: float = 2000.0  # the disk all class walls together may use
    # The bytes one client address's shared pictures may take on all the walls of this server together (a fifth of
    # NST_WALL_MB's default): a few rooms from one address cannot fill the server's walls for a day. A room's own
    # pictures are bounded by room_entries and room_mb, so a class behind one router can always fill its wall.
    wall_mb_per_client: float = 400.0
    # The Lab's look inside VGG19 (three passes in the server process, one at a time on the whole server): new looks
    # per client address per 10 minutes; a class behind one router is one address (30 pupils, each looking at every
    # layer of a few pictures), a look already made is free.
    looks_per_client: int = 1000
    # A clip (the Studio's video): frames painted at most and the longest side of a painted frame; 0: the host's
    # default, 48 frames at 256 px on a CPU (four seconds at 12 frames a second, a few minutes on 2 cores: see
    # docs/benchmarks.md) and 240 frames at 512 px on a GPU. The clip is streamed, so its length bounds the time a
    # run takes (max_seconds still ends it) and not its memory.
    video_frames: int = 0
    video_size: int = 0

    def clip_frames(self, device_type: str) -> int:
        return self.video_frames or (48 if device_type == "cpu" else 240)

    def clip_size(self, device_type: str) -> int:
        return min(self.video_size or (256 if device_type == "cpu" else 512), self.max_size(device_type))

    def max_size(self, device_type: str) -> int:
        return self.max_size_cpu if device_type == "cpu" else self.max_size_gpu

    def slots(self, device_type: str, gpus: int = 1) -> int:
        """Runs at once on one host: NST_CONCURRENT_CPU, or NST_CONCURRENT_PER_GPU for each GPU (1 where nothing
        has measured what pays: the in-process backend, Ray's actors)."""
        return self.concurrent_cpu if device_type == "cpu" else (self.concurrent_per_gpu or 1) * max(1, gpus)

    def cluster_slots(self, gpus: int, node_cpus: list[int]) -> tuple[int, int]:
        """(slots, CPU threads per slot) on a Ray cluster: NST_CONCURRENT_PER_GPU per GPU (a GPU slot gets no CPU
        threads of its own), or on a cluster without GPUs a slot per NST_RAY_CPUS CPUs of each node (default: all
        the CPUs of the smallest node, at most 8, as one run already uses every thread it is given)."""
        if gpus:
            return self.slots("cuda", gpus), 0
        threads = self.ray_cpus or min(8, min((c for c in node_cpus if c > 0), default=1))
        return sum(c // threads for c in node_cpus), threads


class Quota:
    """At most `count` events per key in any `window` seconds (a sliding window), for limits per client."""

    def __init__(self, count: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.count, self.window, self.clock = count, window, clock
        self._events: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str) -> collections.deque:
        now, events = self.clock(), self._events.setdefault(key, collections.deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def take(self, key: str) -> bool:
        """Check and spend in one step: spends an event and returns True if `key` has one left in the window,
        else returns False and spends nothing (two steps would let parallel sessions overrun the count)."""
        with self._lock:
            events = self._recent(key)
            if len(events) >= self.count:
                return False
            events.append(self.clock())
            if len(self._events) > 10_000:  # forget the keys whose windows have passed
                self._events = {k: v for k, v in self._events.items() if self._recent(k)}
            return True

    def give_back(self, key: str) -> None:
        """Undo the latest take() of `key` (what it paid for did not happen: a room the server could not open)."""
        with self._lock:
            events = self._recent(key)
            if events:
                events.pop()

    def wait(self, key: str) -> float:
        """Seconds until `key` has an event again (0 if it has one now; the whole window for a count of 0)."""
        with self._lock:
            events = self._recent(key)
            if len(events) < self.count:
                return 0.0
            return events[0] + self.window - self.clock() if events else self.window
