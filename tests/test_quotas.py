"""The limits per client on room codes, teacher passwords and rooms opened: a class behind one router is never
locked out, a deleted room counts nothing, a right code or password is never refused; the quota's check and
spend are one step; clients are told apart by address (an IPv6 network by its /64). The door (nst_core.classroom.door)
is tested as it is, without Streamlit; the pages' glue (a tab's codes in its session state) through ui.classroom."""

import itertools
import threading
from types import SimpleNamespace

import pytest
import streamlit as st

import ui.classroom as classroom
import ui.common as common
from nst_core.classroom import server
from nst_core.classroom.door import Door, Tab
from nst_core.classroom.wall import ALPHABET, NoRoom, RoomGone, Wall, WallError
from nst_core.serve.limits import Limits, Quota
from tests.helpers import picture

SCHOOL = "203.0.113.9"  # thirty students behind one router


class School:
    """Browser tabs of one school at a fresh server's door, its quotas at their defaults: set .tab to the tab the
    next call comes from, .client to the address it comes from."""

    def __init__(self):
        self.door = Door(Limits(), sleep=lambda seconds: None)  # past the budget: see the test of the delay
        self.tab, self.client = "student-0", SCHOOL
        self.codes: dict[str, tuple[set, set]] = {}  # what each tab's session keeps

    def at_door(self) -> Tab:
        known, wrong = self.codes.setdefault(self.tab, (set(), set()))
        return Tab(self.tab, self.client, known, wrong)

    def new_tab(self) -> None:
        """Forget the codes this tab has looked up (a new tab of the same name)."""
        self.codes.pop(self.tab, None)

    def find_room(self, wall, code):
        return self.door.find_room(wall, code, self.at_door())

    def open_room(self, wall, password, given):
        return self.door.open_room(wall, "", password, given, self.client)


@pytest.fixture
def school():
    return School()


@pytest.fixture
def pages(school, monkeypatch):
    """The same school through the pages' glue: ui.classroom's tab is built from this process's one session state
    (outside a server all calls share it), its session and address from the school's."""
    monkeypatch.setattr(server, "door", lambda: school.door)
    monkeypatch.setattr(classroom, "session_id", lambda: school.tab)
    monkeypatch.setattr(classroom, "client_address", lambda limits=None: school.client)
    new_tab()
    yield school
    new_tab()


def new_tab():
    """Forget the codes the session state keeps."""
    st.session_state.pop("wrong_codes", None)
    st.session_state.pop("known_codes", None)


def wrong_codes(room):
    """Codes that no room has: a different one for each try (a tab counts each code once)."""
    return (c for c in ("".join(p) for p in itertools.product(ALPHABET, repeat=6)) if c != room.code)


def test_a_class_behind_one_router_is_never_locked_out(tmp_path, school):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    wrong = wrong_codes(room)
    for i in range(30):  # every student mistypes the code once, then types it right
        school.tab = f"student-{i}"
        code = next(wrong)
        with pytest.raises(NoRoom, match=f"^there is no room {code}"):
            school.find_room(wall, code)
        assert school.find_room(wall, room.code.lower()) == room
    for i in range(30):  # and a second and a third time, 90 in ten minutes: still no one refused
        school.tab = f"student-{i}"
        for _ in range(2):
            with pytest.raises(NoRoom):
                school.find_room(wall, next(wrong))
    # Past the address's budget, wrong codes are refused, and a right code still joins, in every tab.
    refused = 0
    for i in range(30, 60):
        school.tab = f"script-{i}"
        try:
            school.find_room(wall, next(wrong))
        except NoRoom:
            pass
        except WallError as e:
            assert str(e).startswith("too many wrong room codes from your network: try again in")
            refused += 1
    assert refused > 0
    for i in range(30):
        school.tab = f"student-{i}"
        assert school.find_room(wall, room.code) == room


def test_one_tab_has_a_small_budget_of_its_own(tmp_path, school):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    wrong = wrong_codes(room)
    for _ in range(Limits().codes_per_session):
        with pytest.raises(NoRoom):
            school.find_room(wall, next(wrong))
    with pytest.raises(WallError, match="^too many wrong room codes from this tab: try again in 10 min"):
        school.find_room(wall, next(wrong))
    assert school.find_room(wall, room.code) == room  # the right code still works in that tab
    school.tab = "student-1"
    with pytest.raises(NoRoom):  # and the tab beside it has its own budget
        school.find_room(wall, next(wrong))


def test_a_tab_rerunning_with_a_wrong_code_in_its_link_counts_it_once(tmp_path, pages):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    code = next(wrong_codes(room))
    for _ in range(3 * Limits().codes_per_session):  # every slider moved in a Studio tab opened with ?room=CODE
        with pytest.raises(NoRoom, match=f"^there is no room {code}"):
            classroom.find_room(wall, code)
    assert len(pages.door.wrong_codes_tab._events["student-0"]) == 1


