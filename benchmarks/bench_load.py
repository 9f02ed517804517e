"""A classroom at once (run by hand; prints figures, asserts nothing).

Starts the real server (`streamlit run app.py` on 127.0.0.1), opens N sessions as pages of one headless
Chromium, presses Run on all of them at once (the same small run: 128 px, 20 steps) and waits until every
page says "Done" (or a time limit). Rounds of N = 1, 10, 30 by default; each round is bounded in sessions
and time and the whole benchmark stops by itself.

Per round: runs finished, time to the last, the median run's own time (from the server log) against the
run alone (N = 1), the server's and the worker's CPU-seconds, their RSS, and the client's CPU-seconds.

    .venv/bin/python -m benchmarks.bench_load [--sessions 1 10 30] [--size 128] [--iterations 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time

from benchmarks.common import PAGE_FLAGS, client_cpu, cpu_seconds, descendants, mem_mb
from tests.servers import CHROMIUM, StreamlitServer


class Server(StreamlitServer):
    def worker(self) -> int | None:
        kids = descendants(self.proc.pid)
        return kids[0] if kids else None


def one_round(browser, server: Server, n: int, size: int, iterations: int, limit: float) -> dict:
    pages = []
    for _ in range(n):
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        page.goto(server.url + f"/?size={size}&iterations={iterations}", wait_until="domcontentloaded")
        pages.append(page)
    for page in pages:
        page.get_by_text("Estimated time on this server").wait_for(timeout=120_000)
    time.sleep(2)  # let the pages settle
    log_from = len(server.lines)
    worker = server.worker()
    s0, w0, c0 = cpu_seconds(server.proc.pid), cpu_seconds(worker), client_cpu(server)
    t0 = time.monotonic()
    for page in pages:
        page.get_by_role("button", name="Run").click()
    done: dict[int, float] = {}
    done_re = re.compile(rf"Done: {iterations} steps")
    while len(done) < n and time.monotonic() - t0 < limit:
        for i, page in enumerate(pages):
            if i not in done and page.get_by_text(done_re).count():
                done[i] = time.monotonic() - t0
        time.sleep(0.25)
    s1, w1, c1 = cpu_seconds(server.proc.pid), cpu_seconds(worker), client_cpu(server)
    runs = [
        float(m.group(1))
        for line in server.lines[log_from:]
        if (m := re.search(r"done: \d+ steps in ([\d.]+) s", line))
    ]
    stray = sum("does not exist anymore" in line for line in server.lines[log_from:])
    for page in pages:
        page.close()
    return {
        "n": n,
        "finished": len(done),
        "last": max(done.values()) if done else float("nan"),
        "median_run": statistics.median(runs) if runs else float("nan"),
        "sum_runs": sum(runs),
        "server_cpu": s1 - s0,
        "worker_cpu": w1 - w0,
        "client_cpu": c1 - c0,
        "server_rss": mem_mb(server.proc.pid),
        "server_peak": mem_mb(server.proc.pid, "VmHWM"),
        "worker_rss": mem_mb(worker),
        "worker_peak": mem_mb(worker, "VmHWM"),
        "stray": stray,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 30, 10, 10], help="one round per number")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--limit", type=float, default=600, help="seconds per round at most")
    a = ap.parse_args()
    assert max(a.sessions) <= 40, "a bounded load test: at most 40 sessions"
    from playwright.sync_api import sync_playwright

    # Every page's run is run (not served from an identical one: the pages ask for the same run).
    server = Server({"NST_HEARTBEAT_TIMEOUT": "60", "NST_RESULT_CACHE_MB": "0"})
    print(f"server on {server.url} (pid {server.proc.pid}); {os.cpu_count()} cores; {a.size} px, {a.iterations} steps")
    # The students' browsers would run on their own machines: here they share the server's cores, so
    # they run at the lowest priority and take only what the server and the worker leave.
    os.nice(19)
    alone = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=PAGE_FLAGS)
            for n in a.sessions:
                r = one_round(browser, server, n, a.size, a.iterations, a.limit)
                if n == 1 and alone is None:
                    alone = r["median_run"]
                total = r["server_cpu"] + r["worker_cpu"]
                print(
                    f"N={n:2d}: {r['finished']}/{n} finished, last after {r['last']:.1f} s "
                    f"(sum of runs {r['sum_runs']:.1f} s); median run {r['median_run']:.2f} s"
                    + (f" ({r['median_run'] / alone:.2f}x alone)" if alone else "")
                    + f"; CPU-s server {r['server_cpu']:.1f} ({100 * r['server_cpu'] / max(total, 1e-9):.0f}%), "
                    f"worker {r['worker_cpu']:.1f}, client {r['client_cpu']:.1f}; RSS MB server "
                    f"{r['server_rss']:.0f} (peak {r['server_peak']:.0f}), worker {r['worker_rss']:.0f} "
                    f"(peak {r['worker_peak']:.0f}); stray fragment requests {r['stray']}",
                    flush=True,
                )
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
