"""The Studio page through streamlit.testing.v1.AppTest. Its runs go to a Service in this process (real runs on the
real network, or the paced backend where a test must hold a run still): the worker process is test_worker.py's
subject, and the browser tests run the real server."""

import io
import time

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from nst_core import Settings
from nst_core.animation import gif_frames, make_animation
from nst_core.images import png_metadata
from tests.conftest import ROOT, plain, rerun_until
from tests.helpers import slider

D = Settings()
pytestmark = pytest.mark.usefixtures("threaded_app")


def new_app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def run_to_end(at: AppTest, limit: float = 120) -> None:
    at.button(key="run").click().run()
    rerun_until(at, lambda: at.session_state["studio_job"] is None, limit)


def start_small_run(at: AppTest, iterations: int):
    """Press Run at 64 px; returns the job."""
    slider(at, "Output size (longest side, px)").set_value(64)
    slider(at, "Iterations").set_value(iterations)
    at.run()
    at.button(key="run").click().run()
    return at.session_state["studio_job"]


def test_page_renders_with_the_defaults_of_settings():
    at = new_app()
    assert at.title[0].value.endswith("Neural Style Studio")
    assert slider(at, "Style strength").value == pytest.approx(1.0)  # log10 of the default style weight
    assert 10 ** slider(at, "Style strength").value == pytest.approx(D.style_weight)
    assert slider(at, "Content weight").value == D.content_weight
    assert slider(at, "Smoothness").value == D.tv_weight
    assert slider(at, "Iterations").value == D.iterations
    assert slider(at, "Output size (longest side, px)").value == D.size
    assert at.multiselect(key="w_style_layers").value == list(D.style_layers)
    assert at.selectbox(key="w_content_layers").value == D.content_layers[0]
    assert at.radio(key="w_optimizer").value == D.optimizer
    assert at.radio(key="w_precision").value == D.precision == "auto"
    assert at.selectbox(key="w_init").value == D.init
    assert at.number_input(key="w_seed").value == D.seed
    assert any("Estimated time on this server" in c.value for c in at.caption)
    assert any("original VGG19 weights" in c.value for c in at.sidebar.caption)  # where the weights came from


def test_a_sample_run_leaves_a_result_and_a_gif():
    at = new_app()
    slider(at, "Output size (longest side, px)").set_value(64)
    slider(at, "Iterations").set_value(10)
    at.run()
    run_to_end(at)
    r = at.session_state["studio_result"]
    assert r.image.size == (64, 43) and not r.stopped
    assert r.info["steps"] == 10
    with Image.open(io.BytesIO(r.gif)) as g:
        assert g.n_frames >= 2 and g.info["loop"] == 0
    assert png_metadata(r.png)["settings"]["iterations"] == 10
    assert any(m.value.startswith("Done: 10 steps") for m in at.success)
    labels = [b.label for b in at.get("download_button")]
    assert labels[:5] == ["Picture (PNG)", "Settings (JSON)", "Animation (GIF)", "Video (MP4)", "Animation (WebP)"]
    assert len(at.session_state["gallery"]) == 1
    gif = at.session_state["gallery"][0].gif
    assert gif is r.gif and len(gif_frames(gif)) == g.n_frames  # the gallery's MP4 and WebP come from it
    assert make_animation("mp4", gif_frames(gif))[4:8] == b"ftyp"


def test_presets_set_the_sliders():
    at = new_app()
    at.selectbox(key="w_preset").set_value("bold").run()
    assert 10 ** slider(at, "Style strength").value == pytest.approx(100.0)
    assert slider(at, "Smoothness").value == 3.0


def test_a_bad_upload_shows_an_error_and_keeps_the_previous_image():
    at = new_app()
    before = at.session_state["content"]
    at.radio(key="content_mode").set_value("Upload").run()
    at.file_uploader(key="content_upload").upload("holiday.jpg", b"this is not a jpeg", "image/jpeg").run()
    assert not at.exception
    errors = [plain(e.value) for e in at.error]
    assert any("holiday.jpg is not an image" in e and "keeping the previous image" in e for e in errors)
    assert at.session_state["content"][1] is before[1]
    # A good upload then replaces it.
    buf = io.BytesIO()
    Image.new("RGB", (80, 60), "purple").save(buf, "PNG")
    at.file_uploader(key="content_upload").upload("purple.png", buf.getvalue(), "image/png").run()
    assert at.session_state["content"][0] == "purple.png" and at.session_state["content"][1].size == (80, 60)
    assert not at.error
    # A detour to the samples and back brings the upload back.
    at.radio(key="content_mode").set_value("Sample").run()
    assert at.session_state["content"][0] == "Chelsea"
    at.radio(key="content_mode").set_value("Upload").run()
    assert at.session_state["content"][0] == "purple.png"


