"""What a server shares between all its sessions, and the one place that picks a backend.

`shared()` is the server's one Service, started on first use and kept in this module: not in Streamlit's
st.cache_resource, which any client can clear with a websocket message (closing every run on the server).
It ends with the process, or with `close()`.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from dataclasses import dataclass

from .backends.thread import ThreadBackend
from .config import RUNNERS, config
from .cost import CostModel
from .limits import Limits
from .queue import Runner

log = logging.getLogger("nst_core")


@dataclass
class Service:
    """The runner (queue + backend), the cost model, the limits, and what it runs on, for people."""

    runner: Runner
    limits: Limits
    device: str  # e.g. "CPU, 2 threads" or "GPU: NVIDIA H100"
    device_type: str  # cpu | cuda | mps
    weights: str  # where the weights came from, for people
    # The host's memory (serve/memory.py): None where every size up to the limits fits; else one line saying the
    # sizes are capped to what fits, or, with cannot_paint, that not even the smallest run fits here.
    memory_line: str | None = None
    cannot_paint: bool = False
    memory_per_run: int | None = None  # bytes one run may use here (None: not capped)

    @property
    def cost(self) -> CostModel:
        return self.runner.cost

    def memory_check(self, settings, aspect: float = 1.0) -> str | None:
        """One line if this run needs more memory than a run has on this host (a large style scale), else None."""
        from .memory import run_fits

        return run_fits(settings, aspect, self.memory_per_run)

    def close(self) -> None:
        """Stop what runs and end the workers (idle ones now, busy ones once their run has stopped)."""
        for job in self.runner.jobs():
            job.cancel("the server is shutting down")
        getattr(self.runner.backend, "close", lambda: None)()

    @property
    def caption(self) -> str:
        where = f" · {self.runner.slots} runs at once" if self.runner.slots > 1 else ""
        return f"{self.device} · {self.weights}{where}"


def start(weights: str = "original", device: str = "auto", limits: Limits | None = None, backend: str = "process"):
    """A new Service. `backend`: process (worker processes, the app's default), ray (Ray actors: RAY_ADDRESS or
    a local instance) or thread (in this process, for debugging)."""
    limits = limits or config().limits
    if backend == "thread":
        from .backends.slots import prepare

        bb, info = prepare(weights, device, threads=0)
        be = ThreadBackend(bb, limits.slots(info["device_type"], info["gpus"]))
    elif backend == "process":
        from .backends.process import ProcessBackend

        be = ProcessBackend(weights, device, limits)
        info = be.info
    elif backend == "ray":
        from .backends.ray import RayBackend

        be = RayBackend(weights, device, limits)
        info = be.info
    else:
        raise ValueError(f"NST_RUNNER={backend!r}: choose {', '.join(RUNNERS)}")
    cap = {"size": limits.max_size(info["device_type"]), "line": None, "per_run": None}
    if backend != "ray":  # Ray's workers run on other machines, with their own memory
        from .memory import SMALLEST, host_memory, size_cap

        cap = size_cap(host_memory(limits=limits), limits, be.slots, info["device_type"])
        if cap["line"]:
            log.warning("%s", cap["line"])
        size = cap["size"] or SMALLEST  # cannot paint: the page says so, and a run tried anyway is the smallest
        if size < limits.max_size_cpu and info["device_type"] == "cpu":
            limits = dataclasses.replace(limits, max_size_cpu=size)
    runner = Runner(be, limits, cost=CostModel(info["rate"], info["per_step"]))
    svc = Service(runner, limits, info["device"], info["device_type"], info["weights"])
    svc.memory_line, svc.cannot_paint, svc.memory_per_run = cap["line"], cap["size"] is None, cap["per_run"]
    return svc


_lock = threading.Lock()
_service: Service | None = None


def shared() -> Service:
    """This server's Service, started on the first call from its configuration (config(): NST_WEIGHTS, NST_DEVICE,
    NST_RUNNER and the NST_* limits). If it cannot start, every call raises (with one line to show: a ConfigError
    for a bad variable) and the next one tries again."""
    global _service
    with _lock:
        if _service is None:
            _log_runs()
            c = config()
            _service = start(c.weights, c.device, c.limits, backend=c.runner)
            atexit.register(_service.close)
        return _service


def running() -> bool:
    """Whether the shared Service has started (a page shows a spinner only while it starts)."""
    return _service is not None


def use(service: Service | None) -> Service | None:
    """Put `service` in place of the shared one (None: start anew at the next shared()); returns the one it
    replaces, which the caller closes if it should. For tests and for a server that changes its configuration."""
    global _service
    with _lock:
        old, _service = _service, service
        return old


def _log_runs() -> None:
    if not log.handlers:  # one line per finished run in the server's log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
