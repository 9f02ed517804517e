"""The brush in a real browser: `streamlit run` on 127.0.0.1, headless Chromium draws a stroke over the photo with
the mouse, runs, downloads the picture: it differs from the photo inside the stroke far more than outside it.
NST_SCREENSHOTS=DIR keeps screenshots of the page with the strokes and with the result."""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLES
from tests.servers import StreamlitServer, chromium

pytestmark = pytest.mark.browser


def test_a_stroke_drawn_with_the_mouse_paints_there_and_nowhere_else(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    srv = StreamlitServer({"NST_HEARTBEAT_TIMEOUT": "60"})
    try:
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
            page.goto(srv.url + "/?size=128&iterations=40&scales=1&style_weight=100", wait_until="domcontentloaded")
            expect(page.get_by_text("for 40 steps at 128 px")).to_be_visible(timeout=180_000)
            page.get_by_text("Paint only where I brush").click()
            canvas = page.locator("canvas").last
            expect(canvas).to_be_visible(timeout=60_000)
            page.get_by_text("Brush size").wait_for()
            box = page.locator("canvas").first.bounding_box()
            x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
            # A band across the upper right: three strokes of the default 30 px brush.
            for row in (0.18, 0.26, 0.34):
                page.mouse.move(x0 + 0.55 * w, y0 + row * h)
                page.mouse.down()
                for i in range(1, 21):
                    page.mouse.move(x0 + (0.55 + 0.4 * i / 20) * w, y0 + row * h)
                page.mouse.up()
            page.wait_for_timeout(2500)  # the canvas sends its strokes on mouse-up; the page reruns
            shots = os.environ.get("NST_SCREENSHOTS")
            if shots:
                page.screenshot(path=f"{shots}/brush-strokes.png", full_page=True)
            page.get_by_role("button", name="Run").click()
            expect(page.get_by_text(re.compile(r"Done: 40 steps"))).to_be_visible(timeout=600_000)
            expect(page.get_by_text("Where the paintings went")).to_be_visible()
            if shots:
                page.wait_for_timeout(1000)
                page.screenshot(path=f"{shots}/brush-result.png", full_page=True)
            with page.expect_download(timeout=30_000) as dl:
                page.get_by_role("button", name="Picture (PNG)").click()
            png = tmp_path / "result.png"
            dl.value.save_as(png)
            browser.close()
    finally:
        srv.stop()
    out = np.asarray(Image.open(png).convert("RGB"), float)
    oh, ow = out.shape[:2]
    photo = np.asarray(Image.open(SAMPLES / "content" / "chelsea.png").convert("RGB").resize((ow, oh)), float)
    diff = np.abs(out - photo).mean(axis=2)
    inside = diff[round(0.2 * oh) : round(0.32 * oh), round(0.62 * ow) : round(0.9 * ow)].mean()
    outside = np.concatenate([diff[round(0.6 * oh) :, :].ravel(), diff[:, : round(0.4 * ow)].ravel()]).mean()
    assert inside > 4 * outside, (inside, outside)
    meta = Image.open(io.BytesIO(png.read_bytes())).text["nst"]
    assert '"masks": ["png:' in meta  # the mask is part of the settings saved in the picture


def test_on_a_high_density_screen_the_canvas_sends_its_own_size_and_is_accepted():
    """A phone or a retina screen (device pixel ratio 2): the component still draws its PNG at the canvas's size,
    so the bound on the canvas's value (ui/masks.canvas_png) refuses nothing a real brush sends."""
    from playwright.sync_api import expect, sync_playwright

    srv = StreamlitServer({"NST_HEARTBEAT_TIMEOUT": "60"})
    try:
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 2400}, device_scale_factor=2)
            page.goto(srv.url + "/?size=128&iterations=40", wait_until="domcontentloaded")
            expect(page.get_by_text("for 40 steps at 128 px")).to_be_visible(timeout=180_000)
            page.get_by_text("Paint only where I brush").click()
            expect(page.locator("canvas").last).to_be_visible(timeout=60_000)
            page.get_by_text("Brush size").wait_for()
            box = page.locator("canvas").first.bounding_box()
            page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.5 * box["height"])
            page.mouse.down()
            for i in range(1, 21):
                page.mouse.move(box["x"] + (0.3 + 0.02 * i) * box["width"], box["y"] + 0.5 * box["height"])
            page.mouse.up()
            # The stroke arrived as masks: the choice that only a painted mask offers appears, and no refusal.
            expect(page.get_by_text("Invert: paint everywhere but where I brush")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("The brush sent")).to_have_count(0)
            browser.close()
    finally:
        srv.stop()