def test_uploads_over_the_configured_size_are_refused(use_service, backbone):
    from nst_core.serve.config import limits_from_env
    from tests.fakes import threaded

    use_service(threaded(backbone, limits_from_env({"NST_UPLOAD_MB": "1"})))  # a server started with NST_UPLOAD_MB=1
    at = new_app()
    at.radio(key="content_mode").set_value("Upload").run()
    big = io.BytesIO()
    Image.effect_noise((1200, 1200), 80).convert("RGB").save(big, "PNG")
    assert len(big.getvalue()) > 2**20
    at.file_uploader(key="content_upload").upload("big.png", big.getvalue(), "image/png").run()
    assert any("big.png is" in plain(e.value) and "the limit is 1 MB" in plain(e.value) for e in at.error)
    assert at.session_state["content"][0] == "Chelsea"


def test_address_parameters_prefill_the_controls():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["size"] = "96"
    at.query_params["iterations"] = "20"
    at.query_params["precision"] = "float32"
    at.run()
    assert slider(at, "Output size (longest side, px)").value == 96
    assert slider(at, "Iterations").value == 20
    assert at.radio(key="w_precision").value == "float32"


def test_a_run_that_ends_between_reruns_is_not_lost(paced):
    at = new_app()
    job = start_small_run(at, 10)
    paced.allow()
    t = time.monotonic()
    while job.active:  # no page polls meanwhile
        job.heartbeat()
        assert time.monotonic() - t < 60
        time.sleep(0.05)
    at.run()
    assert at.session_state["studio_job"] is None and at.session_state["studio_result"].info["steps"] == 10


def test_the_same_run_again_is_served_at_once_and_the_page_says_so(paced):
    """A second tab presses Run on the same pictures and settings as a run already done on this server: its result
    is that run's, at once, and the page says why; a changed setting runs anew."""
    from nst_core.serve import service

    first = new_app()
    job = start_small_run(first, 10)
    paced.allow()
    rerun_until(first, lambda: first.session_state["studio_job"] is None)
    assert not job.cached and not any("shown at once" in m.value for m in first.success)
    second = new_app()
    assert start_small_run(second, 10) is None  # ended as it was submitted: nothing was queued or run
    assert service.shared().runner.jobs() == []
    assert any(m.value.startswith("Done: 10 steps") and "shown at once" in m.value for m in second.success)
    r = second.session_state["studio_result"]
    assert r.history == first.session_state["studio_result"].history and r.info["steps"] == 10
    changed = start_small_run(second, 20)
    assert changed is not None and not changed.cached  # queued and run (the paced backend now lets it finish)


@pytest.fixture
def paced(use_service):
    """The page's Service on tests.fakes.PacedBackend: its run takes a step only when the test allows one."""
    from tests.fakes import PacedBackend, service_on

    backend = PacedBackend()
    use_service(service_on(backend))
    yield backend
    backend.allow()


def test_moving_a_slider_does_not_kill_the_run_and_stop_keeps_the_picture(paced):
    at = new_app()
    job = start_small_run(at, 1000)  # a preview every 25 steps
    paced.allow(30)
    rerun_until(at, lambda: len(job.history) == 30 and job.image is not None)
    slider(at, "Smoothness").set_value(5.0).run()  # a full rerun of the page mid-run
    assert at.session_state["studio_job"] is job and job.active
    paced.allow(10)
    rerun_until(at, lambda: len(job.history) == 40)  # the same run carries on after the rerun
    assert at.session_state["studio_job"] is job and job.active
    at.button(key="studio_stop").click().run()
    rerun_until(at, lambda: at.session_state["studio_job"] is None, 30)
    r = at.session_state["studio_result"]
    assert r.stopped and r.info["steps"] == 25 and r.image.size == (64, 43)  # its last preview
    assert any("stopped by you" in plain(w.value) and "picture so far is kept" in plain(w.value) for w in at.warning)


