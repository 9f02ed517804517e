"""A lesson at its room's pace (run by hand; prints figures, asserts nothing).

Starts the real server (`streamlit run app.py` on 127.0.0.1), opens a room on the Class page with the default
pace (30 students, 5 minutes for everyone's first picture), then N pages of one headless Chromium (nice 19, as
students' screens would be elsewhere) join by the room link and press Run at once, on the room's settings. The
teacher's wall watches. Per round: runs finished, the time to the last against the room's promise, the median
run's own time (from the server's log), and the wall's progress line against the runs: the last count it shows
must be the number of pictures done. Each round is bounded in sessions (40) and time, and stops by itself.

Each student's run is their own (a seed each; the server keeps no results to serve again), the case the pace is
planned for. With --same every student presses Run on the room's defaults, the same run: the server runs it once
and serves the others its result (nst_core.serve.results.Results).

    .venv/bin/python -m benchmarks.bench_class [--sessions 10 30] [--students 30] [--minutes 5] [--same]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time

from benchmarks.common import PAGE_FLAGS, cpu_seconds, mem_mb
from tests.servers import CHROMIUM, StreamlitServer


def open_room(browser, url: str, students: int, minutes: float) -> tuple[str, str, object]:
    """The teacher opens a room with this pace; returns its code, the pace's line and the teacher's page."""
    teacher = browser.new_page(viewport={"width": 1400, "height": 1600})
    teacher.goto(url + "/Class", wait_until="domcontentloaded")
    teacher.get_by_role("button", name="Open a room").wait_for(timeout=180_000)
    teacher.get_by_label("Students").first.fill(str(students))
    teacher.get_by_label("Minutes for everyone's first picture").first.fill(str(minutes))
    teacher.get_by_role("button", name="Open a room").click()
    teacher.get_by_text(re.compile(r"Room [A-Z2-9]{4}-[A-Z2-9]{4} is open")).wait_for(timeout=180_000)
    code = re.search(r"room=([A-Z2-9]{8})", teacher.url).group(1)
    line = teacher.locator("[data-testid=stMarkdownContainer]", has_text="The room's pace:").first.inner_text()
    return code, line, teacher


def one_round(browser, server, code: str, teacher, n: int, limit: float, same: bool) -> dict:
    pages = []
    for i in range(n):
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        seed = "" if same else f"&seed={i}"  # seeds: n distinct runs
        page.goto(server.url + f"/?room={code}{seed}", wait_until="domcontentloaded")
        pages.append(page)
    for page in pages:
        page.get_by_text("Estimated time on this server").wait_for(timeout=180_000)
    time.sleep(2)
    log_from = len(server.lines)
    s0 = cpu_seconds(server.proc.pid)
    t0 = time.monotonic()
    for page in pages:
        page.get_by_role("button", name="Run").click()
    done: dict[int, float] = {}
    progress: list[tuple[float, str]] = []
    while len(done) < n and time.monotonic() - t0 < limit:
        for i, page in enumerate(pages):
            if i not in done and page.get_by_text(re.compile(r"^Done: \d+ steps")).count():
                done[i] = time.monotonic() - t0
        line = teacher.get_by_text(re.compile(r"^In this room: ")).all()
        if line:
            progress.append((time.monotonic() - t0, line[0].inner_text()))
        time.sleep(0.5)
    time.sleep(4)  # the wall's next look (every 3 s)
    final = teacher.get_by_text(re.compile(r"^In this room: ")).first.inner_text()
    runs = [
        float(m.group(1))
        for line in server.lines[log_from:]
        if (m := re.search(r"done: \d+ steps in ([\d.]+) s", line))
    ]
    for page in pages:
        page.close()
    return {
        "served": sum("served from an identical run" in line for line in server.lines[log_from:]),
        "finished": len(done),
        "last": max(done.values()) if done else float("nan"),
        "median_run": statistics.median(runs) if runs else float("nan"),
        "server_cpu": cpu_seconds(server.proc.pid) - s0,
        "server_rss": mem_mb(server.proc.pid),
        "progress": progress,
        "final": final,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--same", action="store_true", help="every student on the room's defaults: one run, served")
    a = ap.parse_args()
    assert max(a.sessions) <= 40, "a bounded load test: at most 40 sessions"
    from playwright.sync_api import sync_playwright

    data = tempfile.mkdtemp(prefix="nst-bench-class-")
    env = {"NST_DATA_DIR": data, "NST_HEARTBEAT_TIMEOUT": "120"}
    server = StreamlitServer(env if a.same else {**env, "NST_RESULT_CACHE_MB": "0"})
    print(f"server on {server.url} (pid {server.proc.pid}); {os.cpu_count()} cores")
    os.nice(19)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=PAGE_FLAGS)
            for n in a.sessions:
                code, line, teacher = open_room(browser, server.url, a.students, a.minutes)
                promise = a.minutes * 60
                print(f"room {code}: {line}", flush=True)
                r = one_round(browser, server, code, teacher, n, limit=promise * 2, same=a.same)
                counts = [t for _, t in r["progress"]]
                print(
                    f"N={n}: {r['finished']}/{n} finished, the last after {r['last']:.1f} s "
                    f"({r['last'] / promise:.2f} of the promised {promise:.0f} s); median run {r['median_run']:.2f} s; "
                    f"{r['served']} served from an identical run; "
                    f"server {r['server_cpu']:.1f} CPU-s, RSS {r['server_rss']:.0f} MB",
                    flush=True,
                )
                middle = counts[len(counts) // 2 : len(counts) // 2 + 1]
                print(f"  the wall during the round (first, middle): {counts[:1]} {middle}")
                print(f"  the wall at the end: {r['final']!r}", flush=True)
                teacher.close()
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
