"""A class behind one router, in real browsers on a real server (all from 127.0.0.1): thirty wrong room codes use
up the address's budget and a right code still joins; a teacher deletes a room that pages are watching, they say
so, and the room the teacher opens right after is joined by every one of them; the teacher's link to the Studio
has no key in it and keeps its tab the teacher's."""

import re

import pytest

from nst_core.classroom.wall import ALPHABET, Wall, grouped
from tests.servers import StreamlitServer, chromium

pytestmark = pytest.mark.browser


def test_a_class_behind_one_address_is_never_locked_out(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "data"
    room, key = Wall(data).open_room("Art 2B")  # the server opens the same data directory
    # The address's budget is thirty wrong codes (each tab's ten): the students below use all of it.
    srv = StreamlitServer({"NST_DATA_DIR": str(data), "NST_CODES_PER_CLIENT": "30", "NST_CODES_PER_SESSION": "10"})
    try:
        with sync_playwright() as p:
            browser = chromium(p)

            def tab():
                page = browser.new_context(viewport={"width": 1200, "height": 1400}).new_page()
                page.goto(srv.url + "/Class", wait_until="domcontentloaded")
                expect(page.get_by_role("button", name="See the wall")).to_be_visible(timeout=60_000)
                return page

            def join(page, code: str, expected: str) -> None:
                page.get_by_label("Room code").fill(code)
                page.get_by_role("button", name="See the wall").click()
                expect(page.get_by_text(expected).first).to_be_visible(timeout=60_000)

            wrong = (c for c in (f"WRNG{a}{b}" for a in ALPHABET for b in ALPHABET) if c != room.code)
            students = [tab() for _ in range(3)]
            for page in students:  # thirty mistyped codes from one address, ten per tab
                for _ in range(10):
                    code = next(wrong)
                    join(page, code, f"There is no room {code}")
            late = tab()  # a fourth student, after the address has used its budget: a wrong code is refused ...
            join(late, next(wrong), "Too many wrong room codes from your network")
            students.append(late)
            for page in students:  # ... and the right code joins, in every tab
                join(page, room.code.lower(), f"room {room.code} is open")

            teacher = browser.new_context(viewport={"width": 1200, "height": 1400}).new_page()
            teacher.goto(f"{srv.url}/Class?room={room.code}&key={key}", wait_until="domcontentloaded")
            expect(teacher.get_by_text(f"Room {grouped(room.code)} is open.")).to_be_visible(timeout=60_000)
            expect(teacher).not_to_have_url(re.compile("key="))  # the key has left the address bar
            teacher.get_by_role("button", name="Delete the room now").click()
            teacher.get_by_role("button", name="Delete everything").click()
            for page in students:  # the watching pages see it on their next look, and say what happened
                expect(page.get_by_text(f"Room {room.code} was deleted by its teacher.")).to_be_visible(timeout=30_000)

            # The teacher opens a new room right away (here from the test: the page's own Open button plans a pace
            # with the server's workers, whose start is not what this test is about; test_class_wall clicks it).
            new, new_key = Wall(data).open_room("Art 2B, again")
            new = new.code
            for page in students:  # nobody is locked out of the new room
                page.get_by_role("button", name="Open or join another room").click()
                expect(page.get_by_role("button", name="See the wall")).to_be_visible(timeout=30_000)
                join(page, new, f"room {new} is open")

            # The teacher's link to the Studio carries the room alone, and its tab stays the teacher's.
            teacher.goto(f"{srv.url}/Class?room={new}&key={new_key}", wait_until="domcontentloaded")
            link = teacher.get_by_role("link", name="Your Studio")
            expect(link).to_be_visible(timeout=60_000)
            assert "key" not in (link.get_attribute("href") or "")
            link.click()
            expect(teacher.get_by_text(f"You are the teacher of room {new}")).to_be_visible(timeout=120_000)
            expect(teacher).to_have_url(re.compile(rf"\?room={new}$"))
            browser.close()
    finally:
        srv.stop()