def test_address_parameters_outside_the_widgets_are_clamped_not_fatal():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in {
        "size": "48",
        "iterations": "3",
        "content_layers": "conv4_2",
        "style_layers": "pool1,relu2_1",
        "style_weight": "abc",
    }.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    assert slider(at, "Output size (longest side, px)").value == 64 and slider(at, "Iterations").value == 10
    assert at.selectbox(key="w_content_layers").value == "relu4_2"
    assert at.multiselect(key="w_style_layers").value == ["relu2_1"]
    assert any("style_weight" in plain(w.value) for w in at.warning)


def test_every_address_setting_beyond_its_widget_is_clamped_or_ignored_with_a_warning():
    """Any value in the address (a visitor can type anything) ends in a widget's range with a one-line warning,
    never an exception: within what Settings accepts but beyond the widget, clamped; invalid, ignored alone."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    beyond = {
        "content_weight": "1000",
        "tv_weight": "99",
        "style_weight": "1e9",
        "scales": "6",
        "style_scale": "3.5",
        "size": "4096",
        "iterations": "100000",
        "lr": "50",
        "seed": "99999999999",
        "optimizer": "sgd",
        "style_layers": "relu9_9",
        "precision": "float64",
        "preserve_colors": "yes",
    }
    at.query_params.update(beyond)
    at.run()
    assert not at.exception, at.exception
    assert slider(at, "Content weight").value == 5.0 and slider(at, "Smoothness").value == 20.0
    assert slider(at, "Style strength").value == 4.0 and slider(at, "Coarse-to-fine levels").value == 4
    assert slider(at, "Style scale").value == 2.0 and slider(at, "Output size (longest side, px)").value == 768
    assert slider(at, "Iterations").value == 1000 and at.number_input(key="w_lr").value == 10.0
    assert at.number_input(key="w_seed").value == 2**31 - 1
    assert at.radio(key="w_optimizer").value == "lbfgs" and at.radio(key="w_precision").value == "auto"
    assert at.multiselect(key="w_style_layers").value == list(D.style_layers)
    assert at.checkbox(key="w_preserve_colors").value is True  # a valid value is taken
    warnings = " ".join(plain(w.value) for w in at.warning)
    for key in set(beyond) - {"preserve_colors"}:
        assert key in warnings, key
    assert all("\n" not in plain(w.value) for w in at.warning)
    assert at.button(key="run")  # the page is all there


# ---------------------------------------------------------------- a result's address (?result=ID)


def open_address(**params) -> AppTest:
    """A new session (another tab, a reload) on the Studio's address with these parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def finished_run(paced, iterations: int = 10) -> tuple[AppTest, str]:
    at = new_app()
    start_small_run(at, iterations)
    paced.allow(iterations)  # this run's steps only: a later run waits for the test
    rerun_until(at, lambda: at.session_state["studio_job"] is None)
    return at, at.query_params["result"]


def test_a_finished_run_has_an_address_that_another_session_opens(paced, data_dir):
    from nst_core.serve import store as stores

    at = new_app()
    job = start_small_run(at, 10)
    rid = at.query_params["result"]  # in the address from the moment the run is queued
    assert stores.valid(rid) and job.active
    paced.allow()
    rerun_until(at, lambda: at.session_state["studio_job"] is None)
    r = at.session_state["studio_result"]
    assert r.id == rid == at.query_params["result"]
    assert any("This page's address is this result's link" in c.value for c in at.caption)
    other = open_address(result=rid)
    shown = other.session_state["studio_result"]
    assert shown.id == rid and shown.png == r.png and shown.gif == r.gif
    assert shown.image.size == (64, 43) and shown.info == r.info and shown.history == r.history
    assert [f.step for f in shown.frames] == [f.step for f in r.frames]
    labels = [b.label for b in other.get("download_button")]
    assert labels[:5] == ["Picture (PNG)", "Settings (JSON)", "Animation (GIF)", "Video (MP4)", "Animation (WebP)"]
    assert "This step as PNG (step 10)" in labels
    assert not other.warning and other.button(key="run")
    # Only what the run made is on disk: the photo (Chelsea, 451x300) is not, beyond a small thumbnail.
    for f in (data_dir / "results" / rid).rglob("*.*"):
        if f.suffix in (".png", ".jpg"):
            assert max(Image.open(f).size) <= 256, f


