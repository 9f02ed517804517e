"""A restart loses none of the lesson's finished work, on a real `streamlit run` on 127.0.0.1 (the worker-process
backend) in Chromium: a student's run finishes, the server and its workers are killed (SIGKILL) before the result
is shared, a new server starts on the same NST_DATA_DIR, the result's link shows it and it can still be shared to
the class wall; a run whose tab was closed before it ended is kept too; a run that was painting at the kill says in
one line to press Run again."""

import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from nst_core.classroom.wall import Wall
from tests.servers import StreamlitServer, chromium, worker_processes

pytestmark = pytest.mark.browser


def kill(server: StreamlitServer) -> None:
    """SIGKILL for the server and every worker process under it: no clean-up runs anywhere."""
    pids = [server.proc.pid, *worker_processes(server)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait(30)
    for pid in pids[1:]:  # the workers are gone too (a zombie's /proc entry has no command line left)
        try:
            assert not open(f"/proc/{pid}/cmdline", "rb").read(), f"worker {pid} outlived the kill"
        except FileNotFoundError:
            pass


def test_a_result_finished_before_a_kill_is_shown_and_shared_after_the_restart(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "data"
    room, _ = Wall(data).open_room("Art 2B")
    env = {"NST_DATA_DIR": str(data), "NST_MAX_ITERATIONS": "100000", "NST_HEARTBEAT_TIMEOUT": "60"}
    srv = StreamlitServer(env)
    try:
        with sync_playwright() as p:
            b = chromium(p)
            done = b.new_context(viewport={"width": 1400, "height": 2000}).new_page()
            done.goto(f"{srv.url}/?room={room.code}&size=64&iterations=10", wait_until="domcontentloaded")
            expect(done.get_by_text(f"You are in class room {room.code}")).to_be_visible(timeout=180_000)
            done.get_by_role("button", name="Run").click()
            expect(done.get_by_text("Done: 10 steps")).to_be_visible(timeout=180_000)
            expect(done.get_by_role("button", name="Share to the class wall")).to_be_visible()
            expect(done).to_have_url(re.compile(r"[?&]result=[A-Za-z0-9_-]{22}"))
            link = urlparse(done.url)
            rid = parse_qs(link.query)["result"][0]

            # A tab closed as soon as its run is queued: the server keeps the result when the run ends.
            gone = b.new_context(viewport={"width": 1400, "height": 2000})
            closed = gone.new_page()
            closed.goto(f"{srv.url}/?room={room.code}&size=64&iterations=12", wait_until="domcontentloaded")
            expect(closed.get_by_text(f"You are in class room {room.code}")).to_be_visible(timeout=60_000)
            closed.get_by_role("button", name="Run").click()
            expect(closed).to_have_url(re.compile(r"[?&]result=[A-Za-z0-9_-]{22}"))
            unwatched = urlparse(closed.url)
            gone.close()
            kept = data / "results" / parse_qs(unwatched.query)["result"][0] / "result.json"
            t = time.monotonic()
            while not kept.exists():  # written by the server when the run ends, with no page watching
                assert time.monotonic() - t < 180, "the closed tab's result was never kept"
                time.sleep(0.2)

            painting = b.new_context(viewport={"width": 1400, "height": 2000}).new_page()
            painting.goto(f"{srv.url}/?room={room.code}&size=64&iterations=100000", wait_until="domcontentloaded")
            expect(painting.get_by_text(f"You are in class room {room.code}")).to_be_visible(timeout=60_000)
            painting.get_by_role("button", name="Run").click()
            expect(painting.get_by_text(re.compile(r"Step \d+ of 100000 ·"))).to_be_visible(timeout=60_000)
            expect(painting).to_have_url(re.compile(r"[?&]result=[A-Za-z0-9_-]{22}"))
            lost = urlparse(painting.url)

            kill(srv)
            assert Wall(data).entries(room.code) == []  # not shared before the kill
            srv = StreamlitServer(env)  # a new server on the same data directory

            again = b.new_context(viewport={"width": 1400, "height": 2000}, accept_downloads=True).new_page()
            again.goto(f"{srv.url}/?{link.query}", wait_until="domcontentloaded")
            expect(again.get_by_text("Result after 10 steps")).to_be_visible(timeout=180_000)
            picture = again.locator("[data-testid=stImage]").filter(has_text="Result after 10 steps").locator("img")
            expect(picture).to_be_visible()
            assert picture.evaluate("img => img.complete && img.naturalWidth") == 64  # the picture, decoded
            expect(again.get_by_role("button", name="Picture (PNG)")).to_be_visible()
            videos = []
            for _ in range(2):  # made once, kept beside the result, served again
                with again.expect_download(timeout=60_000) as dl:
                    again.get_by_role("button", name="Video (MP4)").first.click()
                videos.append(Path(dl.value.path()).read_bytes())
            assert videos[0][4:8] == b"ftyp" and videos[1] == videos[0]
            [kept] = (data / "results" / rid).glob("anim-*.mp4")
            assert kept.read_bytes() == videos[0]
            again.get_by_label("Your first name or a nickname (optional)").fill("Ada")
            again.get_by_role("button", name="Share to the class wall").click()
            expect(again.get_by_text(f"Shared to the wall of room {room.code} as Ada.")).to_be_visible(timeout=30_000)
            [entry] = Wall(data).entries(room.code)
            assert entry.name == "Ada" and entry.settings["steps"] == 10

            unseen = b.new_context(viewport={"width": 1400, "height": 2000}).new_page()
            unseen.goto(f"{srv.url}/?{unwatched.query}", wait_until="domcontentloaded")
            expect(unseen.get_by_text("Result after 12 steps")).to_be_visible(timeout=60_000)

            painting.goto(f"{srv.url}/?{lost.query}", wait_until="domcontentloaded")
            expect(
                painting.get_by_text("The server restarted before your run finished: press Run again.")
            ).to_be_visible(timeout=60_000)
            expect(painting.get_by_role("button", name="Run")).to_be_enabled()
            b.close()
    finally:
        srv.stop()
    assert rid and (data / "results" / rid / "picture.png").exists()