def test_a_teacher_link_with_a_wrong_code_counts_as_a_wrong_code(tmp_path, pages):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    wrong = wrong_codes(room)
    for _ in range(Limits().codes_per_session):  # ?room=GUESS&key=anything looks the code up like any link
        with pytest.raises(NoRoom):
            classroom.keep_key(wall, next(wrong), "anything")
    with pytest.raises(WallError, match="^too many wrong room codes from this tab"):
        classroom.keep_key(wall, next(wrong), "anything")
    assert len(pages.door.wrong_codes._events[SCHOOL]) == Limits().codes_per_session


def test_a_wrong_code_in_a_link_costs_its_tab_once_when_the_address_is_over_budget(tmp_path, school):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    school.door.wrong_codes = Quota(0, 600)  # the school has used its budget
    code = next(wrong_codes(room))
    for _ in range(5):  # a Studio tab with ?room=WRONG reruns on every slider move
        with pytest.raises(WallError):
            school.find_room(wall, code)
    assert len(school.door.wrong_codes_tab._events["student-0"]) == 1


def test_past_its_budget_an_address_waits_its_turn_for_each_code_new_to_a_tab(tmp_path, school):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    slept = []

    def sleep(seconds):  # (one lookup at a time per address: the address's lock is held while it waits)
        slept.append((seconds, school.door.slow[hash(SCHOOL) % len(school.door.slow)].locked()))

    school.door.sleep = sleep
    assert school.find_room(wall, room.code) == room and slept == []  # within the budget: at once
    school.door.wrong_codes = Quota(0, 600)  # the school has used its budget
    school.new_tab()
    assert school.find_room(wall, room.code) == room  # a right code still joins, after its turn
    assert slept == [(Limits().codes_delay, True)]
    for _ in range(5):  # the same tab's reruns (every slider moved in a Studio tab with ?room=) are not held up
        assert school.find_room(wall, room.code) == room
    assert len(slept) == 1
    school.tab = "guesser"
    school.new_tab()
    for code in list(itertools.islice(wrong_codes(room), 3)):  # a guesser's every new code waits its turn
        with pytest.raises(WallError):
            school.find_room(wall, code)
    assert len(slept) == 4


def test_an_ipv6_site_of_many_64s_has_ten_addresses_budget(tmp_path, school):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    school.door.wrong_codes = Quota(2, 600)  # (small budgets: the same rules)
    school.door.wrong_codes_site = Quota(20, 600)
    wrong = wrong_codes(room)
    for i in range(10):  # a site given a /48 (or a /56) takes any of its /64s at will: ten of them ...
        school.client = f"2001:db8:7:{i:x}::/64"
        for j in range(2):
            school.tab = f"tab-{i}-{j}"
            with pytest.raises(NoRoom):
                school.find_room(wall, next(wrong))
    school.client, school.tab = "2001:db8:7:ff::/64", "tab-11"  # ... and an eleventh is refused
    with pytest.raises(WallError, match="^too many wrong room codes from your network"):
        school.find_room(wall, next(wrong))
    school.client, school.tab = "2001:db8:8:1::/64", "tab-12"  # another /48 has its own budget
    with pytest.raises(NoRoom):
        school.find_room(wall, next(wrong))
    school.client, school.tab = "198.51.100.7", "tab-13"  # as an IPv4 address has
    with pytest.raises(NoRoom):
        school.find_room(wall, next(wrong))
    school.door.wrong_passwords = Quota(2, 600)  # teacher passwords count per /48 alone
    for i, outcome in enumerate(("^that is not the", "^that is not the", "^too many wrong teacher passwords")):
        school.client = f"2001:db8:9:{i:x}::/64"
        with pytest.raises(WallError, match=outcome):
            school.open_room(wall, "s3cret", "guess")


def test_what_a_tab_remembers_of_the_codes_it_tried_is_bounded(tmp_path, pages):
    wall = Wall(tmp_path)
    room, _ = wall.open_room()
    for code in itertools.islice(wrong_codes(room), 150):  # a script's tab, long past its budget
        with pytest.raises(WallError):
            classroom.find_room(wall, code)
    assert len(st.session_state["wrong_codes"]) == 100


def test_a_deleted_or_expired_room_is_said_as_such_and_counts_nothing(tmp_path, school):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    wall.share(room.code, picture((1, 2, 3)))
    wall.delete_room(room.code, key)
    for i in range(30):  # thirty pages poll it, and thirty Studio tabs rerun with ?room= on every slider move
        school.tab = f"student-{i}"
        for _ in range(20):
            with pytest.raises(RoomGone, match=f"^room {room.code} was deleted by its teacher$"):
                school.find_room(wall, room.code)
    assert school.door.wrong_codes.wait(SCHOOL) == 0 and not school.door.wrong_codes._events.get(SCHOOL)
    new, _ = wall.open_room()  # the teacher opens another room: everyone joins it
    for i in range(30):
        school.tab = f"student-{i}"
        assert school.find_room(wall, new.code) == new