@pytest.mark.parametrize("bad", ["nope", "../../../../etc/passwd", "A" * 22, "![](http://127.0.0.1:9/x.png)"])
def test_an_unknown_or_malformed_result_id_is_one_line_and_the_page_works(paced, data_dir, bad):
    at = open_address(result=bad)
    assert [w.value for w in at.warning] == ["This result has expired or does not exist."]
    assert at.session_state.get("studio_result") is None
    assert not (data_dir / "results").exists() or sorted(p.name for p in (data_dir / "results").iterdir()) == [
        ".keys",
        ".pending",
    ]
    job = start_small_run(at, 10)  # the page works: a run, which gets an address of its own
    assert job is not None and at.query_params["result"] != bad


def test_after_a_restart_a_result_shows_again_and_a_lost_run_says_so(paced, data_dir):
    """A server restarts (its module state gone, the data directory kept) after one run finished and while another
    was painting: the finished one's address shows it; the lost one's says in one line to press Run again."""
    from ui import results

    done, rid = finished_run(paced)
    painting = new_app()
    job = start_small_run(painting, 1000)
    lost = painting.query_params["result"]
    assert job.active and lost != rid
    results.forget()  # a new server process on the same NST_DATA_DIR
    at = open_address(result=rid)
    assert at.session_state["studio_result"].png == done.session_state["studio_result"].png
    at = open_address(result=lost)
    assert [w.value for w in at.warning] == ["The server restarted before your run finished: press Run again."]
    assert at.session_state.get("studio_job") is None and at.button(key="run")
    job.cancel()


def test_a_reload_while_the_run_paints_watches_the_same_run_to_its_result(paced, data_dir):
    at = new_app()
    job = start_small_run(at, 10)
    rid = at.query_params["result"]
    reloaded = open_address(result=rid)  # a new session: the old one's page is gone
    assert reloaded.session_state["studio_job"] is job and not reloaded.warning
    paced.allow()
    rerun_until(reloaded, lambda: reloaded.session_state["studio_job"] is None)
    assert reloaded.session_state["studio_result"].id == rid
    assert any(m.value.startswith("Done: 10 steps") for m in reloaded.success)


def test_a_videos_second_ask_is_served_the_first_encode(paced, data_dir, monkeypatch):
    """Two asks for the same result's MP4 at once make one encode; after a restart it is read from disk."""
    import threading

    from ui import results

    at, rid = finished_run(paced)
    r = at.session_state["studio_result"]
    calls, both_asked = [], threading.Barrier(2, timeout=30)
    real = results.make_animation

    def counted(kind, pictures, card=None):
        calls.append(kind)
        return real(kind, pictures, card)

    monkeypatch.setattr(results, "make_animation", counted)
    got = []

    def ask():
        both_asked.wait()
        got.append(results.animation(r, "mp4", len(r.frames), False))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert calls == ["mp4"] and len(got) == 2 and got[0] == got[1] and got[0][4:8] == b"ftyp"
    results.forget()  # a restarted server
    again = open_address(result=rid).session_state["studio_result"]
    assert results.animation(again, "mp4", len(again.frames), False) == got[0] and calls == ["mp4"]
    assert results.animation(again, "webp", len(again.frames), False)[8:12] == b"WEBP" and len(calls) == 2


