"""The Lab page through AppTest: every experiment renders; one runs at tiny size to a result (in this process:
the worker is test_worker.py's subject)."""

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, rerun_until

pytestmark = pytest.mark.usefixtures("threaded_app")


def lab_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "lab.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


# A phrase from each experiment's own paragraph for the class.
EXPLAINS = {
    "1": "picture **A**",
    "2": "relu4_2",
    "3": "*Gram matrices*",
    "4": "as in the paper's figure",
    "5": "**Feature maps**",
    "6": "*guided* Gram matrices",
    "7": "Ruder, Dosovitskiy and",
}


def test_every_experiment_renders_with_its_explanation_and_estimate():
    at = lab_page()
    shown = {}
    for option in at.radio(key="lab_experiment").options:
        at.radio(key="lab_experiment").set_value(option).run()
        assert not at.exception, (option, at.exception)
        key = option.split(".")[0]
        [paragraph] = [m.value for m in at.markdown if any(phrase in m.value for phrase in EXPLAINS.values())]
        assert EXPLAINS[key] in paragraph, option  # this experiment's explanation, not another's
        shown[key] = paragraph
        if key != "5":
            assert any(c.value.startswith("About ") and "on this server" in c.value for c in at.caption), option
    assert len(set(shown.values())) == len(EXPLAINS)


def test_reconstruction_experiment_runs_at_tiny_size():
    at = lab_page()
    at.radio(key="lab_experiment").set_value("2. What each layer sees").run()
    at.slider(key="lab_size_2").set_value(48)
    at.slider(key="lab_steps_2").set_value(5)
    at.run()
    at.button(key="run_2").click().run()
    rerun_until(at, lambda: at.session_state["lab_job"] is None)
    r = at.session_state["lab_result"]
    assert r.key == "2" and r.gif[:6] == b"GIF89a" and r.image.width == 5 * (48 + 8)
    assert "25 of 25 steps" in r.caption
    assert [b.label for b in at.get("download_button")] == ["Picture (PNG)", "Animation (GIF)"]


def test_why_videos_flicker_runs_at_tiny_size_and_shows_both_warping_errors():
    at = lab_page()
    at.radio(key="lab_experiment").set_value("7. Why videos flicker").run()
    at.slider(key="lab_size_7").set_value(48)
    at.slider(key="lab_steps_7").set_value(5)
    at.run()
    at.button(key="run_7").click().run()
    rerun_until(at, lambda: at.session_state["lab_job"] is None, 300)
    assert not at.exception, at.exception
    r = at.session_state["lab_result"]
    assert r.key == "7" and r.gif is None
    assert "each frame alone" in r.caption and "with the temporal term" in r.caption and "photo's frames" in r.caption


@pytest.mark.numerics
def test_inside_the_network_compares_gram_matrices():
    at = lab_page()
    at.radio(key="lab_experiment").set_value("5. Inside the network").run()
    halves = float(at.metric[0].value)
    at.radio(key="lab_compare").set_value("another painting").run()
    assert not at.exception
    assert float(at.metric[0].value) > 2 * halves


@pytest.mark.numerics
def test_inside_the_network_runs_its_passes_once_per_picture_and_layer(monkeypatch):
    import streamlit as st

    from nst_core.tasks import lab

    st.cache_data.clear()
    calls = []
    real = lab.feature_maps
    monkeypatch.setattr(lab, "feature_maps", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    at = lab_page()
    at.radio(key="lab_experiment").set_value("5. Inside the network").run()
    first = float(at.metric[0].value)
    for _ in range(3):  # reruns of the page (a slider elsewhere, a poll): no pass
        at.run()
    assert calls == ["relu3_1"] and float(at.metric[0].value) == first
    at.selectbox(key="lab_layer").set_value("relu1_1").run()
    at.selectbox(key="lab_layer").set_value("relu3_1").run()  # back to a picture and layer already seen
    assert calls == ["relu3_1", "relu1_1"] and not at.exception
