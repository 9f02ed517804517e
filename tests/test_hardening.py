"""A public host, against what any visitor's browser or a small script can do, on a real `streamlit run` on
127.0.0.1: Streamlit's own clear_cache message from a bare websocket client during a run; user text with
markdown in it (names, class names, file names, codes from the address) against a local HTTP server that counts
what browsers fetch from it; many sessions from one network against the queue's cap and the per-client limit."""

import http.server
import re
import threading
import urllib.parse

import pytest

from tests.servers import StreamlitServer, chromium, free_port, watched_steps, worker_processes

pytestmark = pytest.mark.browser


def step_shown(page, steps: int) -> int:
    text = page.get_by_text(re.compile(rf"Step \d+ of {steps} ·")).first.inner_text()
    return int(text.split()[1])


def test_a_clear_cache_message_from_any_client_neither_stops_a_run_nor_leaves_workers_behind():
    from playwright.sync_api import expect, sync_playwright
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from websockets.sync.client import connect

    srv = StreamlitServer({"NST_MAX_ITERATIONS": "100000", "NST_HEARTBEAT_TIMEOUT": "30"})
    try:
        with sync_playwright() as p:
            b = chromium(p)
            page = b.new_page(viewport={"width": 1400, "height": 2000})
            steps = watched_steps(page, srv.url, 96)
            page.goto(srv.url + f"/?size=96&iterations={steps}&scales=1", wait_until="domcontentloaded")
            expect(page.get_by_text(f"for {steps} steps at 96 px")).to_be_visible(timeout=60_000)
            page.get_by_role("button", name="Run").click()
            expect(page.get_by_text(re.compile(rf"Step \d+ of {steps} ·"))).to_be_visible(timeout=60_000)
            before = step_shown(page, steps)
            # Any client: a websocket of its own, Streamlit's own protobuf message, twice.
            ws_url = srv.url.replace("http://", "ws://") + "/_stcore/stream"
            with connect(ws_url, subprotocols=["streamlit"]) as ws:
                for _ in range(2):
                    msg = BackMsg()
                    msg.clear_cache = True
                    ws.send(msg.SerializeToString())
            page.wait_for_timeout(3000)
            expect(page.get_by_text(re.compile(rf"Step \d+ of {steps} ·"))).to_be_visible()
            assert step_shown(page, steps) > before  # the run went on after the messages
            page.get_by_role("button", name="Stop").click()
            expect(page.get_by_text(re.compile(r"Run stopped by you at step \d+"))).to_be_visible(timeout=60_000)
            assert not page.get_by_text("The run failed").count()
            assert len(worker_processes(srv)) == 1
            b.close()
    finally:
        srv.stop()
    assert not any("shutting down" in line for line in srv.lines), "".join(srv.lines[-20:])


class Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):
        Counting.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def counter():
    Counting.hits = []
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Counting)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield port
    httpd.shutdown()


