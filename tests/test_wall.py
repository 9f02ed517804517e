"""The class wall's storage on a real SQLite file: concurrency, restarts, wrong codes and keys, limits,
expiry and the teacher's ZIP."""

import contextlib
import csv
import io
import sqlite3
import threading
import zipfile

import pytest
from PIL import Image

from nst_core.classroom.wall import SCHEMA_VERSION, NoRoom, RoomGone, Wall, WallError, grouped, inert, normalise_code
from nst_core.serve.limits import Limits
from tests.helpers import animation, picture

SCHOOL = "203.0.113.9"


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_thirty_sessions_sharing_at_once_lose_nothing(tmp_path):
    room, _ = Wall(tmp_path).open_room("Art 2B")
    errors, start = [], threading.Barrier(30)

    def student(i):
        try:
            wall = Wall(tmp_path)  # each session its own connection, as separate server processes would
            start.wait()
            wall.share(room.code, picture((i * 8, 0, 0)), animation((i * 8, 0, 0)), f"student {i}", "Starry Night")
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    entries = Wall(tmp_path).entries(room.code)
    assert sorted(e.name for e in entries) == sorted(f"student {i}" for i in range(30))
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)  # newest first
    wall = Wall(tmp_path)
    for e in entries:  # every picture is the one its student shared
        i = int(e.name.split()[1])
        assert Image.open(io.BytesIO(wall.file(e, "png"))).getpixel((0, 0)) == (i * 8, 0, 0)
        assert wall.file(e, "gif")[:6] == b"GIF89a" and wall.file(e, "jpg")[:2] == b"\xff\xd8"


def test_the_limit_of_a_wall_holds_when_many_share_at_once(tmp_path):
    limits = Limits(room_entries=5)
    room, _ = Wall(tmp_path, limits).open_room()
    outcomes, start = [], threading.Barrier(12)

    def student(i):
        wall = Wall(tmp_path, limits)
        start.wait()
        try:
            wall.share(room.code, picture((i, i, i)), name=f"s{i}")
            outcomes.append("ok")
        except WallError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=student, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 5
    full = f"the wall of room {room.code} is full (5 pictures, the limit: NST_ROOM_ENTRIES)"
    assert sorted(set(outcomes)) == sorted({"ok", full})
    assert len(Wall(tmp_path, limits).entries(room.code)) == 5
    assert len(list((tmp_path / "rooms" / room.code).iterdir())) == 5 * 2  # PNG + thumbnail; no orphans


