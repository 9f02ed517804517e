"""Worker processes: each loads VGG19 once and runs the tasks the server sends it, up to `lanes` at once.

The server's side (ProcessBackend: a WorkerProcess per process, a slot per lane) talks to
`python -m nst_core.serve.backends.process` over a socketpair with multiprocessing's Connection (pickled messages,
no network); every message of a run carries its id:

    server -> worker   ("run", id, task)   ("stop", id)
    worker -> server   ("ready", info)   ("shot", id, Shot)   ("end", id)   ("error", id, "one line")
                       ("error", id, "one line", "ending"): and the process ends (a CUDA error broke its GPU)

On a CPU a worker runs one task at a time (several runs at once are several processes, each with its share of the
cores: batching runs does not pay on a CPU). On a GPU one process per GPU runs several tasks at once, each in a
thread with its own CUDA stream over the shared, read-only VGG19: one run at 512 px leaves most of a GPU idle.
How many (lanes) the worker measures when it starts (lanes.py), unless NST_CONCURRENT_PER_GPU says.

A run that raises fails with its message and the worker carries on, unless the error was a CUDA error that broke the
process's GPU: then the worker ends once it has said so. A worker that ends or dies (a crash, the kernel's
out-of-memory killer) fails its runs and is started again for the next one.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from ..config import config
from ..errors import RunFailed, StartFailed, WorkerDied, WorkerHung, one_line
from ..job import Shot
from ..limits import Limits
from .slots import END, Pool, clean_up, context_broken, forget_failure, relay, silence_limit, start

# The exit code of a worker whose GPU context a CUDA error broke (it has reported the error, and ends).
CONTEXT_BROKEN = 70


class WorkerProcess:
    """The server's handle on one worker process: started again, at the next run, if it has died. A reader thread
    hands each message to the run it belongs to."""

    def __init__(
        self,
        weights: str,
        device: str,
        threads: int = 0,
        lanes: int = 1,
        start_timeout: float = 300.0,
        env: dict[str, str] | None = None,
    ):
        self.args = [weights, device, str(threads), str(lanes)]
        self.env = {**os.environ, **env} if env else None  # (CUDA_VISIBLE_DEVICES: its GPU)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.info: dict = {}
        self._inbox: dict[int, queue.Queue] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # starting, and the inbox
        self._send_lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), *self.args],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        msg = None
        if self.conn.poll(self.start_timeout):
            with contextlib.suppress(EOFError, OSError):
                msg = self.conn.recv()
        if msg is None or msg[0] != "ready":
            why = msg[1] if msg else self._ended(self.proc, "starting")
            self.close()
            raise StartFailed(f"the worker could not start: {why}")
        self.info = msg[1]
        threading.Thread(target=self._read, args=(self.conn, self.proc), name="nst-worker-reader", daemon=True).start()

    @staticmethod
    def _ended(proc: subprocess.Popen, doing: str) -> str:
        """Why `proc` is gone, in one line (it is reaped here). Always the process the caller saw end: by then
        self.proc may be a new one, starting for the next run."""
        try:
            code = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        why = {-9: " (killed: out of memory?)", CONTEXT_BROKEN: " after a CUDA error that broke its GPU"}.get(code, "")
        return f"the worker process ended {doing} (exit code {code}){why}; it starts again for the next run"

    def _read(self, conn: Connection, proc: subprocess.Popen) -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                box = self._inbox.get(msg[1])
            if box is not None:  # (a late message of a run the server has given up on goes nowhere)
                box.put(msg)
        # This process is gone: so are its runs. Checked and reaped under the lock that run() holds while it starts a
        # new process, so that a run of the new one is never told of the old one's end (as it would be when a hung
        # worker is killed and the next run starts at once).
        with self._lock:
            if self.proc is not proc:  # started again meanwhile: the runs waiting now are the new process's
                return
            why = self._ended(proc, "during this run")
            boxes = list(self._inbox.values())
        for box in boxes:
            box.put(("died", None, why))

    def _send(self, msg) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def run(self, task, emit, cancelled: threading.Event, silence: float) -> None:
        with self._lock:
            if self.proc.poll() is not None:
                self._start()
            proc, run_id, box = self.proc, next(self._ids), queue.Queue()
            self._inbox[run_id] = box

        def receive(timeout: float):
            try:
                msg = box.get(timeout=timeout)
            except queue.Empty:
                return None
            if msg[0] == "shot":
                return msg[2]
            if msg[0] == "end":
                return END
            if msg[0] == "died":
                raise WorkerDied(msg[2])
            if msg[3:] == ("ending",):  # its GPU is broken: the slot comes back once the process has ended
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
                self.kill(proc)
            raise RunFailed(msg[2])

        try:
            self._send(("run", run_id, task))
            relay(receive, lambda: self._send(("stop", run_id)), emit, cancelled, silence)
        except OSError:  # its socket is gone (BrokenPipeError, ConnectionResetError): the process with it
            self.kill(proc)
            raise WorkerDied(self._ended(proc, "during this run")) from None
        except WorkerHung:
            self.kill(proc)  # it starts again for the next run (a lane beside it fails with it)
            raise
        finally:
            with self._lock:
                self._inbox.pop(run_id, None)

    def kill(self, proc: subprocess.Popen | None = None) -> None:
        """End the process (`proc`, or the current one) now, and wait for it: the next run then sees that it has to
        start a new one."""
        proc = proc or self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.kill()
        if self.proc is not None:
            self.proc.wait()
        if self.conn is not None:
            self.conn.close()


def gpu_plan(device: str, gpus: int, visible: str | None) -> list[tuple[str, dict[str, str]]]:
    """(device, environment) of each worker process on a GPU host, one per GPU. The first is started with `device`
    and sees every GPU (it tells the server how many: `gpus`); each other one sees only its own GPU
    (CUDA_VISIBLE_DEVICES: one of `visible`, the server's own, else 0, 1, ...), as cuda:0. NST_DEVICE=cuda:N
    names one GPU: that GPU alone."""
    if device.startswith("cuda:"):
        return [(device, {})]
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(gpus)]
    return [(device, {})] + [("cuda", {"CUDA_VISIBLE_DEVICES": ids[i]}) for i in range(1, min(gpus, len(ids)))]


class ProcessSlot:
    """One slot: a run at a time on one worker process (a GPU's worker has one per lane)."""

    def __init__(self, worker: WorkerProcess):
        self.worker = worker

    def run(self, task, emit, cancelled, silence: float) -> None:
        self.worker.run(task, emit, cancelled, silence)

    @property
    def proc(self):
        return self.worker.proc


class ProcessBackend:
    """Worker processes (Limits.slots): on a CPU NST_CONCURRENT_CPU of them, sharing the cores; on a GPU host one per
    GPU, each running NST_CONCURRENT_PER_GPU runs at once (0: as many as the worker measured to pay). `lanes` puts
    that many runs at once in each process whatever the device (the tests run the GPU's way on a CPU)."""

    def __init__(
        self, weights: str = "original", device: str = "auto", limits: Limits | None = None, lanes: int | None = None
    ):
        limits = limits or Limits()
        self.silence = silence_limit(limits)
        per_gpu = limits.concurrent_per_gpu
        first = WorkerProcess(weights, device, lanes=lanes or (per_gpu if per_gpu > 0 else 0))
        self.info = first.info
        workers = [first]
        if self.info["device_type"] == "cuda":
            lanes = lanes or self.info["lanes"]
            for dev, env in gpu_plan(device, self.info["gpus"], config().cuda_visible_devices)[1:]:
                workers.append(WorkerProcess(weights, dev, lanes=lanes, env=env))
        elif lanes is None:
            lanes = 1
            count = limits.slots(self.info["device_type"], self.info["gpus"])
            if count > 1:  # several processes, the cores shared between them
                threads = max(1, (os.cpu_count() or 1) // count)
                first.close()
                workers = [WorkerProcess(weights, device, threads) for _ in range(count)]
        self.lanes = lanes
        self.slots = len(workers) * lanes
        self._retired: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self.pool = Pool([ProcessSlot(w) for w in workers for _ in range(lanes)], self._retire)

    def _retire(self, slot: ProcessSlot) -> None:
        """A slot the closed pool will not use again; its worker ends with the last of its slots (a GPU worker's other
        lanes may still be finishing their runs)."""
        with self._lock:
            self._retired[slot.worker] += 1
            last = self._retired[slot.worker] == self.lanes
        if last:
            slot.worker.close()

    def run(self, task, emit, cancelled: threading.Event) -> None:
        slot = self.pool.take()
        try:
            slot.run(task, emit, cancelled, self.silence)
        finally:
            self.pool.put(slot)

    def close(self) -> None:
        """End the idle workers now, a busy one as soon as its run has stopped."""
        self.pool.close()


# ---------------------------------------------------------------- the worker process itself


def main(fd: int, weights: str, device: str, threads: int, lanes: int) -> None:
    conn = Connection(fd)
    send_lock = threading.Lock()

    def send(msg) -> None:
        with send_lock:
            conn.send(msg)

    try:
        backbone, info = start(weights, device, threads)
        if backbone.device.type == "cuda" and lanes <= 0:
            from .lanes import measure_lanes

            info["lanes"], info["lane_throughput"] = measure_lanes(backbone, config().limits.max_size_gpu)
        else:
            info["lanes"] = max(1, lanes)
        send(("ready", info))
    except Exception as e:
        send(("error", one_line(e)))
        return
    stops: dict[int, threading.Event] = {}

    def run(run_id: int, task) -> None:
        try:
            serve_run(run_id, task, backbone, send, stops[run_id])
        finally:
            stops.pop(run_id, None)

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the server has gone: so do we
            return
        if msg[0] == "run":
            stops[msg[1]] = threading.Event()
            threading.Thread(target=run, args=msg[1:], name=f"nst-run-{msg[1]}", daemon=True).start()
        elif msg[0] == "stop" and msg[1] in stops:  # (a late "stop" for a run that has ended: nothing to do)
            stops[msg[1]].set()


def encode_aside(frames, emit: Callable, stop, depth: int = 2) -> None:
    """drive(), with each frame made a Shot (its preview PNG-encoded, which is slow at large sizes) and sent by a
    thread beside the run's, so the run goes on with its next steps meanwhile. At most `depth` frames wait (each
    holds its preview); every frame the run made is sent, in order, before this returns (then "end" follows them)."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    failed: list[BaseException] = []

    def encoder() -> None:
        while (frame := waiting.get()) is not None:
            if not failed:  # (after a failure, only emptied: the run is about to stop)
                try:
                    emit(Shot.of(frame))
                except BaseException as e:
                    failed.append(e)

    thread = threading.Thread(target=encoder, name="nst-encode", daemon=True)
    thread.start()
    try:
        for frame in frames:
            waiting.put(frame)
            if failed or stop.is_set():
                break
    finally:
        frames.close()
        waiting.put(None)
        thread.join()
    if failed:
        raise failed[0]


def serve_run(run_id: int, task, backbone, send: Callable, stop, cleanup: Callable = forget_failure, exit=os._exit):
    """One run in the worker: its shots, then "end", or its error in one line. The error is sent first, and only then
    is the run's memory given back (`cleanup`, outside the `except`: after a CUDA error it raises again, and it must
    not keep the message from the server). After an error that breaks the GPU context, the process ends
    (`exit(CONTEXT_BROKEN)`) once the error is sent: the server starts a new one for the next run."""
    from .lanes import own_stream

    failure, broken = None, False
    try:
        with own_stream(backbone):
            encode_aside(task.frames(backbone), lambda shot: send(("shot", run_id, shot)), stop)
        send(("end", run_id))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return
    except Exception as e:  # the run failed; the worker carries on with the next one
        failure, broken = one_line(e), context_broken(e)
    if failure is None:
        return
    with contextlib.suppress(OSError):
        send(("error", run_id, failure, "ending") if broken else ("error", run_id, failure))
    if broken:
        exit(CONTEXT_BROKEN)
        return
    clean_up(backbone, cleanup)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