def test_markdown_in_user_text_is_shown_as_text_and_fetches_nothing(tmp_path, counter):
    """A name, a class name, a painting's file name, an uploaded file's name, a room code and a setting from the
    address, each with an image and a link in markdown: every page shows them as the text they are, no browser
    fetches from the host they name, and none of them is a live link."""
    from playwright.sync_api import expect, sync_playwright

    from nst_core.classroom.wall import Wall
    from tests.helpers import picture

    host = f"127.0.0.1:{counter}"
    evil = f"![](http://{host}/img.png)[CLICK](http://{host}/link) http://{host}/bare"
    file_name = f"![](http:{host})[CLICK](http:{host}).png"  # no slashes: a file name keeps it whole
    data = tmp_path / "data"
    wall = Wall(data)
    room, key = wall.open_room(evil)
    wall.share(room.code, picture((200, 40, 40)), name=evil[:40], painting=evil)
    srv = StreamlitServer({"NST_DATA_DIR": str(data)})
    quoted = urllib.parse.quote(evil)
    try:
        with sync_playwright() as p:
            b = chromium(p)
            page = b.new_page(viewport={"width": 1400, "height": 2000})

            def visit(path: str, expected: str) -> str:
                page.goto(srv.url + path, wait_until="domcontentloaded")
                expect(page.get_by_text(expected).first).to_be_visible(timeout=180_000)
                page.wait_for_timeout(1500)
                return check(expected)

            def check(expected: str) -> str:
                main = page.locator("[data-testid=stApp]")
                links = [a.get_attribute("href") or "" for a in main.locator("a").all()]
                images = [i.get_attribute("src") or "" for i in main.locator("img").all()]
                assert not [u for u in links + images if host in u], (expected, links, images)
                return main.inner_text().replace("\u200b", "")  # what a reader sees

            text = visit(f"/Class?room={room.code}&key={key}", "[CLICK]")  # the teacher's wall: title, name, painting
            assert text.count(f"![](http://{host}/img.png)") >= 3, text  # (the title and the name are cut at 40)
            assert f"http://{host}/bare" in text
            text = visit(f"/Class?room={quoted}", "There is no room")  # a code from the address
            assert "[CLICK]" in text
            text = visit(f"/?room={quoted}", "Not in a class")  # the Studio, the same
            assert "[CLICK]" in text
            text = visit(f"/?style_layers={quoted}", "Ignoring style_layers=")  # a setting from the address
            assert "[CLICK]" in text
            page.get_by_text("Upload", exact=True).first.click()  # an uploaded file's name, not an image
            page.locator("input[type=file]").first.set_input_files(
                files=[{"name": file_name, "mimeType": "image/png", "buffer": b"not a png"}]
            )
            expect(page.get_by_text("keeping the previous image")).to_be_visible(timeout=30_000)
            assert "[CLICK]" in check("keeping the previous image")
            page.locator("input[type=file]").first.set_input_files(  # and as the caption of a good one
                files=[{"name": file_name, "mimeType": "image/png", "buffer": picture((9, 90, 9), (60, 40))}]
            )
            expect(page.get_by_text("(60x40)")).to_be_visible(timeout=30_000)
            assert "[CLICK]" in check("(60x40)")
            b.close()
    finally:
        srv.stop()
    assert Counting.hits == []


def test_many_sessions_from_one_network_meet_its_share_of_the_queue_and_the_queue_its_cap():
    """Behind a trusted proxy (NST_CLIENT_HEADER): five real browser sessions from three addresses press Run on
    runs long enough to stay in the queue. The third from the first address is refused (its share:
    NST_RUNS_PER_CLIENT=2), the one from the third address finds the queue full (NST_MAX_QUEUE=3). They all ask
    for the same run, as a script would: the ones taken wait for the first (their twin) and count against both
    limits as any run does."""
    from playwright.sync_api import expect, sync_playwright

    env = {
        "NST_MAX_QUEUE": "3",
        "NST_RUNS_PER_CLIENT": "2",
        "NST_CLIENT_HEADER": "X-Forwarded-For",
        "NST_MAX_ITERATIONS": "100000",
    }
    srv = StreamlitServer(env)
    try:
        with sync_playwright() as p:
            b = chromium(p)
            pages = []
            for address in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"):
                context = b.new_context(extra_http_headers={"X-Forwarded-For": f"192.0.2.9, {address}"})
                page = context.new_page()
                page.goto(srv.url + "/?size=64&iterations=100000", wait_until="domcontentloaded")
                expect(page.get_by_text("Estimated time on this server")).to_be_visible(timeout=180_000)
                pages.append(page)
            said = []
            for page in pages:
                page.get_by_role("button", name="Run").click()
                line = page.get_by_text(re.compile(r"^(Not started: .*|Step \d+ of 100000 ·.*|Waiting for .*)"))
                expect(line.first).to_be_visible(timeout=60_000)
                said.append(line.first.inner_text())
            assert said[0].startswith("Step ") and said[1].startswith("Waiting") and said[3].startswith("Waiting")
            assert said[2].startswith("Not started: 2 runs from your network are already waiting or running")
            assert said[4].startswith("Not started: the server's queue is full (3 runs waiting or running")
            for i in (0, 1, 3):  # nothing that was taken was shortened: still 100000 steps
                expect(pages[i].get_by_role("button", name="Stop")).to_be_visible()
                pages[i].get_by_role("button", name="Stop").click()
            b.close()
    finally:
        srv.stop()
