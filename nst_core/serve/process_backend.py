"""Worker processes: each loads VGG19 once and runs tasks sent by the server, one at a time.

The server's side (ProcessBackend, one ProcessSlot per slot) talks to `python -m nst_core.serve.process_backend`
over a socketpair with multiprocessing's Connection (pickled messages, no network):

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

from .jobs import RunFailed, StartFailed, WorkerDied, WorkerHung, drive, one_line
from .limits import Limits
from .slots import END, Pool, forget_failure, prepare, relay, silence_limit


class ProcessSlot:
    """The server's handle on one worker process (started again if it dies)."""

    def __init__(self, weights: str, device: str, threads: int = 0, start_timeout: float = 300.0, silence=None):
        self.args = [weights, device, str(threads)]
        self.start_timeout = start_timeout
        self.silence = silence if silence is not None else silence_limit(Limits())
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.info: dict = {}
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno()), *self.args],
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

    def _receive(self, timeout: float):
        """The next message of a run, for slots.relay."""
        if not self.conn.poll(timeout):
            if self.proc.poll() is not None:
                self._recv(0, "running")  # raises WorkerDied
            return None
        msg = self._recv(0, "running")
        if msg[0] == "shot":
            return msg[1]
        if msg[0] == "end":
            return END
        raise RunFailed(msg[1])

    def run(self, task, emit, cancelled: threading.Event) -> None:
        if self.proc.poll() is not None:
            self._start()
        try:
            self.conn.send(("run", task))
            relay(self._receive, lambda: self.conn.send(("stop",)), emit, cancelled, self.silence)
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise WorkerDied(
                f"the worker process ended during this run (exit code {self.proc.returncode}); "
                "it starts again for the next run"
            ) from None
        except (WorkerDied, WorkerHung):
            self.close()  # killed: it starts again for the next run
            raise

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self.conn is not None:
            self.conn.close()


class ProcessBackend:
    """`slots` worker processes (Limits.slots: one per GPU times NST_CONCURRENT_PER_GPU, or NST_CONCURRENT_CPU)."""

    def __init__(self, weights: str = "original", device: str = "auto", limits: Limits | None = None):
        limits = limits or Limits()
        silence = silence_limit(limits)
        first = ProcessSlot(weights, device, silence=silence)
        self.info = first.info
        self.slots = limits.slots(self.info["device_type"], self.info["gpus"])
        workers = [first]
        if self.slots > 1:
            # Share the CPU cores between the workers; one GPU each, round robin.
            threads = max(1, (os.cpu_count() or 1) // self.slots) if self.info["device_type"] == "cpu" else 0
            first.close()
            workers = []
            for i in range(self.slots):
                dev = f"cuda:{i % self.info['gpus']}" if self.info["device_type"] == "cuda" else device
                workers.append(ProcessSlot(weights, dev, threads, silence=silence))
        self.pool = Pool(workers, ProcessSlot.close)

    def run(self, task, emit, cancelled: threading.Event) -> None:
        worker = self.pool.take()
        try:
            worker.run(task, emit, cancelled)
        finally:
            self.pool.put(worker)

    def close(self) -> None:
        """End the idle workers now, a busy one as soon as its run has stopped."""
        self.pool.close()


# ---------------------------------------------------------------- the worker process itself


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
