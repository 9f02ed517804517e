"""Runs on a Ray cluster (NST_RUNNER=ray), so that the Streamlit server stays a thin front end.

RAY_ADDRESS joins a running cluster (`ray start --head` on one machine, `ray start --address=...` on the
others). Without it a local Ray instance starts, listening on 127.0.0.1 only. Ray is an optional install:
this module is imported only for NST_RUNNER=ray.

Each slot is a Ray actor (WorkerActor) that loads VGG19 once (slots.start, as a worker process does) and runs
one task at a time. Its `run` is a streaming generator of Shots: step, losses, and at the preview cadence a
PNG. The server reads them as they come, so the page looks exactly as it does with the local worker
process. Stop is a second call on the same actor (two threads: one runs, one listens), checked between
steps, so a stopped run ends at once and keeps its picture. An actor that dies (its process killed, its
node gone) fails its run in one line and is replaced at once; the replacement loads VGG19 while the
queue carries on.

Capacity is read from the cluster at start-up (Limits.cluster_slots): a worker per GPU (times
NST_CONCURRENT_PER_GPU), or on a cluster without GPUs a worker per NST_RAY_CPUS CPUs. The actors are spread
over the nodes.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..config import config
from ..errors import RunFailed, StartFailed, WorkerDied, WorkerHung, one_line
from ..job import shots
from ..limits import Limits
from .slots import END, Pool, clean_up, context_broken, relay, silence_limit, start

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a local Ray instance uses 127.0.0.1 only


def actor_device(device: str, gpus: int) -> str:
    """The device an actor is told: on GPUs Ray gives each actor its own (CUDA_VISIBLE_DEVICES), which it sees as
    cuda:0, so a GPU named by index (cuda:1) would not be there ("invalid device ordinal")."""
    return "cuda" if gpus and device.startswith("cuda") else device


class ContextBroken(RunFailed):
    """A run's CUDA error that left its actor's GPU unusable: the server kills that actor once it has read this."""


class WorkerActor:
    """One actor: VGG19 loaded once, one run at a time (plus a second thread for `stop`)."""

    def __init__(self, weights: str, device: str, threads: int):
        import ray

        self.backbone, self.info = start(weights, device, threads)
        ctx = ray.get_runtime_context()
        self.info.update(node=ctx.get_node_id(), ip=ray.util.get_node_ip_address(), pid=os.getpid())
        self.stopped = 0  # the id of the last run asked to stop

    def ready(self) -> dict:
        return self.info

    def run(self, run_id: int, task):
        class Cancelled:
            def is_set(_) -> bool:
                return self.stopped == run_id

        failure = None
        try:
            yield from shots(task.frames(self.backbone), Cancelled())
        except Exception as e:
            if context_broken(e):  # the server reads this type, kills this actor and starts a new one
                raise ContextBroken(one_line(e)) from None
            failure = one_line(e)
        if failure is not None:
            # Outside the `except`: the traceback (it holds the run's tensors) is gone, so the memory can be given
            # back; a cleanup that fails too is only logged, and the run's own error still goes to the server.
            clean_up(self.backbone)
            raise RunFailed(failure)

    def stop(self, run_id: int) -> None:
        self.stopped = run_id


@dataclass
class ActorSlot:
    """The server's handle on one WorkerActor."""

    actor: object  # a Ray actor handle
    ready: object  # ObjectRef of its info, ready once VGG19 is loaded
    info: dict | None = None  # that info, once read


# Ray 2.60 writes the token it generates for a local instance here, readable by every user of the machine (0644).
TOKEN = Path.home() / ".ray" / "auth_token"


def private_token() -> None:
    """The token file readable by its owner only (0600): with it, anyone on the machine could join the instance."""
    with contextlib.suppress(OSError):
        if TOKEN.exists() and TOKEN.stat().st_uid == os.getuid() and TOKEN.stat().st_mode & 0o077:
            TOKEN.chmod(0o600)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming RAY_ADDRESS, where ray.init would retry for minutes."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise StartFailed(f"cannot reach the Ray cluster at RAY_ADDRESS={address} ({one_line(e)})") from None


