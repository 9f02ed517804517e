"""A class watching its wall (run by hand; prints figures, asserts nothing).

Starts the real server (`streamlit run app.py` on 127.0.0.1) with a fresh data directory, opens a room
with `--entries` results already shared (real PNGs and GIFs of the samples, 256 px), and N pages of one
headless Chromium on the room's wall. Then, for `--watch` seconds, it measures the server's CPU while the
pages only poll; then it shares `--shares` more results, one every 2 s, straight into the database as the
studio does, and measures how long each takes to appear on every page (the live update). Bounded in
sessions (at most 40) and time; stops by itself.

    .venv/bin/python -m benchmarks.bench_wall [--sessions 30] [--entries 20] [--watch 30] [--shares 5]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import PAGE_FLAGS, ROOT, client_cpu, cpu_seconds, mem_mb
from nst_core.classroom.wall import Wall
from nst_core.images import fit, load_image
from tests.servers import CHROMIUM, StreamlitServer


def result(i: int) -> tuple[bytes, bytes]:
    """A stand-in result of realistic size: a sample photo at 256 px, and a 20-frame GIF of it."""
    photos = sorted((ROOT / "samples" / "content").iterdir())
    im = fit(load_image(photos[i % len(photos)]), 256)
    png, gif = io.BytesIO(), io.BytesIO()
    im.save(png, "PNG")
    frames = [im.rotate(k * 3) for k in range(20)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], loop=0, duration=100)
    return png.getvalue(), gif.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--entries", type=int, default=20, help="results on the wall before the pages open")
    ap.add_argument("--watch", type=float, default=30, help="seconds of polling measured")
    ap.add_argument("--shares", type=int, default=5)
    a = ap.parse_args()
    assert a.sessions <= 40, "a bounded load test: at most 40 sessions"
    from playwright.sync_api import sync_playwright

    data = Path(tempfile.mkdtemp(prefix="nst-wall-"))
    wall = Wall(data)
    room, _ = wall.open_room("bench")
    for i in range(a.entries):
        png, gif = result(i)
        wall.share(room.code, png, gif, f"student {i}", "Starry Night", {"size": 256, "steps": 160})
    server = StreamlitServer({"NST_DATA_DIR": str(data)})
    print(f"server on {server.url}; {os.cpu_count()} cores; {a.sessions} pages on a wall of {a.entries}")
    os.nice(19)  # the pupils' browsers would be on their own machines
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=PAGE_FLAGS)
            pages = []
            for _ in range(a.sessions):
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                page.goto(f"{server.url}/Class?room={room.code}", wait_until="domcontentloaded")
                pages.append(page)
            count = re.compile(rf"^{a.entries} pictures · room")
            for page in pages:
                page.get_by_text(count).wait_for(timeout=180_000)
            time.sleep(3)
            s0, c0, t0 = cpu_seconds(server.proc.pid), client_cpu(server), time.monotonic()
            time.sleep(a.watch)
            s1, c1, t1 = cpu_seconds(server.proc.pid), client_cpu(server), time.monotonic()
            polls = a.sessions * (t1 - t0) / 3
            print(
                f"polling: server {s1 - s0:.1f} CPU-s in {t1 - t0:.0f} s ({(s1 - s0) / (t1 - t0) * 100:.0f}% of a "
                f"core), {(s1 - s0) / polls * 1000:.1f} ms per page poll (every 3 s); browsers {c1 - c0:.1f} CPU-s"
            )
            delays = []
            for k in range(a.shares):
                png, gif = result(a.entries + k)
                shared = time.monotonic()
                wall.share(room.code, png, gif, f"late {k}", "The Scream", {"size": 256, "steps": 160})
                want = re.compile(rf"^{a.entries + k + 1} pictures · room")
                seen = set()
                while len(seen) < len(pages) and time.monotonic() - shared < 60:
                    for i, page in enumerate(pages):
                        if i not in seen and page.get_by_text(want).count():
                            seen.add(i)
                    time.sleep(0.1)
                delays.append(time.monotonic() - shared)
                print(f"share {k + 1}: on {len(seen)} of {len(pages)} pages after {delays[-1]:.1f} s")
                time.sleep(max(0.0, 2 - (time.monotonic() - shared)))
            print(
                f"live update: median {statistics.median(delays):.1f} s, worst {max(delays):.1f} s to reach every "
                f"page; server RSS {mem_mb(server.proc.pid):.0f} MB (peak {mem_mb(server.proc.pid, 'VmHWM'):.0f})"
            )
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
