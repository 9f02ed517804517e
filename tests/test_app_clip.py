"""The Studio with a clip, through AppTest on a real in-process run: the toggle, the estimate for the frames, the
run through the queue, and the result: the painted clip (MP4 with the sample's audio) playing, its warping figures
beside the input's, its downloads, and its address showing it again from disk."""

import io

import av
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, rerun_until
from tests.helpers import slider

pytestmark = pytest.mark.usefixtures("threaded_app")


def streams(mp4: bytes) -> tuple[int, bool]:
    with av.open(io.BytesIO(mp4)) as c:
        video = c.streams.video[0]
        return sum(1 for _ in c.decode(video)), bool(c.streams.audio)


def test_a_clip_is_painted_in_the_studio_and_kept_under_its_address(data_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.toggle(key="use_clip").set_value(True).run()
    assert not at.exception, at.exception
    slider(at, "Output size (longest side, px)").set_value(64)
    slider(at, "Iterations").set_value(8)
    at.slider(key="clip_frames").set_value(3)
    at.run()
    estimate = [c.value for c in at.caption if "Estimated time on this server" in c.value]
    assert estimate and "3 frames at 64x" in estimate[0], estimate
    at.button(key="run").click().run()
    rerun_until(at, lambda: at.session_state["studio_job"] is None, 300)
    assert not at.exception, at.exception
    r = at.session_state["studio_result"]
    assert r.clip is not None and not r.stopped
    frames, audio = streams(r.clip)
    assert frames == 3 and audio  # the sample clip has sound: it is kept for the frames painted
    c = r.info["clip"]
    assert c["frames"] == c["of"] == 3 and len(c["frame_seconds"]) == 3
    assert c["warping_error"] >= 0 and c["input_warping_error"] >= 0
    assert any("warping error" in x.value for x in at.caption)
    steps = r.info["steps"]
    assert steps > 8  # the whole clip's steps, not frame 1's 8
    assert any(m.value.startswith(f"Done: {steps} steps") for m in at.success)
    labels = [b.label for b in at.get("download_button")]
    assert labels[:3] == ["Painted clip (MP4)", "Painted clip (GIF)", "Painted clip (WebP)"]
    from nst_core.animation import gif_frames
    from ui.results import clip_as

    assert len(gif_frames(clip_as(r, "gif"))) == 3  # the GIF download, made from the MP4 when asked for
    # Another session opens the result's address: the clip comes back from disk.
    other = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    other.query_params["result"] = r.id
    other.run()
    assert not other.exception, other.exception
    again = other.session_state["studio_result"]
    assert again.clip == r.clip
