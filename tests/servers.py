"""A real `streamlit run app.py` on 127.0.0.1 and the headless Chromium that visits it (the browser test
and benchmarks/bench_load.py)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """The app on a free loopback port; its output is collected in `lines` (read as it comes, so a
    chatty server never blocks on a full pipe)."""

    def __init__(self, env: dict | None = None, timeout: float = 120):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ROOT / "app.py"),
                "--server.port",
                str(self.port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"
        t = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(self.url + "/_stcore/health", timeout=1)
                return
            except OSError:
                assert self.proc.poll() is None, "".join(self.lines)
                assert time.monotonic() - t < timeout, "streamlit did not start"
                time.sleep(0.3)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def seconds(text: str) -> float:
    """'about 1 min 05 s' -> 65 (the page's fmt_seconds)."""
    m = re.search(r"about (?:(\d+) min )?(\d+) s", text)
    return 60 * int(m.group(1) or 0) + int(m.group(2))


# A watched run lasts about this many of the page's 1 s polls on this machine, by the server's own cost model (a GPU
# or a fast CPU gets more steps); a test stops it once it has seen what it must. So nothing races the page's poll
# against the run's speed. (The server needs NST_MAX_ITERATIONS above what the model may ask for.)
WATCHED_SECONDS = 60


def watched_steps(page, url: str, size: int) -> int:
    """The number of steps that makes a one-level run of `size` px last WATCHED_SECONDS here, from the estimate the
    Studio shows (a multiple of 40: a preview every steps / 40)."""
    from playwright.sync_api import expect

    page.goto(url + f"/?size={size}&iterations=1000&scales=1", wait_until="domcontentloaded")
    estimate = page.get_by_text("Estimated time on this server")
    expect(estimate).to_be_visible(timeout=180_000)  # the first visit starts the service
    per_step = max(seconds(estimate.inner_text()), 1) / 1000
    return max(200, round(WATCHED_SECONDS / per_step / 40) * 40)


def chromium(p):
    """Debian's headless Chromium through Playwright's `p`; without it a test fails, never skips (`make test`
    installs it)."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: `make test` installs Debian's chromium")
    return p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)


def worker_processes(server: StreamlitServer) -> list[int]:
    """The worker processes (nst_core.serve.backends.process) under the server."""
    found, todo = [], [server.proc.pid]
    while todo:
        pid = todo.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        todo += kids
        for k in kids:
            try:
                if b"nst_core.serve.backends.process" in Path(f"/proc/{k}/cmdline").read_bytes():
                    found.append(k)
            except OSError:
                pass
    return found
