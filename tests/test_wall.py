"""The class wall's storage on a real SQLite file: concurrency, restarts, wrong codes and keys, limits,
expiry and the teacher's ZIP."""

import csv
import io
import sqlite3
import threading
import zipfile

import pytest
from PIL import Image

from nst_core.serve.limits import Limits
from nst_core.serve.wall import SCHEMA_VERSION, Wall, WallError, normalise_code


def picture(colour, size=(48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def animation(colour) -> bytes:
    buf = io.BytesIO()
    frames = [Image.new("RGB", (48, 32), c) for c in (colour, (0, 0, 0))]
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], loop=0)
    return buf.getvalue()


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
        for call in (wall.teacher, wall.zip_bytes, wall.close_room, wall.delete_room):
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
    with pytest.raises(WallError, match="^there is no room"):
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
    with pytest.raises(WallError, match="rooms are deleted 2 hours after they open"):
        wall.entries(old.code)  # out of reach at once, even before the clean-up
    assert wall.expire() == 1
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
    z = zipfile.ZipFile(io.BytesIO(wall.zip_bytes(room.code, key)))
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
    assert all(len(c) == 6 and not set(c) & set("01OIL") for c in codes)
    assert normalise_code(" k7qf-3m ") == "K7QF3M"
    entry = wall.share(codes.pop(), picture((0, 0, 0)), name="  Ana\n\x1b[31m" + "x" * 60)
    assert entry.name == "Ana[31m" + "x" * 33 and len(entry.name) == 40


def test_spreadsheet_formulas_in_the_csv_are_inert(tmp_path):
    wall = Wall(tmp_path)
    room, key = wall.open_room()
    names = ['=HYPERLINK("http://evil/","click")', "+1+1", "-2", "@SUM(A1)", "Ana"]
    for name in names:
        wall.share(room.code, picture((1, 2, 3)), name=name, painting="=cmd|' /C calc'!A0")
    z = zipfile.ZipFile(io.BytesIO(wall.zip_bytes(room.code, key)))
    rows = list(csv.DictReader(io.StringIO(z.read("settings.csv").decode())))
    assert [r["name"] for r in rows] == ["'" + n for n in names[:4]] + ["Ana"]
    assert all(r["painting"] == "'=cmd|' /C calc'!A0" for r in rows)


def test_a_disk_cap_for_all_walls_and_a_cap_per_tab_and_room(tmp_path):
    one = len(picture((9, 9, 9)))
    wall = Wall(tmp_path, Limits(wall_mb=2.5 * one / 1e6, shares_per_session=2))
    a, _ = wall.open_room()
    b, _ = wall.open_room()
    wall.share(a.code, picture((9, 9, 9)), session="tab-1")
    wall.share(a.code, picture((9, 9, 9)), session="tab-1")
    with pytest.raises(WallError, match=r"^the class walls on this server have used their .* MB \(NST_WALL_MB\)"):
        wall.share(b.code, picture((9, 9, 9)), session="tab-2")  # another room: the cap is the server's
    wall = Wall(tmp_path, Limits(shares_per_session=2))
    with pytest.raises(WallError, match=r"^you have shared 2 pictures to this wall, its limit per student"):
        wall.share(a.code, picture((9, 9, 9)), session="tab-1")
    wall.share(b.code, picture((9, 9, 9)), session="tab-1")  # the cap is per room
    wall.share(a.code, picture((9, 9, 9)), session="tab-2")
    assert len(wall.entries(a.code)) == 3


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
from nst_core.serve.wall import Wall, WallError
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