class RayBackend:
    """`slots` Ray actors; `run()` streams one task's shots from an idle one."""

    def __init__(
        self,
        weights: str = "original",
        device: str = "auto",
        limits: Limits | None = None,
        address: str | None = None,
        num_cpus: int | None = None,
        start_timeout: float = 300.0,
    ):
        limits = limits or Limits()
        address = address or config().ray_address
        if address is None:
            os.environ.setdefault(LOOPBACK_ONLY, "0")  # read when ray is imported
        try:
            import ray
        except ImportError:
            raise StartFailed("NST_RUNNER=ray needs Ray: pip install -r requirements-ray.txt") from None
        self.ray, self.start_timeout, self.silence = ray, start_timeout, silence_limit(limits)
        self._owns = not ray.is_initialized()  # then this backend connects, and disconnects in close()
        self._local = address is None
        if self._owns:
            if address is not None:
                check_reachable(address)
            else:
                with contextlib.suppress(OSError):  # a new ~/.ray: nobody else can look inside
                    TOKEN.parent.mkdir(mode=0o700, exist_ok=True)
            try:
                ray.init(
                    address=address,
                    num_cpus=num_cpus if address is None else None,
                    include_dashboard=False,
                    # A cluster's nodes get this package from the app, so they need only its requirements.
                    runtime_env={"py_modules": [str(Path(__file__).parents[1])]} if address else None,
                )
            except Exception as e:
                if address is None:
                    raise StartFailed(f"could not start a local Ray instance: {one_line(e)}") from None
                # `ray start --head` turns token authentication on by default; a client sends the token only
                # when told to. (Guessing from a token file on disk is wrong: a driver in token mode breaks
                # its actors on a cluster without it.)
                hint = (
                    ""
                    if config().ray_token_auth
                    else " (a cluster with token authentication, Ray's default, needs RAY_AUTH_MODE=token and its "
                    "token here: the head's ~/.ray/auth_token, or RAY_AUTH_TOKEN)"
                )
                why = f"could not join the Ray cluster at RAY_ADDRESS={address}: {one_line(e)}{hint}"
                raise StartFailed(why) from None
            atexit.register(self.close)  # a server that exits (Ctrl-C, SIGTERM) ends its local instance too
            private_token()
        nodes = [n for n in ray.nodes() if n["Alive"]]
        gpus = 0 if device == "cpu" else int(sum(n["Resources"].get("GPU", 0) for n in nodes))
        self.slots, threads = limits.cluster_slots(gpus, [int(n["Resources"].get("CPU", 0)) for n in nodes])
        if gpus:
            self._options = {"num_gpus": gpus / self.slots, "num_cpus": 1}
            self.kind = "GPU"
        else:
            self._options = {"num_cpus": threads}
            self.kind = "CPU"
        if self.slots == 0:
            self.close()
            raise StartFailed(f"the Ray cluster has no node with {threads} free CPUs (NST_RAY_CPUS) or a GPU")
        self._args = (weights, actor_device(device, gpus), threads)
        self._actor = ray.remote(max_concurrency=2)(WorkerActor)
        self._ids = itertools.count(1)
        self.pool = Pool([self._new_slot() for _ in range(self.slots)], lambda slot: ray.kill(slot.actor))
        try:
            infos = ray.get([s.ready for s in self.pool.idle()], timeout=start_timeout)
        except Exception as e:
            self.close()
            raise StartFailed(f"the Ray workers did not start: {self._why(e)}") from None
        self.info = infos[0]
        self.nodes = len({i["node"] for i in infos})
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        plural = "s" if self.slots > 1 else ""
        spread = f" on {self.nodes} nodes" if self.nodes > 1 else ""
        self.info["device"] = f"{self.slots} {self.kind} worker{plural}{spread} on {where} ({self.info['device']})"
        self.runs_per_node: Counter[str] = Counter()

    def _new_slot(self) -> ActorSlot:
        actor = self._actor.options(scheduling_strategy="SPREAD", **self._options).remote(*self._args)
        return ActorSlot(actor, actor.ready.remote())

    @staticmethod
    def _why(e: BaseException) -> str:
        cause = getattr(e, "cause", None)  # a RayTaskError carries the exception raised in the actor
        return one_line(cause) if isinstance(cause, BaseException) else one_line(e)

    def _pick(self, idle: list[ActorSlot]) -> ActorSlot:
        """An actor that has loaded VGG19 first: a replacement may still be loading, or find no room."""
        done, _ = self.ray.wait([s.ready for s in idle], num_returns=len(idle), timeout=0)
        return next((s for s in idle if s.ready in done), idle[-1])

    def run(self, task, emit, cancelled: threading.Event) -> None:
        slot = self.pool.take(self._pick)
        try:
            self._run(slot, task, emit, cancelled)
        except self.ray.exceptions.RayActorError as e:
            where = f" (pid {slot.info['pid']} on {slot.info['ip']})" if slot.info else ""
            self.ray.kill(slot.actor)
            slot = self._new_slot()
            if where:
                raise WorkerDied(f"the Ray worker{where} died during this run; a new one is starting") from None
            raise WorkerDied(f"the Ray worker could not start: {self._why(e)}") from None
        except (WorkerHung, ContextBroken):
            self.ray.kill(slot.actor)
            slot = self._new_slot()
            raise
        finally:
            self.pool.put(slot)

    def _run(self, slot: ActorSlot, task, emit, cancelled: threading.Event) -> None:
        ray = self.ray
        try:
            slot.info = ray.get(slot.ready, timeout=self.start_timeout)
        except ray.exceptions.GetTimeoutError:
            raise RunFailed(
                f"no Ray worker started within {self.start_timeout:.0f} s: the cluster has no free {self.kind}"
            ) from None
        self.runs_per_node[slot.info["node"]] += 1
        run_id = next(self._ids)
        stream = slot.actor.run.remote(run_id, task)

        def receive(timeout: float):
            done, _ = ray.wait([stream], timeout=timeout)
            if not done:
                return None
            try:
                return ray.get(next(stream))
            except StopIteration:
                return END
            except ray.exceptions.RayTaskError as e:
                if isinstance(getattr(e, "cause", None), ContextBroken):
                    raise ContextBroken(self._why(e)) from None
                raise RunFailed(self._why(e)) from None

        relay(receive, lambda: slot.actor.stop.remote(run_id), emit, cancelled, self.silence)

    def close(self) -> None:
        """Kill the idle actors now and a busy one when its run has stopped; end the local instance we started."""
        if hasattr(self, "pool"):
            self.pool.close()
        if self._owns and self.ray.is_initialized():
            ours = _ray_processes(os.getpid()) if self._local else []
            self.ray.shutdown()
            _reap(ours)


def _ray_processes(pid: int) -> list[int]:
    """Ray's processes under `pid` (Linux /proc; elsewhere none): its own binaries and scripts, its
    workers (named ray::...), and nothing else this process started."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(proc.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return [p for p in found if _is_ray(p)]


def _is_ray(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[0].startswith(b"ray::") or any(b"/ray/" in a for a in argv)


def _reap(pids: list[int], grace: float = 3.0) -> None:
    """Ray 2.60's ray.shutdown() ends the raylet, but its dashboard and runtime-env agents log "Raylet is
    dead! Exiting" and then hang on, one pair per instance. Whatever of the local instance is
    still there after `grace` seconds is killed."""
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if (f := _stat(p)) and f[0] != "Z"]  # not gone, not dead-but-unreaped
        time.sleep(0.1)
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, parent pid, ... ([] if there is no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []
