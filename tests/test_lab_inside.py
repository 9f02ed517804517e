"""The Lab's look inside VGG19 runs in the server process, so it is bounded: one look at a time on the whole
server (a second waits, then is refused in one line) and a budget of new looks per client address; a look
already made costs nothing."""

import threading

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from nst_core.serve.limits import Limits
from tests.conftest import ROOT
from tests.fakes import PacedBackend, service_on
from ui import inside


@pytest.fixture(autouse=True)
def fresh_budget(monkeypatch):
    monkeypatch.setattr(inside, "_quota", None)


def test_a_second_look_while_one_runs_waits_then_is_refused_in_one_line(monkeypatch):
    limits = Limits(looks_per_client=10)
    started, release = threading.Event(), threading.Event()
    first = threading.Thread(target=inside.look, args=(limits, "a", lambda: started.set() or release.wait(60)))
    first.start()
    assert started.wait(60)
    monkeypatch.setattr(inside, "WAIT_SECONDS", 0.0)
    ran = []
    with pytest.raises(inside.Refused, match=r"^the server is looking inside the network for someone else"):
        inside.look(limits, "b", lambda: ran.append("b"))
    assert ran == []
    release.set()
    first.join(60)
    assert inside.look(limits, "b", lambda: "done") == "done"
    # The refused look was given back: "b" spent one look of ten, not two.
    assert [inside.look(limits, "b", lambda: i) for i in range(9)] == list(range(9))
    with pytest.raises(inside.Refused):
        inside.look(limits, "b", lambda: None)


def test_one_look_at_a_time_on_the_whole_server():
    """Each look waits inside (up to a second) for another to come in beside it: through the gate none can."""
    limits = Limits(looks_per_client=10)
    inside_now, together, lock = [0], threading.Event(), threading.Lock()
    go = threading.Barrier(3)

    def compute():
        with lock:
            inside_now[0] += 1
            if inside_now[0] > 1:
                together.set()
        together.wait(1.0)
        with lock:
            inside_now[0] -= 1

    def client(n):
        go.wait()
        inside.look(limits, f"client {n}", compute)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not together.is_set()


def test_a_class_behind_one_address_is_not_refused():
    limits = Limits()
    for student in range(30):  # 30 pupils each look at the five layers of four pictures
        for look in range(20):
            assert inside.look(limits, "school router", lambda: (student, look)) == (student, look)


def test_a_look_that_fails_is_given_back():
    limits = Limits(looks_per_client=1)

    def broken():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        inside.look(limits, "a", broken)
    assert inside.look(limits, "a", lambda: "seen") == "seen"


def test_each_client_has_its_budget_of_new_looks():
    limits = Limits(looks_per_client=2)
    assert [inside.look(limits, "a", lambda: 1) for _ in range(2)] == [1, 1]
    with pytest.raises(inside.Refused, match=r"^this address has looked inside the network 2 times in 10 minutes"):
        inside.look(limits, "a", lambda: 1)
    assert inside.look(limits, "b", lambda: 2) == 2  # another address has its own


def test_the_page_says_so_in_one_line_and_keeps_what_it_has_seen(use_service, monkeypatch, request):
    import streamlit as st

    from nst_core import backbone
    from nst_core.tasks import lab

    st.cache_data.clear()
    st.cache_resource.clear()
    use_service(service_on(PacedBackend(), Limits(looks_per_client=1)))
    looks = []
    monkeypatch.setattr(backbone, "load_backbone", lambda *a, **k: object())
    # The page keeps its backbone in st.cache_resource: this stand-in must not outlive the test (the Lab page tests
    # after it look inside with the real one).
    request.addfinalizer(st.cache_resource.clear)
    monkeypatch.setattr(lab, "feature_maps", lambda bb, im, layer: looks.append(layer) or Image.new("RGB", (8, 8)))
    monkeypatch.setattr(lab, "gram_matrix", lambda bb, im, layer: 1.0)
    monkeypatch.setattr(lab, "gram_heatmap", lambda g: Image.new("RGB", (8, 8)))
    monkeypatch.setattr(lab, "gram_distance", lambda a, b: 0.1)
    at = AppTest.from_file(str(ROOT / "ui" / "pages" / "lab.py"), default_timeout=60)
    at.run()
    at.radio(key="lab_experiment").set_value("5. Inside the network").run()
    assert not at.exception and not at.error and looks == ["relu3_1"] and at.metric[0].value == "0.100"
    at.selectbox(key="lab_layer").set_value("relu1_1").run()  # a new look: over this address's budget
    assert not at.exception and looks == ["relu3_1"] and not at.metric
    [error] = at.error
    assert error.value.startswith("This address has looked inside the network 1 time in 10 minutes")
    assert "\n" not in error.value
    at.selectbox(key="lab_layer").set_value("relu3_1").run()  # a look already made is shown again, for free
    assert not at.error and at.metric[0].value == "0.100" and looks == ["relu3_1"]