def test_teacher_passwords_have_a_budget_of_their_own_that_once_spent_refuses_every_try(tmp_path, school):
    wall = Wall(tmp_path, Limits(max_rooms=50))
    # The right password opens a room, and more than a client without it may (the server's limit holds).
    rooms = [school.open_room(wall, "s3cret", "s3cret")[0] for _ in range(Limits().rooms_per_client + 5)]
    assert len({r.code for r in rooms}) == Limits().rooms_per_client + 5
    wrong = wrong_codes(rooms[0])
    for i in range(30):  # the students' wrong codes do not touch the teachers' budget
        school.tab = f"student-{i}"
        with pytest.raises(NoRoom):
            school.find_room(wall, next(wrong))
    for i in range(Limits().passwords_per_client):  # wrong passwords, from tabs of one address
        school.tab = f"guesser-{i}"
        with pytest.raises(WallError, match="^that is not the teacher password of this server$"):
            school.open_room(wall, "s3cret", f"guess {i}")
    for guess in ("guess", "s3cret"):  # past the budget a guess learns nothing: the right password waits too
        with pytest.raises(WallError, match="^too many wrong teacher passwords from your network: try again in 10 min"):
            school.open_room(wall, "s3cret", guess)
    with pytest.raises(NoRoom):  # and the students' codes are not held back by it
        school.find_room(wall, next(wrong))


def test_without_a_password_opening_rooms_is_bounded_per_client_and_a_refusal_costs_nothing(tmp_path, school):
    wall = Wall(tmp_path, Limits(max_rooms=10))  # a client may have 2 open at once
    first = [school.open_room(wall, None, None) for _ in range(2)]
    for _ in range(5):  # refused by the wall: not counted against the rooms per hour
        with pytest.raises(WallError, match="^your network already has 2 rooms open"):
            school.open_room(wall, None, None)
    for room, key in first:
        wall.delete_room(room.code, key)
    for _ in range(2):
        school.open_room(wall, None, None)
    wall = Wall(tmp_path / "other", Limits(max_rooms=100))
    school.open_room(wall, None, None)  # the fifth room this hour (rooms_per_client = 5)
    with pytest.raises(WallError, match=r"^your network has opened 5 rooms in the last hour, the limit"):
        school.open_room(wall, None, None)


def test_take_checks_and_spends_in_one_step():
    import time

    def slow_clock():  # widens any gap between a check and its spending: other threads run in it
        time.sleep(0.001)
        return time.monotonic()

    quota, start, taken = Quota(10, 600, clock=slow_clock), threading.Barrier(40), []

    def session():
        start.wait()
        taken.append(quota.take(SCHOOL))

    threads = [threading.Thread(target=session) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 10 and taken.count(False) == 30
    quota.give_back(SCHOOL)
    assert quota.take(SCHOOL) and not quota.take(SCHOOL)
    assert not hasattr(quota, "allows") and not hasattr(quota, "spend")  # no two-step check and spend to misuse


def test_a_quota_of_zero_refuses_and_says_how_long():
    quota = Quota(0, 600)  # NST_ROOMS_PER_CLIENT=0, say
    assert not quota.take(SCHOOL) and quota.wait(SCHOOL) == 600


def clients(monkeypatch, ip, headers=None, header=""):
    class Headers(dict):
        def get_all(self, name):
            return self.get(name, [])

    context = SimpleNamespace(ip_address=ip, headers=Headers(headers or {}))
    monkeypatch.setattr(common, "st", SimpleNamespace(context=context))
    return common.client_address(Limits(client_header=header))


def test_an_ipv6_client_is_its_64_and_a_proxy_is_read_from_its_last_entry(monkeypatch):
    a = clients(monkeypatch, "2001:db8:1:2:aaaa::1")
    assert a == clients(monkeypatch, "2001:db8:1:2:ffff:1234:5678:9") == "2001:db8:1:2::/64"
    assert clients(monkeypatch, "2001:db8:1:3::1") != a
    assert clients(monkeypatch, "198.51.100.7") == "198.51.100.7" != clients(monkeypatch, "198.51.100.8")
    assert clients(monkeypatch, "::ffff:198.51.100.7") == "198.51.100.7"
    assert clients(monkeypatch, None) == "local"
    # Behind a proxy that appends, on this machine (Streamlit gives no address for a loopback connection): the
    # client may send anything before the proxy's own entry.
    xff = {"X-Forwarded-For": ["10.9.9.9, 1.2.3.4", "6.6.6.6, 2001:db8:7:7::5"]}
    assert clients(monkeypatch, None, xff, "X-Forwarded-For") == "2001:db8:7:7::/64"
    xff = {"X-Forwarded-For": ["evil, 203.0.113.5:4711"]}
    assert clients(monkeypatch, None, xff, "X-Forwarded-For") == "203.0.113.5"
    assert clients(monkeypatch, None, {}, "X-Forwarded-For") == "local"  # no header: the connection's, this machine
    assert clients(monkeypatch, "198.51.100.7", {}, "X-Forwarded-For") == "198.51.100.7"  # ... or another's
