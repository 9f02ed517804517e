"""What a session costs the server: an upload is kept at what a run on this server can use (by device class, a
painting at the largest style scale), and the previews' cache is bounded in bytes, from any number of threads."""

import dataclasses
import gc
import io
import threading
import tracemalloc

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from nst_core.serve.limits import Limits
from tests.fakes import PacedBackend, service_on
from ui import common


def picker_page():
    import streamlit as st

    from ui.common import image_picker

    image_picker("content", "Photo", "content", "chelsea.png", help="The photo.")
    image_picker("style", "Painting", "styles", "starry_night.jpg", help="The painting.")
    st.session_state["kept"] = (st.session_state["content"][1].size, st.session_state["style"][1].size)


@pytest.mark.parametrize("device_type, photo, painting", [("cpu", 768, 1536), ("cuda", 2048, 4096)])
def test_uploads_are_kept_at_what_a_run_on_this_server_can_use(use_service, device_type, photo, painting):
    use_service(dataclasses.replace(service_on(PacedBackend()), device_type=device_type))
    buf = io.BytesIO()
    Image.new("RGB", (6000, 3000), "olive").save(buf, "PNG")
    at = AppTest.from_function(picker_page, default_timeout=60)
    at.run()
    for slot in ("content", "style"):
        at.radio(key=f"{slot}_mode").set_value("Upload").run()
        at.file_uploader(key=f"{slot}_upload").upload("big.png", buf.getvalue(), "image/png").run()
    assert not at.exception and not at.error
    assert at.session_state["kept"] == ((photo, photo // 2), (painting, painting // 2))


def test_the_largest_side_follows_the_limits_and_the_style_scale_slider():
    from ui.fields import FIELDS

    limits = Limits(max_size_cpu=512, max_size_gpu=1024)
    [scale] = [f for f in FIELDS if f.name == "style_scale"]
    assert common.upload_side(limits, "cpu", "content") == 512
    assert common.upload_side(limits, "cuda", "content") == 1024
    assert common.upload_side(limits, "cuda", "styles") == round(1024 * scale.hi)


def small_png_carrying(extra: int, tag: int) -> bytes:
    """A 32x32 PNG followed by `extra` bytes (Pillow reads the header only: the preview is the PNG itself)."""
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (tag % 256, 0, 0)).save(buf, "PNG")
    return buf.getvalue() + bytes([tag % 256]) * extra


def test_the_preview_cache_holds_a_bounded_number_of_bytes():
    common._previews.clear() if hasattr(common, "_previews") else common.preview.cache_clear()
    gc.collect()
    tracemalloc.start()
    for i in range(100):  # 100 MB of distinct previews, each let go by its caller at once
        png = small_png_carrying(1_000_000, i)
        assert common.preview(png, 480) is png
        del png
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert kept < 40_000_000  # 32 MB of cache; counting entries, 64 of them held 64 MB
    png = small_png_carrying(10, 1)
    assert common.preview(png, 480) is png and common.preview(png, 480) is png


def test_the_preview_cache_stays_within_its_budget_from_many_threads(monkeypatch):
    cache = common._Previews(budget=3_000_000)
    monkeypatch.setattr(common, "_previews", cache)
    errors = []

    def work(t):
        try:
            for i in range(40):
                png = small_png_carrying(100_000 + 1000 * t, 1000 * t + i)
                assert common.preview(png, 480) == png
                wide = io.BytesIO()
                Image.new("RGB", (600, 20), "navy").save(wide, "PNG")
                assert Image.open(io.BytesIO(common.preview(wide.getvalue(), 300))).size == (300, 10)
        except Exception as e:  # noqa: BLE001 - reported below, with the thread's number
            errors.append((t, e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert 0 < cache.used <= cache.budget
    assert cache.used == sum(cost for _, cost in cache._entries.values())
