"""Worker processes: each loads VGG19 once and runs tasks sent by the server, one at a time.

The server side (ProcessBackend, one Worker per slot) talks to `python -m nst_core.worker` over a
socketpair with multiprocessing's Connection (pickled messages, no network):

    server -> worker   ("run", task)   ("stop",)
    worker -> server   ("ready", info)   ("shot", Shot)   ("end",)   ("error", "one line")

A run that raises fails with its message and the worker carries on; a worker that dies (a crash, the
kernel's out-of-memory killer) fails its run and is started again for the next one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

from .jobs import RunFailed, StartFailed, drive, one_line
from .limits import Limits


class WorkerDied(RunFailed):
    pass


class Worker:
    """The server's handle on one worker process (started again if it dies)."""

    def __init__(self, weights: str, device: str, threads: int = 0, start_timeout: float = 300.0):
        self.args = [weights, device, str(threads)]
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.info: dict = {}
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nst_core.worker", str(theirs.fileno()), *self.args],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        msg = self._recv(self.start_timeout, "starting")
        if msg[0] == "error":
            self.close()
            raise StartFailed(f"the worker could not start: {msg[1]}")
        self.info = msg[1]

    def _recv(self, timeout: float, doing: str):
        closed = False
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                closed = True  # its end of the socket closed: the process is exiting, or has exited
        try:
            code = self.proc.wait(5 if closed else 0)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            self.proc.kill()
            code = self.proc.wait()
            raise WorkerDied(f"the worker did not answer while {doing}; it starts again for the next run")
        why = " (killed: out of memory?)" if code == -9 else ""
        raise WorkerDied(
            f"the worker process ended while {doing} (exit code {code}){why}; it starts again for the next run"
        )

    def run(self, task, emit, cancelled: threading.Event) -> None:
        if self.proc.poll() is not None:
            self._start()
        try:
            self.conn.send(("run", task))
            stop_sent = False
            while True:
                if cancelled.is_set() and not stop_sent:
                    self.conn.send(("stop",))
                    stop_sent = True
                if not self.conn.poll(0.1):
                    if self.proc.poll() is not None:
                        self._recv(0, "running")  # raises WorkerDied
                    continue
                msg = self._recv(0, "running")
                if msg[0] == "shot":
                    emit(msg[1])
                elif msg[0] == "end":
                    return
                else:
                    raise RunFailed(msg[1])
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise WorkerDied(
                f"the worker process ended during this run (exit code {self.proc.returncode}); "
                "it starts again for the next run"
            ) from None
        except WorkerDied:
            self.close()
            raise

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self.conn is not None:
            self.conn.close()


class ProcessBackend:
    """`slots` worker processes (one per GPU times NST_CONCURRENT_PER_GPU, or NST_CONCURRENT_CPU)."""

    def __init__(self, weights: str = "original", device: str = "auto", limits: Limits | None = None):
        limits = limits or Limits()
        first = Worker(weights, device)
        self.info = first.info
        self.slots = limits.concurrent(self.info["device_type"], self.info["gpus"])
        workers = [first]
        if self.slots > 1:
            # Share the CPU cores between the workers; one GPU each, round robin.
            threads = max(1, (os.cpu_count() or 1) // self.slots) if self.info["device_type"] == "cpu" else 0
            first.close()
            workers = []
            for i in range(self.slots):
                dev = f"cuda:{i % self.info['gpus']}" if self.info["device_type"] == "cuda" else device
                workers.append(Worker(weights, dev, threads))
        self._idle: list[Worker] = workers
        self._lock = threading.Lock()

    def run(self, task, emit, cancelled: threading.Event) -> None:
        with self._lock:  # the runner never runs more than `slots` at once, so one is always idle
            worker = self._idle.pop()
        try:
            worker.run(task, emit, cancelled)
        finally:
            with self._lock:
                self._idle.append(worker)

    def close(self) -> None:
        with self._lock:
            workers = list(self._idle)
        for w in workers:  # a busy worker ends when its run stops and its socket closes with this process
            w.close()


# ---------------------------------------------------------------- the worker process itself


def prepare(weights: str, device: str, threads: int):
    """What every worker (a process here, a Ray actor) does once: load VGG19, probe the cost model.
    Returns the backbone and the info the server shows and plans with."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from .backbone import describe_device, load_backbone
    from .jobs import CostModel

    backbone = load_backbone(weights, device)
    cost = CostModel.probe(backbone)
    return backbone, {
        "device": describe_device(backbone.device, backbone.native_bf16),
        "device_type": backbone.device.type,
        "gpus": torch.cuda.device_count() if backbone.device.type == "cuda" else 0,
        "weights": backbone.source,
        "rate": cost.rate,
        "per_step": cost.per_step,
    }


def forget_failure(backbone) -> None:
    """After a failed run: give its GPU memory back for the next one."""
    if backbone.device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def main(fd: int, weights: str, device: str, threads: int) -> None:
    conn = Connection(fd)
    try:
        backbone, info = prepare(weights, device, threads)
        conn.send(("ready", info))
    except Exception as e:
        conn.send(("error", one_line(e)))
        return

    class StopRequested:
        """Cancelled when the server asks; checked between steps."""

        stopped = False

        def is_set(self) -> bool:
            while not self.stopped and conn.poll():
                self.stopped = conn.recv()[0] == "stop"
            return self.stopped

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the server has gone: so do we
            return
        if msg[0] != "run":
            continue  # a late "stop" for a run that had already ended
        try:
            drive(msg[1].frames(backbone), lambda shot: conn.send(("shot", shot)), StopRequested())
            conn.send(("end",))
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return
        except Exception as e:  # the run failed; the worker carries on with the next one
            forget_failure(backbone)
            conn.send(("error", one_line(e)))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
