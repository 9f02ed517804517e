"""A clip painted in a real browser: `streamlit run app.py` (worker processes) driven by headless Chromium. The sample
clip is uploaded through the clip uploader, a few of its frames are painted while the page shows the frame being
painted and the strip of those done, and the painted MP4 is downloaded and read back."""

import re
from fractions import Fraction

import av
import pytest

from tests.conftest import SAMPLES
from tests.servers import StreamlitServer, chromium, seconds

pytestmark = pytest.mark.browser

SIZE = 64
FRAMES = 4
# The first frame's steps are chosen so that it lasts about this many of the page's 1 s polls by the server's own cost
# model, and each later frame about a quarter of that (later_evaluations): frames 2 to 4 then span many polls on
# any CPU or GPU, so the page is sure to show them while they are painted.
FIRST_FRAME_SECONDS = 20


def first_frame_steps(page, url: str) -> int:
    """Steps for a one-level run of SIZE px lasting FIRST_FRAME_SECONDS here, from the estimate the Studio shows."""
    from playwright.sync_api import expect

    page.goto(url + f"/?size={SIZE}&iterations=1000&scales=1", wait_until="domcontentloaded")
    estimate = page.get_by_text("Estimated time on this server")
    expect(estimate).to_be_visible(timeout=180_000)  # the first visit starts the service
    per_step = max(seconds(estimate.inner_text()), 1) / 1000
    return max(40, round(FIRST_FRAME_SECONDS / per_step / 40) * 40)


@pytest.fixture(scope="module")
def server():
    srv = StreamlitServer({"NST_HEARTBEAT_TIMEOUT": "30", "NST_MAX_ITERATIONS": "100000"})
    yield srv.url
    srv.stop()


def test_upload_a_clip_watch_its_frames_and_download_the_mp4(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    sample = SAMPLES / "clips" / "chelsea_pan.mp4"
    with av.open(str(sample)) as c:
        rate = c.streams.video[0].average_rate
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        steps = first_frame_steps(page, server)
        page.goto(server + f"/?size={SIZE}&iterations={steps}&scales=1", wait_until="domcontentloaded")
        expect(page.get_by_text(f"for {steps} steps at {SIZE} px")).to_be_visible(timeout=60_000)
        page.get_by_text("A clip instead of a photo").click()
        clip = page.get_by_role("radiogroup", name="Clip")
        expect(clip).to_be_visible(timeout=30_000)
        clip.get_by_text("Upload", exact=True).click()
        uploader = page.locator("[data-testid=stFileUploader]").filter(has_text="Upload a clip")
        uploader.locator("input[type=file]").set_input_files(str(sample))
        # The upload is probed when it arrives: its caption names it (the sample's caption says "Chelsea pan").
        expect(page.get_by_text(re.compile(r"^chelsea_pan\.mp4: 256x192, 4\.0 s at 12 frames a second"))).to_be_visible(
            timeout=60_000
        )
        frames = page.get_by_role("slider", name="Frames to paint")
        frames.focus()
        frames.press("Home")  # 2, the slider's least
        for _ in range(FRAMES - 2):
            frames.press("ArrowRight")
        expect(page.get_by_text(re.compile(rf"for {FRAMES} frames at {SIZE}x48 "))).to_be_visible(timeout=60_000)
        page.get_by_role("button", name="Run").click()
        # Live: a later frame in the progress text, and the strip of the frames painted before it.
        expect(page.get_by_text(re.compile(rf"Frame [2-{FRAMES}] of {FRAMES} · Step \d+ of "))).to_be_visible(
            timeout=300_000
        )
        expect(page.get_by_text(re.compile(rf"^[1-{FRAMES - 1}] frames painted:"))).to_be_visible(timeout=120_000)
        # The result: the painted clip and its downloads.
        mp4_button = page.get_by_role("button", name="Painted clip (MP4)")
        expect(mp4_button).to_be_visible(timeout=600_000)
        expect(page.get_by_text(f"{FRAMES} frames at 12 frames a second", exact=False)).to_be_visible()
        expect(page.get_by_text("warping error", exact=False)).to_be_visible()
        with page.expect_download(timeout=60_000) as dl:
            mp4_button.click()
        mp4 = tmp_path / "painted.mp4"
        dl.value.save_as(mp4)
        browser.close()
    with av.open(str(mp4)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and (v.codec_context.width, v.codec_context.height) == (SIZE, 48)
        assert c.streams.audio, "the sample's sound is kept"
        assert Fraction(v.average_rate) == Fraction(rate)
        assert sum(1 for _ in c.decode(v)) == FRAMES
