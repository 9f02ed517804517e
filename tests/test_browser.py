"""One real-browser test: `streamlit run app.py` driven by headless Chromium through Playwright.

Set NST_SCREENSHOTS=DIR to keep screenshots of the page before, during and after the run (the README's pictures).
"""

import io
import os
import re

import pytest
from PIL import Image

from tests.conftest import SAMPLES
from tests.servers import StreamlitServer, chromium, watched_steps

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", params=["process", "ray"])
def server(request):
    """The app with its default runner (worker processes), then once more with NST_RUNNER=ray (a local Ray
    instance started by the server, on 127.0.0.1). Runs may be as long as the test needs (NST_MAX_ITERATIONS)."""
    env = {"NST_HEARTBEAT_TIMEOUT": "30", "NST_RUNNER": request.param, "NST_MAX_ITERATIONS": "100000"}
    srv = StreamlitServer(env)
    yield srv.url
    srv.stop()


def test_upload_run_watch_and_download_the_gif(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = os.environ.get("NST_SCREENSHOTS")
    shot = (
        (lambda page, name: page.screenshot(path=f"{shots}/{name}.png", full_page=True)) if shots else (lambda *a: None)
    )
    size = 128
    photo = tmp_path / "my photo.jpg"
    Image.open(SAMPLES / "content" / "rocket.jpg").save(photo, quality=90)
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        # One level (scales=1), so that every saved picture, and the animations, are the full size. The first visit
        # starts the service (with NST_RUNNER=ray: a Ray instance, then an actor loading VGG19).
        steps = watched_steps(page, server, size)
        page.goto(server + f"/?size={size}&iterations={steps}&scales=1", wait_until="domcontentloaded")
        expect(page.get_by_text(f"for {steps} steps at {size} px")).to_be_visible(timeout=60_000)
        # Upload our own photo instead of the sample.
        page.get_by_text("Upload", exact=True).first.click()
        page.locator("input[type=file]").first.set_input_files(str(photo))
        expect(page.get_by_text("my photo.jpg (640x427)")).to_be_visible(timeout=30_000)
        shot(page, "1-before")
        page.get_by_role("button", name="Run").click()
        # Live: the progress bar, then the preview of a step with at least three pictures saved before it.
        expect(page.get_by_text(re.compile(rf"Step \d+ of {steps} ·"))).to_be_visible(timeout=60_000)
        every = steps // 40
        third = "|".join(str(k * every) for k in range(3, 40))
        page.get_by_text(re.compile(rf"^Step ({third})$")).first.wait_for(timeout=120_000)
        shot(page, "2-during")
        page.get_by_role("button", name="Stop").click()
        expect(page.get_by_text(re.compile(rf"Run stopped by you at step \d+ of {steps}"))).to_be_visible(
            timeout=60_000
        )
        page.wait_for_timeout(1000)  # let the result images load
        shot(page, "3-after")
        with page.expect_download(timeout=30_000) as dl:
            page.get_by_role("button", name="Animation (GIF)").click()
        gif = tmp_path / "run.gif"
        dl.value.save_as(gif)
        with page.expect_download(timeout=60_000) as dl:  # made when clicked
            page.get_by_role("button", name="Video (MP4)").first.click()
        mp4 = tmp_path / "run.mp4"
        dl.value.save_as(mp4)
        # A run to its end, in a new tab on the sample photo.
        done = browser.new_page(viewport={"width": 1400, "height": 2400})
        done.goto(server + "/?size=64&iterations=10", wait_until="domcontentloaded")
        expect(done.get_by_text("for 10 steps at 64 px")).to_be_visible(timeout=60_000)
        done.get_by_role("button", name="Run").click()
        expect(done.get_by_text("Done: 10 steps")).to_be_visible(timeout=600_000)
        expect(done.get_by_role("button", name="Animation (GIF)")).to_be_visible()
        # The pages have names, and the Lab keeps its address for classroom links.
        nav = page.locator("[data-testid=stSidebarNav]")
        expect(nav.get_by_text("Studio", exact=True)).to_be_visible()
        expect(nav.get_by_text("Lab", exact=True)).to_be_visible()
        page.goto(server + "/Lab", wait_until="domcontentloaded")
        expect(page.get_by_text("Why does style transfer work?")).to_be_visible(timeout=60_000)
        browser.close()
    import av

    with av.open(str(mp4)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert v.codec_context.width == size and sum(1 for _ in c.decode(v)) >= 3
    data = gif.read_bytes()
    assert data[:6] == b"GIF89a"
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames >= 3 and im.info["loop"] == 0
        assert im.size == (size, round(size * 427 / 640))
