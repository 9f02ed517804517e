"""The class wall end to end in a real browser: a teacher opens a room, two students (separate browser
sessions) run and share, the teacher's wall shows both without a reload, removes one and downloads the ZIP.
Plus the pages' messages for a wrong room code or teacher key (AppTest)."""

import csv
import io
import os
import re
import subprocess
import sys
import zipfile
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from nst_core.classroom.wall import Wall, grouped
from tests.conftest import ROOT, plain
from tests.helpers import picture
from tests.servers import StreamlitServer, chromium

# The Class page plans paces and shows a room's progress with the server's Service: here one in this process.
pytestmark = pytest.mark.usefixtures("threaded_app")


@pytest.mark.browser
def test_a_teacher_opens_a_room_and_the_wall_fills_live(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = os.environ.get("NST_SCREENSHOTS")
    data = tmp_path / "data"
    srv = StreamlitServer({"NST_DATA_DIR": str(data), "NST_HEARTBEAT_TIMEOUT": "30"})
    try:
        with sync_playwright() as p:
            browser = chromium(p)
            teacher = browser.new_context(viewport={"width": 1400, "height": 1600}, accept_downloads=True).new_page()
            teacher.goto(srv.url + "/Class", wait_until="domcontentloaded")
            teacher.get_by_role("button", name="Open a room").click()
            expect(teacher.get_by_text(re.compile(r"Room [A-Z2-9]{4}-[A-Z2-9]{4} is open"))).to_be_visible(
                timeout=60_000
            )
            query = parse_qs(urlparse(teacher.url).query)
            code = query["room"][0]
            assert "key" not in query  # the teacher key never enters the address bar: the page shows it once
            link = teacher.get_by_text(re.compile(rf"/Class\?room={code}&key=")).first.inner_text()
            assert len(parse_qs(urlparse(link.strip()).query)["key"][0]) >= 32
            expect(teacher.get_by_text("No pictures yet")).to_be_visible()
            # The link the page gives the students is the one they use.
            expect(teacher.get_by_text(f"{srv.url}/?room={code}").first).to_be_visible()

            students = {}
            for seed, name in enumerate(("Ana", "Ben")):  # two sessions, two runs, pressed at once: one waits
                page = browser.new_context(viewport={"width": 1400, "height": 2000}).new_page()
                page.goto(f"{srv.url}/?room={code}&size=64&iterations=10&seed={seed}", wait_until="domcontentloaded")
                expect(page.get_by_text(f"You are in class room {code}")).to_be_visible(timeout=60_000)
                page.get_by_role("button", name="Run").click()
                students[name] = page
            for name, page in students.items():
                expect(page.get_by_text("Done: 10 steps")).to_be_visible(timeout=120_000)
                page.get_by_label("Your first name or a nickname (optional)").fill(name)
                page.get_by_role("button", name="Share to the class wall").click()
                expect(page.get_by_text(f"Shared to the wall of room {code} as {name}.")).to_be_visible()

            # The teacher's page was never reloaded: the wall polls.
            tiles = teacher.locator("[data-testid=stColumn]")
            for name in ("Ana", "Ben"):
                expect(teacher.get_by_text(f"{name} · Starry Night")).to_be_visible(timeout=15_000)
            expect(teacher.get_by_text(re.compile(r"^2 pictures · room"))).to_be_visible()
            if shots:
                teacher.screenshot(path=f"{shots}/class-wall.png", full_page=True)
            tiles.filter(has_text="Ben · Starry Night").get_by_role("button", name="Remove").click()
            expect(teacher.get_by_text("Ben · Starry Night")).to_have_count(0, timeout=15_000)
            expect(teacher.get_by_text(re.compile(r"^1 picture · room"))).to_be_visible()
            with teacher.expect_download(timeout=30_000) as dl:
                teacher.get_by_role("button", name="Download the wall (ZIP)").click()
            archive = tmp_path / "wall.zip"
            dl.value.save_as(archive)
            browser.close()
    finally:
        srv.stop()
    z = zipfile.ZipFile(archive)
    [png] = [n for n in z.namelist() if n.endswith(".png")]
    [row] = list(csv.DictReader(io.StringIO(z.read("settings.csv").decode())))
    assert row["file"] == png and row["name"] == "Ana" and row["painting"] == "Starry Night"
    assert row["size"] == "64" and row["steps"] == "10"
    assert Image.open(io.BytesIO(z.read(png))).size == (64, 43)
    # What is stored: the result, its animation, its thumbnail; no photo.
    [entry] = Wall(data).entries(code)
    stored = sorted(p.suffix for p in (data / "rooms" / code).iterdir())
    assert stored == [".gif", ".jpg", ".png", ".zip"]  # the ZIP is kept for the next press, until the wall changes
    assert entry.name == "Ana"


def texts(at: AppTest) -> list[str]:
    return [plain(e.value) for kind in ("markdown", "caption", "error", "success", "info") for e in at.get(kind)]


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A data directory of its own for the pages run here (the wall is cached once per server)."""
    from nst_core.classroom.server import forget_wall

    monkeypatch.setenv("NST_DATA_DIR", str(tmp_path / "data"))
    forget_wall()
    yield tmp_path / "data"
    forget_wall()


def run_page(params: dict) -> AppTest:
    """The Class page with these query parameters, as the app's navigation runs it (its links to the other pages
    need their registration: the first run registers them, on the Studio without a room)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("ui/pages/classroom.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def test_wrong_codes_and_keys_show_a_message_and_nothing_of_the_room(data):
    wall = Wall(data)
    room, key = wall.open_room("Art 2B")
    wall.share(room.code, picture((200, 40, 40)), name="Ana", painting="The Scream")
    at = run_page({"room": "ZZZZZZ" if room.code != "ZZZZZZ" else "YYYYYY"})
    assert [plain(e.value) for e in at.error][0].startswith("There is no room")
    assert not any("The Scream" in t for t in texts(at))
    at = run_page({"room": room.code, "key": "not-the-key"})
    assert [plain(e.value) for e in at.error] == [
        f"This teacher link is not valid for room {room.code}, or the room has been deleted."
    ]
    assert not any("Ana" in t for t in texts(at)) and not at.get("download_button")
    at = run_page({"room": room.code.lower()})  # the student's view: the wall, no teacher tools
    assert not at.error and "**Ana** · The Scream" in texts(at)
    assert not [b for b in at.button if b.label == "Remove"]
    at = run_page({"room": room.code, "key": key})
    assert not at.error and [b.label for b in at.button if b.label == "Remove"] == ["Remove"]


@pytest.mark.parametrize("broken", ["a file, not a directory", "a damaged database"])
def test_an_unusable_data_directory_leaves_the_studio_working(tmp_path, monkeypatch, broken):
    from nst_core.classroom.server import forget_wall

    if broken == "a file, not a directory":
        directory = tmp_path / "not-a-directory"
        directory.write_text("a file where the data directory should be")
        why = f"cannot use the data directory {directory}"
    else:  # (the tests run as root, for whom no file is read-only: a database that cannot be opened instead)
        directory = tmp_path / "data"
        directory.mkdir()
        (directory / "wall.sqlite3").write_bytes(b"not a database" * 100)
        why = f"the class wall's storage in {directory} (NST_DATA_DIR) failed: file is not a database"
    monkeypatch.setenv("NST_DATA_DIR", str(directory))
    forget_wall()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.query_params["room"] = "K7QF3M"
        at.run()
        assert not at.exception and not at.error
        assert [plain(w.value) for w in at.warning][0].startswith(
            f"Not in a class: the class wall is not available on this server ({why}"
        )
        assert at.button(key="run")  # the studio itself is all there
        at = run_page({"room": "K7QF3M"})
        assert [plain(e.value) for e in at.error][0].startswith(f"The class wall is not available: {why}")
    finally:
        forget_wall()


def test_a_bad_setting_is_one_line_on_the_class_page_and_importing_the_pages_reads_no_setting(tmp_path, monkeypatch):
    from nst_core.classroom.server import forget_wall

    code = "import ui.classroom, ui.results, nst_core.classroom.server"
    env = {**os.environ, "NST_CODES_PER_CLIENT": "many", "NST_DATA_DIR": str(tmp_path / "data")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("NST_CODES_PER_CLIENT", "many")
    forget_wall()
    try:
        at = AppTest.from_file(str(ROOT / "ui" / "pages" / "classroom.py"), default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        [error] = [plain(e.value) for e in at.error]
        assert "NST_CODES_PER_CLIENT='many' is not a number" in error
        assert not at.button and not at.text_input  # nothing more of the page
    finally:
        monkeypatch.delenv("NST_CODES_PER_CLIENT")
        forget_wall()


def test_a_teacher_password_and_limits_per_client_on_rooms_opened_and_codes_tried(data, monkeypatch):
    from nst_core.classroom.server import door, forget_wall
    from nst_core.serve.limits import Quota

    monkeypatch.setenv("NST_TEACHER_PASSWORD", "s3cret")
    forget_wall()  # (the server is started with it)
    server = door()
    monkeypatch.setattr(server, "rooms_opened", Quota(2, 3600))  # the quotas of a server started now
    monkeypatch.setattr(server, "wrong_codes", Quota(3, 600))
    monkeypatch.setattr(server, "wrong_codes_tab", Quota(100, 600))  # (here the address runs out first)
    monkeypatch.setattr(server, "wrong_passwords", Quota(20, 600))
    monkeypatch.setattr(server, "sleep", lambda seconds: None)  # (the wait past the budget: test_quotas)

    def open_room(password: str) -> AppTest:
        at = run_page({})
        for t in at.text_input:
            if t.label == "Teacher password":
                t.set_value(password)
        next(b for b in at.button if b.label == "Open a room").click().run()
        assert not at.exception, at.exception
        return at

    at = open_room("guess")
    assert [plain(e.value) for e in at.error] == ["That is not the teacher password of this server."]
    assert "room" not in at.query_params and Wall(data).expire() == 0 and not list((data / "rooms").iterdir())
    codes = []
    for _ in range(3):  # the right password: more rooms than a client without it opens in an hour
        at = open_room("s3cret")
        assert not at.error and at.query_params["room"]
        assert "key" not in at.query_params  # the teacher key never enters the address
        room = at.query_params["room"]
        codes.append(room[0] if isinstance(room, list) else room)
    monkeypatch.delenv("NST_TEACHER_PASSWORD")
    forget_wall()  # (restarted without it; the door's counts stay)
    assert door() is server
    for _ in range(2):
        at = open_room("")
        assert not at.error
    at = open_room("")
    [error] = [plain(e.value) for e in at.error]
    assert error.startswith("Your network has opened 2 rooms in the last hour, the limit (NST_ROOMS_PER_CLIENT)")
    wrong = next(c for c in ("ZZZZZZ", "YYYYYY", "XXXXXX") if c not in codes)
    for _ in range(3):  # (the wrong password above is not a wrong code)
        at = run_page({"room": wrong})
        assert plain(at.error[0].value).startswith("There is no room")
    at = run_page({"room": wrong})  # a fourth wrong code is refused
    assert plain(at.error[0].value).startswith("Too many wrong room codes from your network: try again in 10 min")
    at = run_page({"room": codes[0]})  # and a right code still joins
    assert not at.error and any(f"room {codes[0]} is open" in t for t in texts(at))


def test_a_teacher_link_leaves_the_address_and_a_new_link_ends_the_old(data):
    wall = Wall(data)
    room, key = wall.open_room("Art 2B")
    wall.share(room.code, picture((200, 40, 40)), name="Ana")
    at = run_page({"room": room.code, "key": key})
    assert "key" not in at.query_params and at.query_params["room"] == room.code
    assert [b.label for b in at.button if b.label == "Remove"] == ["Remove"]
    assert [c.value for c in at.code] == [f"./Class?room={room.code}&key={key}"]  # the teacher can still copy it
    at.run()  # a rerun (any widget): still the teacher, from the key kept in the session
    assert not at.exception and [b.label for b in at.button if b.label == "Remove"] == ["Remove"]
    next(b for b in at.button if b.label == "Make a new teacher link").click().run()
    assert not at.exception and not at.error
    fresh = at.session_state["room_key"]
    assert fresh != key and [c.value for c in at.code] == [f"./Class?room={room.code}&key={fresh}"]
    assert Wall(data).teacher(room.code, fresh).code == room.code
    at.run()
    assert [b.label for b in at.button if b.label == "Remove"] == ["Remove"]
    old = run_page({"room": room.code, "key": key})  # the old link (a projector's history, a proxy log) is dead
    assert [plain(e.value) for e in old.error] == [
        f"This teacher link is not valid for room {room.code}, or the room has been deleted."
    ]
    assert not [b for b in old.button if b.label == "Remove"]


def test_the_teacher_page_links_to_the_studio_and_lab_without_the_key(data):
    wall = Wall(data)
    room, key = wall.open_room()
    at = run_page({"room": room.code, "key": key})
    assert f"Room {grouped(room.code)} is open." in plain(at.success[0].value)  # the code as it is read aloud
    # The key is in the closed panel's code block alone: not in a link's address (hovered on a projector, sent in
    # the request line, kept in the history), nor anywhere else on the page.
    assert [c.value for c in at.code] == [f"./Class?room={room.code}&key={key}"]
    shown = [str(e.proto) for e in at.main if e.type != "code"] + [str(e.proto) for e in at.get("page_link")]
    assert not any(key in text for text in shown)
    links = {e.proto.page: e.proto.query_string for e in at.get("page_link")}
    assert links == {"": f"room={room.code}", "Lab": f"room={room.code}"}
    at.switch_page("ui/pages/studio.py")  # what the Studio link does: this tab, this session, its teacher key
    at.query_params.clear()
    at.query_params["room"] = room.code
    at.run()
    assert not at.exception
    assert f"You are the teacher of room **{room.code}**: your runs go ahead of the students'." in [
        plain(i.value) for i in at.info
    ]


def test_the_studio_takes_the_teacher_key_out_of_the_address(data):
    wall = Wall(data)
    room, key = wall.open_room()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update({"room": room.code, "key": key})
    at.run()
    assert not at.exception and "key" not in at.query_params and at.query_params["room"] == room.code
    teacher = f"You are the teacher of room **{room.code}**: your runs go ahead of the students'."
    assert teacher in [plain(i.value) for i in at.info]
    at.run()  # after a rerun, still the teacher (the key is in the session)
    assert teacher in [plain(i.value) for i in at.info]
    wall.new_key(room.code, key)  # a new teacher link, made on the Class page, ends this one here too
    at.run()
    assert not at.exception and teacher not in [plain(i.value) for i in at.info]
    assert f"You are in class room **{room.code}**" in " ".join(plain(i.value) for i in at.info)
    assert [plain(w.value) for w in at.warning] == [
        f"This tab's teacher link for room {room.code} was replaced by a new one: use the new link."
    ]


def test_a_missing_or_damaged_picture_is_one_tile_that_keeps_its_remove_button(data):
    wall = Wall(data)
    room, key = wall.open_room()
    a, b, c = (wall.share(room.code, picture((i * 60, 0, 0)), name=n) for i, n in enumerate(("Ana", "Ben", "Cy")))
    (data / "rooms" / room.code / f"{a.id}.jpg").unlink()
    (data / "rooms" / room.code / f"{b.id}.jpg").write_bytes(b"\xff\xd8 not a picture")
    (data / "rooms" / room.code / f"{b.id}.png").unlink()
    at = run_page({"room": room.code, "key": key})
    assert [plain(w.value) for w in at.warning] == ["This picture's file is missing or damaged."] * 2
    assert len([x for x in at.button if x.label == "Remove"]) == 3 and "**Cy** ·" in texts(at)
    at.button(key=f"view_{b.id}").click().run()  # its big view says so too, and the page goes on
    assert not at.exception and "This picture's file is missing on the server or damaged." in [
        plain(w.value) for w in at.warning
    ]
    at.button(key=f"remove_{a.id}").click().run()
    assert not at.exception and [e.name for e in wall.entries(room.code)] == ["Cy", "Ben"]


def test_a_damaged_picture_or_animation_in_the_big_view_is_a_warning_not_an_error(data):
    from tests.helpers import animation

    wall = Wall(data)
    room, key = wall.open_room()
    a = wall.share(room.code, picture((200, 0, 0)), animation((200, 0, 0)), name="Ana")
    (data / "rooms" / room.code / f"{a.id}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (data / "rooms" / room.code / f"{a.id}.gif").write_bytes(b"GIF89a garbage")
    at = run_page({"room": room.code, "key": key})
    at.button(key=f"view_{a.id}").click().run()
    assert not at.exception and not at.error
    assert [plain(w.value) for w in at.warning] == [
        "This picture's file is missing on the server or damaged.",
        "This picture's animation is missing on the server or damaged.",
    ]
    assert [b.label for b in at.button if b.label in ("Remove", "Close")] == ["Close", "Remove"]
    at.run()  # the big view stays open across reruns, and still draws
    assert not at.exception and not at.error
    at.button(key=f"remove_{a.id}").click().run()
    assert not at.exception and wall.entries(room.code) == []


def test_a_deleted_room_is_said_as_such_on_its_pages(data):
    from nst_core.classroom.server import door

    wall = Wall(data)
    room, key = wall.open_room()
    wall.delete_room(room.code, key)
    before = len(door().wrong_codes._events.get("local", ()))
    for _ in range(3):
        at = run_page({"room": room.code})
        assert [plain(e.value) for e in at.error] == [f"Room {room.code} was deleted by its teacher."]
    assert len(door().wrong_codes._events.get("local", ())) == before  # not a wrong code