def test_a_restart_keeps_the_wall(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room("Year 9")
    shared = wall.share(room.code, picture((1, 2, 3)), animation((1, 2, 3)), "Ana", "The Scream", {"size": 256})
    room = wall.room(room.code)  # its first picture keeps the room for its full time
    assert room.expires == room.created + 24 * 3600
    del wall
    again = Wall(tmp_path)  # a new server process on the same directory
    assert again.room(room.code.lower()) == room  # codes are read case-insensitively
    assert again.teacher(room.code, key) == room
    [entry] = again.entries(room.code)
    assert entry == shared and entry.settings == {"size": 256} and entry.painting == "The Scream"
    assert again.file(entry, "png") == picture((1, 2, 3))
    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_wrong_codes_and_keys_get_a_clear_message_and_no_data(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    wall.share(room.code, picture((9, 9, 9)), name="Ana")
    other = next(c for c in ("AAAAAA", "BBBBBB") if c != room.code)
    for code in (other, "nope", "", "K7QF3M'; DROP TABLE rooms; --"):
        with pytest.raises(WallError, match=r"^there is no room .*: check the code with your teacher"):
            wall.entries(code)
        with pytest.raises(WallError, match="^there is no room"):
            wall.share(code, picture((0, 0, 0)))
    for bad in ("", "x" * 32, key[:-1]):
        for call in (wall.teacher, wall.zip_file, wall.close_room, wall.delete_room):
            with pytest.raises(WallError, match=rf"^this teacher link is not valid for room {room.code}"):
                call(room.code, bad)
        with pytest.raises(WallError, match="^this teacher link is not valid"):
            wall.remove(room.code, bad, 1)
    assert len(wall.entries(room.code)) == 1  # nothing was removed
    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:  # the key itself is never stored
        assert key not in str(db.execute("SELECT * FROM rooms").fetchall())


def test_the_teacher_removes_closes_and_deletes(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    a = wall.share(room.code, picture((1, 1, 1)), name="Ana")
    b = wall.share(room.code, picture((2, 2, 2)), animation((2, 2, 2)), name="Ben")
    wall.remove(room.code, key, b.id)
    assert [e.name for e in wall.entries(room.code)] == ["Ana"]
    assert sorted(p.name for p in (tmp_path / "rooms" / room.code).iterdir()) == [f"{a.id}.jpg", f"{a.id}.png"]
    wall.close_room(room.code, key)
    assert wall.room(room.code).closed
    with pytest.raises(WallError, match="is closed: its teacher no longer takes new pictures"):
        wall.share(room.code, picture((3, 3, 3)))
    assert [e.name for e in wall.entries(room.code)] == ["Ana"]  # a closed wall can still be seen
    wall.delete_room(room.code, key)
    with pytest.raises(RoomGone, match=f"^room {room.code} was deleted by its teacher$"):
        wall.entries(room.code)
    assert not (tmp_path / "rooms" / room.code).exists()


def test_rooms_expire_with_their_files(tmp_path):
    clock = Clock()
    limits = Limits(room_hours=2)
    wall = Wall(tmp_path, limits, clock)
    old, _ = wall.open_room()
    wall.share(old.code, picture((1, 1, 1)), animation((1, 1, 1)), "Ana")
    clock.t += 3600
    young, _ = wall.open_room()
    wall.share(young.code, picture((2, 2, 2)), name="Ben")
    clock.t += 3601  # the first is 2 h 0 min 1 s old, the second 1 h 0 min 1 s
    with pytest.raises(RoomGone, match=rf"^room {old.code} has expired \(rooms are deleted 2 hours after they open"):
        wall.entries(old.code)  # out of reach at once, even before the clean-up
    assert wall.expire() == 1
    with pytest.raises(RoomGone, match=f"^room {old.code} has expired"):
        wall.room(old.code)  # and said as such after it
    assert not (tmp_path / "rooms" / old.code).exists()
    assert [e.name for e in wall.entries(young.code)] == ["Ben"]
    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 1  # the old room's rows went too
    clock.t += 3600
    Wall(tmp_path, limits, clock).open_room()  # opening a room expires the old ones first
    assert not (tmp_path / "rooms" / young.code).exists()


def test_limits_on_rooms_and_on_bytes_per_result(tmp_path):
    limits = Limits(max_rooms=2, room_entry_mb=0.01)
    wall = Wall(tmp_path, limits)
    room, _ = wall.open_room()
    wall.open_room()
    with pytest.raises(WallError, match=r"^this server already has 2 open rooms, its limit \(NST_MAX_ROOMS\)"):
        wall.open_room()
    big = picture((5, 5, 5), size=(400, 400)) + b"\0" * 20_000
    with pytest.raises(WallError, match=r"^this result is 0\.02\d* MB and a class wall takes up to 0\.01 MB"):
        wall.share(room.code, big)
    with pytest.raises(WallError, match="^the result is not a readable PNG"):
        wall.share(room.code, b"not a png")
    assert wall.entries(room.code) == []


def test_the_zip_holds_every_picture_and_a_row_per_picture(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    names = ["Ana", "Ben", "", "Zoë, the 2nd"]
    for i, name in enumerate(names):
        wall.share(room.code, picture((i, 0, 0)), name=name, painting="Starry Night", settings={"size": 64 + i})
    z = zipfile.ZipFile(wall.zip_file(room.code, key))
    pngs = sorted(n for n in z.namelist() if n.endswith(".png"))
    assert len(pngs) == 4 and set(z.namelist()) == {*pngs, "settings.csv"}
    rows = list(csv.DictReader(io.StringIO(z.read("settings.csv").decode())))
    assert sorted(r["file"] for r in rows) == pngs
    assert [r["name"] for r in rows] == names and [r["size"] for r in rows] == ["64", "65", "66", "67"]
    for r in rows:
        i = int(r["size"]) - 64
        assert Image.open(io.BytesIO(z.read(r["file"]))).getpixel((0, 0)) == (i, 0, 0)


def test_the_schema_has_a_version_and_a_newer_database_is_refused(tmp_path):
    Wall(tmp_path)
    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(WallError, match=r"was written by a newer version of the app .*point NST_DATA_DIR elsewhere"):
        Wall(tmp_path)


def test_codes_are_short_unambiguous_and_names_are_cleaned(tmp_path):
    wall = Wall(tmp_path, Limits(max_rooms=200))
    codes = {wall.open_room()[0].code for _ in range(100)}
    assert len(codes) == 100
    assert all(len(c) == 8 and not set(c) & set("01OIL") for c in codes)
    assert normalise_code(" k7qf-3m2a ") == "K7QF3M2A" and grouped("K7QF3M2A") == "K7QF-3M2A"
    code = codes.pop()
    assert wall.room(grouped(code).lower()).code == code  # typed as shown, in either case
    entry = wall.share(codes.pop(), picture((0, 0, 0)), name="  Ana\n\x1b[31m" + "x" * 60)
    assert entry.name == "Ana[31m" + "x" * 33 and len(entry.name) == 40


def test_spreadsheet_formulas_in_the_csv_are_inert(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    names = ['=HYPERLINK("http://evil/","click")', "+1+1", "-2", "@SUM(A1)", "Ana"]
    for name in names:
        wall.share(room.code, picture((1, 2, 3)), name=name, painting="=cmd|' /C calc'!A0")
    z = zipfile.ZipFile(wall.zip_file(room.code, key))
    rows = list(csv.DictReader(io.StringIO(z.read("settings.csv").decode())))
    assert [r["name"] for r in rows] == ["'" + n for n in names[:4]] + ["Ana"]
    assert all(r["painting"] == "'=cmd|' /C calc'!A0" for r in rows)


def test_a_disk_cap_for_all_walls_and_a_cap_per_client_across_rooms(tmp_path):
    one = len(picture((9, 9, 9)))
    wall = Wall(tmp_path, Limits(wall_mb=2.5 * one / 1e6))
    a, _ = wall.open_room()
    b, _ = wall.open_room()
    wall.share(a.code, picture((9, 9, 9)), client="10.0.0.1")
    wall.share(a.code, picture((9, 9, 9)), client="10.0.0.1")
    with pytest.raises(WallError, match=r"^the class walls on this server have used their .* MB \(NST_WALL_MB\)"):
        wall.share(b.code, picture((9, 9, 9)), client="10.0.0.2")  # another room: the cap is the server's
    # Two addresses with a few rooms each cannot fill the server's walls: a client's bytes count across its rooms.
    wall = Wall(tmp_path, Limits(wall_mb_per_client=2.5 * one / 1e6))
    wall.share(b.code, picture((9, 9, 9)), client="10.0.0.3")
    wall.share(a.code, picture((9, 9, 9)), client="10.0.0.3")
    with pytest.raises(WallError, match=r"^your network has shared .* MB to the class walls of this server, its limit"):
        wall.share(b.code, picture((9, 9, 9)), client="10.0.0.3")  # a reload is a new tab, not a new client
    with pytest.raises(WallError, match=r"^your network has shared"):
        wall.share(a.code, picture((9, 9, 9)), client="10.0.0.1")  # its two pictures above count too
    wall.share(b.code, picture((9, 9, 9)), client="10.0.0.2")  # another client is not held back
    assert len(wall.entries(a.code)) == 3 and len(wall.entries(b.code)) == 2
    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:  # what is kept of a client is not its address
        assert "10.0.0.1" not in str(db.execute("SELECT * FROM entries").fetchall())


def test_a_class_behind_one_router_fills_its_own_wall(tmp_path):
    wall = Wall(tmp_path)  # the default limits
    room, _ = wall.open_room()
    for student in range(30):  # thirty students behind one school router share three pictures each
        for n in range(3):
            wall.share(room.code, picture((student, n, 0)), name=f"s{student}", client=SCHOOL)
    assert len(wall.entries(room.code)) == 90


def test_one_room_cannot_fill_the_servers_disk(tmp_path):
    one = len(picture((9, 9, 9)))
    wall = Wall(tmp_path, Limits(room_mb=2.5 * one / 1e6, wall_mb=100 * one / 1e6))
    a, _ = wall.open_room()
    b, _ = wall.open_room()
    for i in range(2):
        wall.share(a.code, picture((9, 9, 9)), client=f"10.0.0.{i}")
    with pytest.raises(WallError, match=rf"^the wall of room {a.code} has used its .* MB \(NST_ROOM_MB\)"):
        wall.share(a.code, picture((9, 9, 9)), client="10.0.0.9")
    wall.share(b.code, picture((9, 9, 9)))  # the other rooms still take pictures
    assert len(wall.entries(a.code)) == 2


def test_a_client_opens_at_most_a_fifth_of_the_servers_rooms(tmp_path):
    wall = Wall(tmp_path, Limits(max_rooms=10))
    mine = [wall.open_room(client="2001:db8::/64") for _ in range(2)]
    with pytest.raises(WallError, match=r"^your network already has 2 rooms open, a fifth of this server's"):
        wall.open_room(client="2001:db8::/64")
    wall.open_room(client="198.51.100.7")  # another client is not held back
    for _ in range(3):
        wall.open_room()  # nor a teacher the server trusts (its password): only NST_MAX_ROOMS bounds them
    room, key = mine[0]
    wall.delete_room(room.code, key)  # a room deleted is a room the client may open again
    wall.open_room(client="2001:db8::/64")


def test_a_client_is_kept_as_a_keyed_hash_that_only_its_server_can_make(tmp_path):
    import hashlib

    address, kept = "198.51.100.7", []
    for server in ("a", "b"):
        wall = Wall(tmp_path / server, Limits(max_rooms=10))
        room, _ = wall.open_room(client=address)
        wall.share(room.code, picture((1, 2, 3)), client=address)
        with sqlite3.connect(tmp_path / server / "wall.sqlite3") as db:
            kept.append(db.execute("SELECT client FROM rooms UNION SELECT client FROM entries").fetchall())
    [[a]], [[b]] = kept
    assert a != b  # each data directory has its own key: an address cannot be found by hashing all 2^32 of them
    assert a != hashlib.sha256(f"nst-client:{address}".encode()).hexdigest()[:24]
    Wall(tmp_path / "a", Limits(max_rooms=10)).open_room(client=address)  # a restart counts the same client
    with pytest.raises(WallError, match="^your network already has 2 rooms open"):
        Wall(tmp_path / "a", Limits(max_rooms=10)).open_room(client=address)


def test_a_room_where_nothing_was_shared_expires_early(tmp_path):
    clock = Clock()
    wall = Wall(tmp_path, Limits(room_hours=24, empty_room_hours=2), clock)
    empty, _ = wall.open_room(client="10.0.0.1")
    used, _ = wall.open_room(client="10.0.0.1")
    clock.t += 3600
    wall.share(used.code, picture((1, 1, 1)))
    clock.t += 3601
    with pytest.raises(RoomGone, match=f"^room {empty.code} has expired"):
        wall.room(empty.code)
    assert wall.expire() == 1
    assert wall.room(used.code).expires == used.created + 24 * 3600


def test_an_empty_room_lasts_while_its_teacher_uses_it_and_a_trusted_teachers_room_its_full_time(tmp_path):
    clock = Clock()
    wall = Wall(tmp_path, Limits(room_hours=24, empty_room_hours=4), clock)
    room, key = wall.open_room(client="10.0.0.1")  # opened the day before the lesson, without the password
    trusted, _ = wall.open_room()  # by a teacher who gave the server's password
    for _ in range(5):  # the teacher comes back to the room's page every three hours
        clock.t += 3 * 3600
        wall.teacher(room.code, key)
    clock.t += 3 * 3600  # 18 h after it opened: still there
    assert wall.room(room.code).code == room.code and wall.room(trusted.code).code == trusted.code
    clock.t += 3600 + 1  # nobody came for 4 h: an empty room of an untrusted client goes
    with pytest.raises(RoomGone, match=f"^room {room.code} has expired"):
        wall.room(room.code)
    assert wall.room(trusted.code).expires == trusted.created + 24 * 3600
    clock.t += 5 * 3600  # and no one keeps a room past its full time
    with pytest.raises(RoomGone):
        wall.room(trusted.code)


def test_a_deleted_or_expired_code_is_said_as_such_and_remembered_for_a_while(tmp_path):
    clock = Clock()
    wall = Wall(tmp_path, Limits(room_hours=2), clock)
    a, key = wall.open_room()
    b, _ = wall.open_room()
    wall.share(b.code, picture((1, 1, 1)))
    clock.t += 2 * 3600 - 10
    wall.delete_room(a.code, key)
    clock.t += 11
    assert wall.expire() == 1
    with pytest.raises(RoomGone, match=f"^room {a.code} was deleted by its teacher$"):
        wall.room(a.code)
    with pytest.raises(RoomGone, match=f"^room {b.code} has expired"):
        Wall(tmp_path, Limits(room_hours=2), clock).version(b.code)  # a wall page's poll, after a restart
    with pytest.raises(WallError, match="^this teacher link is not valid|^room .* was deleted"):
        wall.teacher(a.code, key)
    other = next(c for c in ("AAAAAA", "BBBBBB") if c not in (a.code, b.code))
    with pytest.raises(NoRoom, match=f"^there is no room {other}: check the code with your teacher"):
        wall.room(other)
    clock.t += 2 * 3600 + 1  # the codes are forgotten one retention period after the rooms went
    wall.expire()
    for code in (a.code, b.code):
        with pytest.raises(NoRoom):
            wall.room(code)


def test_a_new_teacher_key_ends_the_old_one(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    fresh = wall.new_key(room.code, key)
    assert fresh != key and len(fresh) >= 32
    with pytest.raises(WallError, match=f"^this teacher link is not valid for room {room.code}"):
        wall.teacher(room.code, key)
    with pytest.raises(WallError, match="^this teacher link is not valid"):
        wall.new_key(room.code, key)  # the old link cannot take the room back
    assert wall.teacher(room.code, fresh) == room
    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:
        assert fresh not in str(db.execute("SELECT * FROM rooms").fetchall())


def test_the_expiry_sweep_cannot_race_a_share_into_a_new_room(tmp_path):
    """The sweep reads which rooms live; right then a room is opened and shared into (in another session).
    The sweep must not take the new room's folder for an orphan."""
    armed, born = [True], []

    class Racing(Wall):
        @contextlib.contextmanager
        def _connect(self):
            with super()._connect() as db:
                yield db
            if armed[0] and self.sweeping:
                armed[0] = False  # the first connection of the sweep (its read of the rooms) has closed
                other = Wall(tmp_path)
                room, _ = other.open_room()
                born.append(other.share(room.code, picture((7, 7, 7)), name="Ana"))

        def expire(self):
            self.sweeping = True
            try:
                return super().expire()
            finally:
                self.sweeping = False

    wall = Racing.__new__(Racing)
    wall.sweeping = False
    Wall.__init__(wall, tmp_path)
    wall.expire()
    assert born and not armed[0]
    [entry] = born
    assert wall.file(entry, "png") == picture((7, 7, 7))


def test_the_zip_skips_a_missing_picture_and_lists_it(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    a = wall.share(room.code, picture((1, 0, 0)), name="Ana")
    b = wall.share(room.code, picture((2, 0, 0)), name="Ben")
    (tmp_path / "rooms" / room.code / f"{a.id}.png").unlink()
    z = zipfile.ZipFile(wall.zip_file(room.code, key))
    assert sorted(z.namelist()) == [f"{b.id:03d}-Ben.png", "missing.txt", "settings.csv"]
    assert f"{a.id:03d}-Ana.png" in z.read("missing.txt").decode()
    assert [r["name"] for r in csv.DictReader(io.StringIO(z.read("settings.csv").decode()))] == ["Ben"]


def test_the_zip_is_made_once_per_state_of_the_wall_one_at_a_time(tmp_path, monkeypatch):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    wall.share(room.code, picture((1, 0, 0)), name="Ana")
    built, inside, most = [], [0], [0]
    write = Wall._write_zip

    def counting(self, target, entries):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        built.append(len(entries))
        threading.Event().wait(0.2)  # hold the build while the others arrive (they must wait, not build too)
        write(self, target, entries)
        inside[0] -= 1

    monkeypatch.setattr(Wall, "_write_zip", counting)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(wall.zip_file(room.code, key))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == [1] and most == [1] and len(set(paths)) == 1  # 8 presses, one ZIP
    first = paths[0]
    wall.share(room.code, picture((2, 0, 0)), name="Ben")
    second = wall.zip_file(room.code, key)  # the wall changed: a new ZIP, and the old one goes
    assert built == [1, 2] and second != first and not first.exists()
    assert len(zipfile.ZipFile(second).namelist()) == 3


@pytest.mark.parametrize("when", ["entries", "_write_zip"])
def test_a_zip_made_while_its_room_is_deleted_leaves_nothing_behind(tmp_path, monkeypatch, when):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    wall.share(room.code, picture((1, 2, 3)))
    step = getattr(Wall, when)

    def deleted_meanwhile(self, *args):  # the teacher deletes the room in another tab: before the ZIP, or during
        if when == "_write_zip":
            Wall(tmp_path).delete_room(room.code, key)
        out = step(self, *args)
        if when == "entries":
            Wall(tmp_path).delete_room(room.code, key)
        return out

    monkeypatch.setattr(Wall, when, deleted_meanwhile)
    with pytest.raises(RoomGone, match=f"^room {room.code} was deleted by its teacher"):
        wall.zip_file(room.code, key)
    assert not (tmp_path / "rooms" / room.code).exists()


def test_inert_cells_behind_spaces_and_full_width_signs():
    for cell in (" =1+1", "\u00a0=HYPERLINK(1)", "\uff1dSUM(A1)", "\uff0b1", "\uff0d1", "\uff20SUM(A1)", "\u3000@x"):
        assert inert(cell) == "'" + cell, cell
    for cell in ("Ana", " Ana", "a=b", "", 3):
        assert inert(cell) == cell


@pytest.mark.parametrize("broken", ["garbage", "directory"])
def test_a_broken_database_is_one_line_not_a_crash(tmp_path, broken):
    db = tmp_path / "wall.sqlite3"
    if broken == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    else:
        db.mkdir()
    with pytest.raises(WallError, match=rf"^the class wall's storage in {tmp_path} \(NST_DATA_DIR\) failed: ") as e:
        Wall(tmp_path)
    assert "\n" not in str(e.value)


def test_a_full_disk_while_sharing_fails_in_one_line_and_leaves_no_file_behind(tmp_path):
    """A real write failure: the process may write files of at most 64 kB (RLIMIT_FSIZE), the picture is bigger."""
    code = f"""
import io, resource, signal, sys
from PIL import Image
from nst_core.classroom.wall import Wall, WallError
wall = Wall({str(tmp_path)!r})
room, _ = wall.open_room()
buf = io.BytesIO()
Image.effect_noise((300, 300), 80).convert("RGB").save(buf, "PNG")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))
try:
    wall.share(room.code, buf.getvalue(), name="Ana")
except WallError as e:
    print(e)
    print(len(wall.entries(room.code)))
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    message, entries = out.stdout.strip().splitlines()
    assert message.startswith(f"the class wall's storage in {tmp_path} (NST_DATA_DIR) failed: File too large")
    assert entries == "0"
    left = [p.name for p in (tmp_path / "rooms").rglob("*") if p.is_file()]
    assert left == []


def test_the_limits_per_client_hold_when_one_client_opens_and_shares_at_once(tmp_path):
    one = len(picture((0, 0, 0)))
    limits = Limits(max_rooms=10, wall_mb_per_client=3.5 * one / 1e6)  # two rooms open at once per client
    room, _ = Wall(tmp_path, limits).open_room()
    opened, shared, start = [], [], threading.Barrier(12)

    def tab(i):
        wall = Wall(tmp_path, limits)
        start.wait()
        for call, out in (
            (lambda: wall.open_room(client="10.0.0.1"), opened),
            (lambda: wall.share(room.code, picture((0, 0, 0)), client="10.0.0.1"), shared),
        ):
            try:
                call()
                out.append("ok")
            except WallError as e:
                out.append(str(e).split(":")[0])

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened.count("ok") == 2 and set(opened) == {
        "ok",
        "your network already has 2 rooms open, a fifth of this server's (NST_MAX_ROOMS)",
    }
    assert shared.count("ok") == 3 and len(Wall(tmp_path, limits).entries(room.code)) == 3


def test_a_wall_of_the_previous_schema_is_migrated_and_keeps_its_rooms(tmp_path):
    from nst_core.classroom.wall import MIGRATIONS, _hash

    with sqlite3.connect(tmp_path / "wall.sqlite3") as db:  # what the app before this schema wrote
        for statement in (s for m in MIGRATIONS[:3] for s in m):
            db.execute(statement)
        db.execute("PRAGMA user_version = 3")
        db.execute(
            "INSERT INTO rooms (code, teacher_hash, created, expires) VALUES ('K7QF3M', ?, 0, 1e12)", (_hash("k"),)
        )
    (tmp_path / "rooms").mkdir()
    wall = Wall(tmp_path)
    assert wall.room("K7QF3M").code == "K7QF3M" and wall.teacher("K7QF3M", "k").code == "K7QF3M"
    wall.share("K7QF3M", picture((1, 1, 1)), client="10.0.0.1")
    wall.delete_room("K7QF3M", "k")
    with pytest.raises(RoomGone):
        wall.room("K7QF3M")
