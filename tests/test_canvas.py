"""The brush's canvas value as a hostile websocket client can send it: only a PNG of the canvas's own size is
decoded, anything else is one line; strokes become masks in a few bytes a pixel; an uploaded mask is decoded
once per upload."""

import base64
import importlib
import io
import struct
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile
from streamlit.testing.v1 import AppTest

from nst_core import ImageLoadError
from tests.conftest import plain
from ui.masks import ALPHA, BRUSHES, canvas_masks, canvas_png, canvas_size, strokes_to_masks


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def png_saying(w: int, h: int) -> bytes:
    """A PNG of a few dozen bytes whose header says w x h, 8-bit RGBA (decoding it allocates w x h x 4 bytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def strokes(size=(480, 320)) -> bytes:
    """What the component sends: a transparent canvas with a red stroke on the right half, translucent."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    r, g, b = BRUSHES["painting 1"]
    ImageDraw.Draw(im).rectangle((size[0] // 2, 0, size[0], size[1]), fill=(r, g, b, round(255 * ALPHA)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def old_strokes_to_masks(rgba, paintings):
    """The float reference: (H, W, 3, 3) distances."""
    rgb, alpha = rgba[..., :3].astype(np.float32), rgba[..., 3].astype(np.float32) / 255.0
    colours = np.array(list(BRUSHES.values()), dtype=np.float32)
    nearest = np.argmin(((rgb[..., None, :] - colours) ** 2).sum(-1), axis=-1)
    strength = np.clip(alpha / ALPHA, 0, 1)
    return [np.round(255 * strength * (nearest == i)).astype(np.uint8) for i in range(paintings)]


@pytest.fixture
def drawable_canvas(monkeypatch):
    """The real streamlit_drawable_canvas module (its CanvasResult), importable outside a server: its component
    is declared by a running Streamlit, so here the declaration is a no-op and st_canvas is the test's."""
    import streamlit.components.v2 as v2

    monkeypatch.setattr(v2, "component", lambda *a, **k: None)
    monkeypatch.delitem(sys.modules, "streamlit_drawable_canvas", raising=False)
    yield importlib.import_module("streamlit_drawable_canvas")
    sys.modules.pop("streamlit_drawable_canvas", None)


@pytest.fixture
def decoded(monkeypatch):
    sizes = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: sizes.append(self.size) or real(self))
    return sizes


def test_the_masks_are_the_nearest_brush_and_the_strokes_opacity():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    rgba[:5, :5, :3] = (95, 65, 135)  # equally far from both paintings' brushes: the first one takes it
    for new, old in zip(strokes_to_masks(rgba, 2), old_strokes_to_masks(rgba, 2)):
        assert np.abs(np.asarray(new).astype(int) - old).max() <= 1


def test_strokes_to_masks_needs_a_few_bytes_a_pixel():
    rgba = np.random.default_rng(1).integers(0, 256, (1000, 1000, 4), dtype=np.uint8)
    tracemalloc.start()
    strokes_to_masks(rgba, 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 24 * rgba.shape[0] * rgba.shape[1]  # the float version: about 64 bytes a pixel


def test_a_canvas_value_of_the_canvas_size_becomes_masks():
    [m] = canvas_masks(data_url(strokes()), (480, 320), 1)
    assert m.size == (480, 320) and m.getpixel((400, 100)) == 255 and m.getpixel((100, 100)) == 0
    assert canvas_masks(None, (480, 320), 1) is None


@pytest.mark.parametrize(
    "value, error",
    [
        (data_url(png_saying(12000, 7000)), r"^the brush sent a 12000x7000 picture; the canvas is 480x320$"),
        (data_url(png_saying(960, 640)), "the brush sent a 960x640 picture"),  # twice the size: not what it draws
        ("data:image/jpeg;base64,/9j/4AAQ", "not a PNG"),
        (data_url(b"GIF89a" + b"\0" * 40), "not a PNG"),
        (data_url(strokes()[:33]) + "A" * 2_000_000, "the brush sent 2000.* bytes; a 480x320 canvas is at most"),
        ("data:image/png;base64,A", "not a PNG"),  # base64 whose characters count to 4k+1
        ("data:image/png;base64," + "iVBORw0KGgo" * 3, "not a PNG"),
    ],
)
def test_anything_else_is_refused_in_one_line_before_it_is_decoded(value, error, decoded):
    with pytest.raises(ImageLoadError, match=error):
        canvas_masks(value, (480, 320), 1)
    assert decoded == []


def test_the_canvas_is_the_photos_shape_at_most_480_wide():
    assert canvas_size(Image.new("RGB", (600, 400))) == (480, 320)
    assert canvas_size(Image.new("RGB", (300, 600))) == (300, 600)
    assert canvas_png(data_url(strokes((300, 600))), (300, 600))[:4] == b"\x89PNG"


def brush_page(value: str | None):
    import streamlit as st
    from PIL import Image

    from ui.masks import mask_ui

    photo = st.session_state.setdefault("photo", Image.new("RGB", (600, 400), "white"))  # one upload, kept
    st.session_state["masks"] = mask_ui(photo, 1)
    st.button("Run")  # what the page draws after the masks


@pytest.fixture
def sent(monkeypatch, drawable_canvas):
    """The brush's canvas as the page calls it, sending the value the test puts in sent["value"]; each call's
    arguments in sent["calls"]; each canvas decoded, by its size, in sent["made"]."""
    from ui import masks

    box = {"value": None, "calls": [], "made": []}

    def st_canvas(**kw):
        box["calls"].append(kw)
        return drawable_canvas.CanvasResult(json_data=None, image_data_url=box["value"], return_image_data=True)

    monkeypatch.setattr(drawable_canvas, "st_canvas", st_canvas)
    real = getattr(masks, "png_masks", None)
    monkeypatch.setattr(masks, "png_masks", lambda *a: box["made"].append(a[1]) or real(*a), raising=False)
    return box


def brush_on(sent, value):
    sent["value"] = value
    at = AppTest.from_function(brush_page, args=(value,), default_timeout=30)
    at.run()
    at.toggle(key="mask_on").set_value(True).run()
    return at


@pytest.mark.parametrize(
    "value, error",
    [
        (data_url(png_saying(12000, 7000)), "The brush sent a 12000x7000 picture; the canvas is 480x320"),
        ("data:image/png;base64,A", "The brush sent something that is not a PNG; the canvas is 480x320"),
        (data_url(png_saying(480, 320)), "The brush sent a damaged PNG"),  # the right size, pixels missing
    ],
)
def test_the_page_refuses_a_hostile_canvas_value_in_one_line(sent, decoded, value, error):
    at = brush_on(sent, value)
    assert not at.exception and sent["calls"][-1]["width"] == 480 and sent["calls"][-1]["height"] == 320
    [shown] = [plain(e.value) for e in at.error]
    assert shown.startswith(error) and shown.endswith(" — the run goes without a mask.") and "\n" not in shown
    assert at.session_state["masks"] is None and (12000, 7000) not in decoded
    assert [b.label for b in at.button] == ["Run"]  # the rest of the page is drawn
    at.slider(key="mask_size").set_value(50).run()  # the same value again: refused again, decoded no more
    assert not at.exception and len(at.error) == 1 and len(sent["made"]) <= 1


def test_a_canvas_value_is_decoded_once_per_drawing(sent):
    at = brush_on(sent, data_url(strokes()))
    assert not at.exception and not at.error and at.session_state["masks"][0].getpixel((400, 100)) == 255
    at.slider(key="mask_size").set_value(50).run()  # a rerun with the same drawing: not decoded again
    at.run()
    assert sent["made"] == [(480, 320)] and at.session_state["masks"][0].getpixel((400, 100)) == 255


def test_a_value_too_long_for_the_canvas_is_refused_before_it_is_hashed(sent, monkeypatch):
    from ui import masks

    hashed = []
    real = masks.hashlib.sha1
    monkeypatch.setattr(masks.hashlib, "sha1", lambda data=b"": hashed.append(len(data)) or real(data))
    at = brush_on(sent, data_url(strokes()[:33]) + "A" * 3_000_000)
    assert not at.exception and plain(at.error[0].value).startswith("The brush sent 3000")
    assert hashed and max(hashed) < 1_000_000  # the photo's digest, never the value


@pytest.mark.parametrize(
    "component_value",
    [
        {"drawing": {"raw": None, "data": None}, "backgroundFit": {"scaleX": 1}},  # a fit without its keys
        {"drawing": ["not", "a", "dict"], "backgroundFit": None},
        {"drawing": "text", "backgroundFit": 7},
    ],
)
def test_a_malformed_component_value_is_one_line(monkeypatch, drawable_canvas, component_value):
    """The library's own st_canvas reads what the client sent (its drawing, its background's fit) unchecked."""
    monkeypatch.setattr(drawable_canvas, "out", lambda **kw: component_value)
    at = AppTest.from_function(brush_page, args=(None,), default_timeout=30)
    at.run()
    at.toggle(key="mask_on").set_value(True).run()
    assert not at.exception and at.session_state["masks"] is None
    [shown] = [plain(e.value) for e in at.error]
    assert shown.startswith("The brush sent a value this page cannot read (") and "\n" not in shown
    assert [b.label for b in at.button] == ["Run"]


def test_the_canvas_key_and_background_are_made_once_per_photo(sent, monkeypatch):
    """Two photos that share their top rows are two canvases (the old one's strokes do not stay); a photo's
    pixels are read once, not on every rerun, and its background is sent as it was made."""
    copies = []
    real = Image.Image.tobytes
    monkeypatch.setattr(Image.Image, "tobytes", lambda self, *a: copies.append(self.size) or real(self, *a))
    at = brush_on(sent, None)
    for _ in range(3):
        at.run()
    first = sent["calls"][-1]
    assert not at.exception and copies.count((600, 400)) == 1
    assert {c["key"] for c in sent["calls"]} == {first["key"]}
    assert isinstance(first["background_image"], str) and first["background_image"].startswith("data:image/jpeg")
    assert all(c["background_image"] is first["background_image"] for c in sent["calls"])
    other = Image.new("RGB", (600, 400), "white")
    other.paste((0, 0, 0), (0, 200, 600, 400))  # the same top half
    at.session_state["photo"] = other
    at.run()
    assert not at.exception and sent["calls"][-1]["key"] != first["key"]


def upload_page():
    import streamlit as st
    from PIL import Image

    from ui.masks import mask_ui

    st.session_state["masks"] = mask_ui(Image.new("RGB", (64, 48), "white"), 1)


def test_an_uploaded_mask_is_decoded_once_per_upload(monkeypatch):
    from ui import masks

    calls = []
    real = masks.load_mask
    monkeypatch.setattr(masks, "load_mask", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    mask = Image.new("L", (128, 96), 0)
    mask.paste(255, (64, 0, 128, 96))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    at = AppTest.from_function(upload_page, default_timeout=30)
    at.run()
    at.toggle(key="mask_on").set_value(True).run()
    at.radio(key="mask_source").set_value("Upload a mask").run()
    at.file_uploader(key="mask_upload_0").upload("m.png", buf.getvalue(), "image/png").run()
    for _ in range(3):
        at.run()
    assert not at.exception and calls == [(64, 48)]
    assert at.session_state["masks"][0].size == (64, 48)
    at.file_uploader(key="mask_upload_0").upload("bad.png", b"not a picture", "image/png").run()
    at.run()
    assert calls == [(64, 48)] * 2 and "bad.png is not an image" in plain(at.error[0].value)


@pytest.mark.browser
def test_a_client_message_larger_than_the_largest_canvas_value_closes_its_connection():
    """A real server and a bare websocket client: the largest value the brush can send (480x2048 on a GPU server)
    is taken; a message over the app's bound closes that connection (1009) and the server goes on."""
    import urllib.request

    from streamlit.proto.BackMsg_pb2 import BackMsg
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.servers import StreamlitServer
    from ui.masks import largest_value

    def message(n: int) -> bytes:
        msg = BackMsg()
        widget = msg.rerun_script.widget_states.widgets.add()
        widget.id = "$$ID-canvas-of-a-stranger"
        widget.string_value = "A" * n
        return msg.SerializeToString()

    srv = StreamlitServer()
    try:
        ws_url = srv.url.replace("http://", "ws://") + "/_stcore/stream"
        with connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60) as ws:
            ws.send(message(largest_value((480, 2048))))
            assert ws.ping().wait(60)  # still open
        with connect(ws_url, subprotocols=["streamlit"], max_size=None, open_timeout=60) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                ws.send(message(20_000_000))  # Streamlit's default would take 25 MB, and its transport 200
                while True:
                    ws.recv(timeout=60)
            # Closed with 1009 (message too big), or reset while the client was still sending.
            assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
        assert urllib.request.urlopen(srv.url + "/_stcore/health", timeout=10).status == 200
    finally:
        srv.stop()