def test_encodes_of_different_results_wait_for_each_other(paced, data_dir, monkeypatch):
    """NST_ENCODES_AT_ONCE=1 (the default): a second result's WebP waits while the first's is encoded."""
    import threading

    from ui import results

    rs = [finished_run(paced)[0].session_state["studio_result"] for _ in range(2)]
    running, most, second_in = [0], [0], threading.Event()
    lock = threading.Lock()
    real = results.make_animation
    # The first encode goes on once the second ask waits for the slot, or once a second encode runs beside it.
    results.encoder().queued = second_in

    def watched(kind, pictures, card=None):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            if running[0] > 1:
                second_in.set()
        second_in.wait(60)
        try:
            return real(kind, pictures, card)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(results, "make_animation", watched)
    threads = [threading.Thread(target=results.animation, args=(r, "webp", len(r.frames), False)) for r in rs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert most[0] == 1
    assert all(results.result_store().kept(r.id, f"anim-{len(r.frames)}of{len(r.frames)}-0.webp") for r in rs)


def test_a_result_restored_after_a_restart_can_be_shared_to_its_room(paced, data_dir):
    from nst_core.classroom.wall import Wall
    from ui import results

    room, _ = Wall(data_dir).open_room("Art 2B")
    _, rid = finished_run(paced)
    results.forget()
    at = open_address(room=room.code, result=rid)
    at.text_input(key="share_name").set_value("Ada")
    next(b for b in at.button if b.label == "Share to the class wall").click().run()
    assert not at.exception, at.exception
    assert [e.name for e in Wall(data_dir).entries(room.code)] == ["Ada"]
    assert any(f"Shared to the wall of room {room.code}" in plain(s.value) for s in at.success)
    again = open_address(room=room.code, result=rid)  # a reload: the result says it was shared, no second form
    assert any(f"Shared to the wall of room {room.code}" in plain(s.value) for s in again.success)
    assert not [b for b in again.button if b.label == "Share to the class wall"]


def test_an_expired_result_is_one_line_and_is_gone_from_disk(paced, data_dir):
    import os

    from ui import results

    _, rid = finished_run(paced)
    made = data_dir / "results" / rid / "result.json"
    old = made.stat().st_mtime - 25 * 3600  # NST_RESULT_HOURS is 24
    os.utime(made, (old, old))
    at = open_address(result=rid)
    assert [w.value for w in at.warning] == ["This result has expired or does not exist."]
    assert at.session_state.get("studio_result") is None
    results.result_store().expire()
    assert not (data_dir / "results" / rid).exists()


def unwatched_end(job) -> None:
    """Until `job` has ended and its runner thread is done (its on_end included), with no page polling it: its
    heartbeats are sent here, as a tab that is open but not drawing would."""
    import threading

    t = time.monotonic()
    while job.active:
        job.heartbeat()
        assert time.monotonic() - t < 60
        time.sleep(0.05)
    for thread in threading.enumerate():
        if thread.name == f"nst-job-{job.id}":
            thread.join(60)


def test_a_run_whose_page_is_gone_is_kept_when_it_ends_and_shown_after_a_restart(paced, data_dir):
    """The result is written when the run ends, by the runner, not when a page polls it: a tab that never polls
    again (closed, asleep) still has its result after a restart; the server keeps no ended run in memory."""
    from ui import results

    at = new_app()
    job = start_small_run(at, 10)
    rid = at.query_params["result"]
    paced.allow(10)
    unwatched_end(job)
    assert results._runs == {}  # nothing of the ended run (or its uploads) is kept for a page that never comes back
    results.forget()  # a restart before any page looked at the run again
    back = open_address(result=rid)
    assert not back.warning and back.session_state["studio_result"].id == rid
    assert back.session_state["studio_result"].info["steps"] == 10


def test_the_same_run_pressed_again_and_again_is_kept_on_disk_once(paced, data_dir):
    """A visitor presses Run many times on the same settings: each press is served from the identical-run cache
    with an address of its own, and its files are one copy on disk (hard links), not one copy per press."""
    at, first = finished_run(paced)
    ids = [first]
    for _ in range(4):
        job = start_small_run(at, 10)
        assert job is None  # served at once
        ids.append(at.query_params["result"])
    assert len(set(ids)) == 5
    pictures = {(data_dir / "results" / rid / "picture.png").stat().st_ino for rid in ids}
    gifs = {(data_dir / "results" / rid / "run.gif").stat().st_ino for rid in ids}
    assert len(pictures) == 1 and len(gifs) == 1
    for rid in ids:  # each address shows the result
        assert open_address(result=rid).session_state["studio_result"].id == rid


def joined_by_session(room_code: str) -> AppTest:
    """A student who joined on the Class page and came to the Studio from the sidebar: the room is in the session
    only, not in the address."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["room"] = room_code
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_result_made_in_a_room_joined_from_another_page_can_be_shared_after_a_restart(paced, data_dir):
    from nst_core.classroom.wall import Wall
    from ui import results

    room, _ = Wall(data_dir).open_room("Art 2B")
    at = joined_by_session(room.code)
    start_small_run(at, 10)
    paced.allow(10)
    rerun_until(at, lambda: at.session_state["studio_job"] is None)
    rid = at.query_params["result"]
    results.forget()
    again = open_address(result=rid)  # the link as it was before the room went in the address
    again.text_input(key="share_name").set_value("Ada")
    next(b for b in again.button if b.label == "Share to the class wall").click().run()
    assert not again.exception, again.exception
    assert [e.name for e in Wall(data_dir).entries(room.code)] == ["Ada"]
    assert again.query_params["room"] == room.code


def test_shared_is_said_only_in_the_room_it_was_shared_to(paced, data_dir):
    from nst_core.classroom.wall import Wall

    wall = Wall(data_dir)
    a, _ = wall.open_room("Art 2A")
    b, _ = wall.open_room("Art 2B")
    _, rid = finished_run(paced)
    at = open_address(room=a.code, result=rid)
    next(b for b in at.button if b.label == "Share to the class wall").click().run()
    assert len(wall.entries(a.code)) == 1
    other = open_address(room=b.code, result=rid)
    assert not any("Shared to the wall" in plain(s.value) for s in other.success)
    assert [b for b in other.button if b.label == "Share to the class wall"]
    again = open_address(room=a.code, result=rid)
    assert any(f"Shared to the wall of room {a.code}" in plain(s.value) for s in again.success)


def test_two_tabs_on_one_link_share_it_once(paced, data_dir):
    from nst_core.classroom.wall import Wall

    room, _ = Wall(data_dir).open_room("Art 2B")
    _, rid = finished_run(paced)
    tabs = [open_address(room=room.code, result=rid) for _ in range(2)]  # both show the form
    for tab in tabs:
        next(b for b in tab.button if b.label == "Share to the class wall").click().run()
        assert not tab.exception, tab.exception
    assert len(Wall(data_dir).entries(room.code)) == 1
    assert any(f"Shared to the wall of room {room.code}" in plain(s.value) for s in tabs[1].success)


def test_a_run_that_fails_after_a_result_leaves_that_result_in_the_address(paced, data_dir):
    at, rid = finished_run(paced)
    job = start_small_run(at, 1000)
    assert at.query_params["result"] != rid
    at.button(key="studio_stop").click().run()  # stopped before its first picture: no result of its own
    rerun_until(at, lambda: at.session_state["studio_job"] is None)
    assert not job.finished_ok and at.session_state["studio_result"].id == rid
    assert at.query_params["result"] == rid


def test_pages_that_open_one_link_share_what_was_read(paced, data_dir):
    _, rid = finished_run(paced)
    from ui import results

    results.forget()
    first, second = (open_address(result=rid).session_state["studio_result"] for _ in range(2))
    assert first.png is second.png and first.frames[0].png is second.frames[0].png
    assert first.image is second.image


def test_a_kept_intro_animation_shows_the_photo_no_larger_than_its_thumbnail(paced, data_dir, monkeypatch):
    from nst_core.serve import store as stores
    from ui import results

    at, _ = finished_run(paced)
    r = at.session_state["studio_result"]
    assert max(r.content.size) > stores.THUMB  # the session's photo (Chelsea, 451 px)
    seen = []
    real = results.intro_card

    def card(photo, painting, size):
        seen.append((photo.size, painting.size))
        return real(photo, painting, size)

    monkeypatch.setattr(results, "intro_card", card)
    results.animation(r, "gif", len(r.frames), True)
    assert seen and all(max(p) <= stores.THUMB and max(q) <= stores.THUMB for p, q in seen)


def test_a_host_whose_memory_holds_no_run_says_so_before_run_and_offers_none(threaded_app):
    threaded_app.memory_line = "This server has 700 MB of memory, too little for even the smallest run."
    threaded_app.cannot_paint = True
    at = new_app()
    assert [e.value for e in at.error] == [threaded_app.memory_line]
    assert at.button(key="run").disabled


def test_a_run_larger_than_the_hosts_memory_allows_is_said_and_not_offered(threaded_app):
    threaded_app.memory_per_run = 1  # a byte per run: every run is too large
    at = new_app()
    assert any("choose a smaller size or style scale" in w.value for w in at.warning)
    assert at.button(key="run").disabled
    threaded_app.memory_per_run = None  # no cap: the same page offers Run
    at.run()
    assert not at.warning and not at.button(key="run").disabled
