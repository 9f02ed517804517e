"""The class wall's storage: rooms, and the results students share to them (no Streamlit, no torch).

SQLite in WAL mode in a data directory (NST_DATA_DIR): one row per room and per shared result; the
pictures themselves are files beside the database (rooms/<code>/<id>.png, .gif and a .jpg thumbnail),
written before their row is committed and deleted after it is. Every call opens its own connection, so
any number of sessions (threads, or server processes) can share at once; limits are checked inside the
same write transaction, so they hold under concurrency too.

A room has a short code for students (eight letters and digits, shown as two groups of four, read aloud
without confusion: no 0/O or 1/I/L; the six-symbol codes of rooms opened before are still read) and a long
secret for its teacher, of which only a hash is stored. Rooms and everything in them are deleted once their
retention period (NST_ROOM_HOURS, default 24; NST_EMPTY_ROOM_HOURS for a room where nothing
was shared) is over; the code of a deleted or expired room is remembered for as long, so that a page still
showing it can say what happened. Only what a student shares is stored: the result picture, its animation, its
settings and an optional name, never the uploaded photo.

The schema has a version (`PRAGMA user_version`) and a list of migrations; a database written by a newer
version of the app is refused with a clear message rather than misread.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from ..errors import NSTError
from ..serve.clients import client_hash, client_key
from ..serve.limits import Limits

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # 31 symbols: 31^8 = 853 billion codes
CODE_LENGTH = 8
OLD_CODE_LENGTH = 6  # rooms opened before codes had eight symbols
NAME_LENGTH = 40
THUMB = 320  # px, the wall's tiles

# Migration i takes the schema from version i to i + 1; append, never edit.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE rooms (
            code TEXT PRIMARY KEY,
            teacher_hash TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            expires REAL NOT NULL,
            closed INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            room TEXT NOT NULL REFERENCES rooms(code) ON DELETE CASCADE,
            name TEXT NOT NULL DEFAULT '',
            painting TEXT NOT NULL DEFAULT '',
            settings TEXT NOT NULL DEFAULT '{}',
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            has_gif INTEGER NOT NULL,
            created REAL NOT NULL
        )""",
        "CREATE INDEX entries_by_room ON entries(room, id)",
    ],
    [  # the browser tab each picture came from (Limits.shares_per_session); '' for pictures shared before
        "ALTER TABLE entries ADD COLUMN session TEXT NOT NULL DEFAULT ''",
    ],
    [  # the room's pace (classroom/pace.py): how many students, how many minutes, and the settings that fit them
        "ALTER TABLE rooms ADD COLUMN pace TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE rooms ADD COLUMN pace_version INTEGER NOT NULL DEFAULT 0",
    ],
    [  # codes of rooms deleted or expired (kept NST_ROOM_HOURS), and the client (a hash of its address) of a room
        # and of a picture (for the limits per client); the column `session` is no longer used
        "CREATE TABLE gone (code TEXT PRIMARY KEY, why TEXT NOT NULL, until REAL NOT NULL)",
        "ALTER TABLE rooms ADD COLUMN client TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE entries ADD COLUMN client TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX entries_by_client ON entries(room, client)",
    ],
    [  # a client's bytes across every room (Limits.wall_mb_per_client), no longer its count per room
        "DROP INDEX entries_by_client",
        "CREATE INDEX entries_by_client ON entries(client)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class WallError(NSTError):
    """A room that does not exist, a wrong teacher link, a limit reached, storage that fails: one line for the page."""


class NoRoom(WallError):
    """No room has (or recently had) this code: a mistyped or guessed code, the one failure counted per client."""


class RoomGone(WallError):
    """The room was deleted by its teacher or has expired: said as such, and not a wrong code."""


# At most one class ZIP is written at a time in this process (and, with the lock file, on this data directory).
_zip_lock = threading.Lock()


def _storage(method):
    """The storage's own failures (a read-only or damaged database, a full disk, a directory that is not one)
    become a WallError in one line: the page that called says so, and the rest of the app carries on."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise WallError(f"the class wall's storage in {self.dir} (NST_DATA_DIR) failed: {e}") from None
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise WallError(f"the class wall's storage in {self.dir} (NST_DATA_DIR) failed: {why}") from None

    return guarded


@dataclass(frozen=True)
class Room:
    code: str
    title: str
    created: float
    expires: float
    closed: bool
    pace: dict = field(default_factory=dict)  # classroom.pace.Pace.to_dict(), or {} for none
    pace_version: int = 0  # changes whenever the teacher sets a pace: the students' pages follow


@dataclass(frozen=True)
class Entry:
    id: int
    room: str
    name: str
    painting: str
    settings: dict
    size: tuple[int, int]
    bytes: int
    has_gif: bool
    created: float


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normalise_code(code: str) -> str:
    """'k7qf-3m2a' or 'k7qf 3m2a' -> 'K7QF3M2A' (at most 100 characters of what was typed or sent are read)."""
    return re.sub(r"[\s-]", "", (code or "")[:100]).upper()


def grouped(code: str) -> str:
    """A code as it is shown to be read aloud and typed: 'K7QF3M2A' -> 'K7QF-3M2A' (a six-symbol code as it is)."""
    return f"{code[:4]}-{code[4:]}" if len(code) == CODE_LENGTH else code


def clean_name(name: str) -> str:
    """A first name or nickname: printable, one line, at most NAME_LENGTH characters."""
    return "".join(ch for ch in (name or "") if ch.isprintable()).strip()[:NAME_LENGTH]


def inert(cell):
    """A CSV cell that a spreadsheet will not run: text whose first character other than white space (spaces,
    no-break spaces, tabs, returns: spreadsheets skip them) is = + - @, full-width ＝ ＋ － ＠ included (read as their
    NFKC forms), or that starts with a tab or carriage return, gets a leading apostrophe, as OWASP advises."""
    if isinstance(cell, str):
        first = unicodedata.normalize("NFKC", cell.lstrip()[:1])
        if first in ("=", "+", "-", "@") or cell[:1] in ("\t", "\r"):
            return "'" + cell
    return cell


class Wall:
    @_storage
    def __init__(self, directory: str | Path, limits: Limits | None = None, clock: Callable[[], float] = time.time):
        self.dir = Path(directory)
        self.limits = limits or Limits()
        self.clock = clock
        self.db = self.dir / "wall.sqlite3"
        try:
            (self.dir / "rooms").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WallError(f"cannot use the data directory {self.dir} (NST_DATA_DIR): {e.strerror or e}") from None
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            self._migrate(db)
        self._client_key = client_key(self.dir)

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.db, timeout=30, isolation_level=None)  # autocommit; BEGIN where needed
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        try:
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self):
        """One write transaction: taken at once (BEGIN IMMEDIATE), so that checks and writes are atomic."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self, db) -> None:
        db.execute("BEGIN IMMEDIATE")  # two servers starting at once: one migrates, the other waits
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise WallError(
                    f"{self.db} was written by a newer version of the app (schema {version}; this one knows "
                    f"up to {SCHEMA_VERSION}): update the app or point NST_DATA_DIR elsewhere"
                )
            for v in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[v]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {v + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def client_hash(self, client: str) -> str:
        """What the database keeps of a client's address: enough to count by, not the address itself. Keyed with
        the data directory's secret (serve.clients), which the results' store shares."""
        return client_hash(self._client_key, client) if client else ""

    def _files(self, code: str, entry_id: int) -> dict[str, Path]:
        folder = self.dir / "rooms" / code
        return {kind: folder / f"{entry_id}.{kind}" for kind in ("png", "gif", "jpg")}

    @staticmethod
    def _room(row) -> Room:
        pace = json.loads(row["pace"])
        closed, version = bool(row["closed"]), row["pace_version"]
        return Room(row["code"], row["title"], row["created"], row["expires"], closed, pace, version)

    # ------------------------------------------------------------ rooms

    def open_rooms_per_client(self) -> int:
        """Rooms one client may have open at once: a fifth of the server's (NST_MAX_ROOMS). (Limits.rooms_per_client
        is another limit: the rooms it may open per hour.)"""
        return max(1, self.limits.max_rooms // 5)

    @_storage
    def open_room(self, title: str = "", client: str = "") -> tuple[Room, str]:
        """A new room and its teacher key (shown once; only its hash is kept). `client` (an address) may have at
        most open_rooms_per_client() open at once; '' (a teacher who gave the server's password) is not bounded so."""
        self.expire()
        key = secrets.token_urlsafe(24)
        now = self.clock()
        who = self.client_hash(client)
        with self._write() as db:
            active = db.execute("SELECT COUNT(*) FROM rooms WHERE expires > ?", (now,)).fetchone()[0]
            if active >= self.limits.max_rooms:
                raise WallError(
                    f"this server already has {active} open rooms, its limit (NST_MAX_ROOMS): "
                    "try again when one has been deleted or has expired"
                )
            if who:
                mine = db.execute("SELECT COUNT(*) FROM rooms WHERE client = ? AND expires > ?", (who, now))
                if mine.fetchone()[0] >= self.open_rooms_per_client():
                    raise WallError(
                        f"your network already has {self.open_rooms_per_client()} rooms open, a fifth of this server's "
                        "(NST_MAX_ROOMS): use one of them, or delete one you no longer need"
                    )
            while True:
                code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
                taken = "SELECT 1 FROM rooms WHERE code = ? UNION ALL SELECT 1 FROM gone WHERE code = ?"
                if db.execute(taken, (code, code)).fetchone() is None:
                    break
            # Until something is shared, a client's room keeps only NST_EMPTY_ROOM_HOURS, extended while its teacher
            # uses it (teacher()) and to its full time by a share; a teacher the server trusts (its password) keeps
            # an empty room too, for a lesson the next day.
            hours = min(self.limits.empty_room_hours, self.limits.room_hours) if who else self.limits.room_hours
            expires = now + hours * 3600
            db.execute(
                "INSERT INTO rooms (code, teacher_hash, title, created, expires, client) VALUES (?, ?, ?, ?, ?, ?)",
                (code, _hash(key), clean_name(title), now, expires, who),
            )
        return Room(code, clean_name(title), now, expires, False), key

    @_storage
    def room(self, code: str) -> Room:
        """The open (not expired) room with this code. Otherwise RoomGone if it was deleted or has expired (within
        NST_ROOM_HOURS), or NoRoom: no room had this code."""
        code = normalise_code(code)
        if not re.fullmatch(f"[{ALPHABET}]{{{CODE_LENGTH}}}|[{ALPHABET}]{{{OLD_CODE_LENGTH}}}", code):
            raise self._no_room(code)
        now = self.clock()
        with self._connect() as db:
            row = db.execute("SELECT * FROM rooms WHERE code = ?", (code,)).fetchone()
            gone = db.execute("SELECT why FROM gone WHERE code = ? AND until > ?", (code, now)).fetchone()
        if row is not None and row["expires"] > now:
            return self._room(row)
        if row is not None or (gone is not None and gone["why"] == "expired"):
            raise RoomGone(
                f"room {code} has expired (rooms are deleted {self.limits.room_hours:g} hours after they open, "
                f"or {self.limits.empty_room_hours:g} after its teacher last used it if nothing was shared): its "
                "teacher can open a new one"
            )
        if gone is not None:
            raise RoomGone(f"room {code} was deleted by its teacher")
        raise self._no_room(code)

    def _no_room(self, code: str) -> NoRoom:
        return NoRoom(f"there is no room {code or '(empty)'}: check the code with your teacher")

    @_storage
    def teacher(self, code: str, key: str) -> Room:
        """The room, if `key` is its teacher key; otherwise a WallError (and nothing of the room). A room where
        nothing was shared yet is kept NST_EMPTY_ROOM_HOURS from now, within its full time: its teacher uses it."""
        room = self.room(code)
        with self._connect() as db:
            row = db.execute("SELECT teacher_hash FROM rooms WHERE code = ?", (room.code,)).fetchone()
        if row is None or not hmac.compare_digest(row["teacher_hash"], _hash(key or "")):
            raise WallError(f"this teacher link is not valid for room {room.code}, or the room has been deleted")
        now = self.clock()
        until = min(now + self.limits.empty_room_hours * 3600, room.created + self.limits.room_hours * 3600)
        if until > room.expires + 60:  # (a write at most once a minute: the teacher's pages call this on each rerun)
            with self._write() as db:
                db.execute("UPDATE rooms SET expires = MAX(expires, ?) WHERE code = ?", (until, room.code))
            room = replace(room, expires=until)
        return room

    @_storage
    def new_key(self, code: str, key: str) -> str:
        """A new teacher key for the room: the old one (and every link with it) stops working at once."""
        room = self.teacher(code, key)
        fresh = secrets.token_urlsafe(24)
        with self._write() as db:
            changed = db.execute(
                "UPDATE rooms SET teacher_hash = ? WHERE code = ? AND teacher_hash = ?",
                (_hash(fresh), room.code, _hash(key)),
            ).rowcount
        if not changed:  # another tab changed it first
            raise WallError(f"this teacher link is not valid for room {room.code}, or the room has been deleted")
        return fresh

    @_storage
    def set_pace(self, code: str, key: str, pace: dict) -> Room:
        """The teacher sets (or changes) the room's pace; every student's page follows it."""
        room = self.teacher(code, key)
        with self._write() as db:
            db.execute(
                "UPDATE rooms SET pace = ?, pace_version = pace_version + 1 WHERE code = ?",
                (json.dumps(pace), room.code),
            )
        return self.teacher(code, key)

    @_storage
    def close_room(self, code: str, key: str) -> None:
        """No more shares; the wall stays until the room expires."""
        room = self.teacher(code, key)
        with self._write() as db:
            db.execute("UPDATE rooms SET closed = 1 WHERE code = ?", (room.code,))

    @_storage
    def delete_room(self, code: str, key: str) -> None:
        room = self.teacher(code, key)
        self._delete([room.code], "deleted")

    def _delete(self, codes: list[str], why: str) -> list[str]:
        """Delete these rooms (for why='expired': only those still past their time when the write begins, as a
        share may have extended one since it was listed), their entries and files; their codes are remembered."""
        now = self.clock()
        until = now + self.limits.room_hours * 3600
        gone = []
        with self._write() as db:
            for code in codes:
                if why == "expired":
                    cur = db.execute("DELETE FROM rooms WHERE code = ? AND expires <= ?", (code, now))
                else:
                    cur = db.execute("DELETE FROM rooms WHERE code = ?", (code,))
                if cur.rowcount:
                    gone.append(code)  # its entries cascade
                    db.execute("INSERT OR REPLACE INTO gone (code, why, until) VALUES (?, ?, ?)", (code, why, until))
        for code in gone:
            shutil.rmtree(self.dir / "rooms" / code, ignore_errors=True)
        return gone

    @_storage
    def expire(self) -> int:
        """Delete rooms past their retention period, with their entries and files; returns how many. Also removes
        folders that no room owns (a share interrupted between its files and its row), and forgets old codes."""
        # The folders are listed before the rooms are read: a room opened (and shared into) after the listing
        # has no folder in it, so its new folder cannot be taken for an orphan.
        folders = list((self.dir / "rooms").iterdir())
        now = self.clock()
        with self._connect() as db:
            old = [r[0] for r in db.execute("SELECT code FROM rooms WHERE expires <= ?", (now,))]
            live = {r[0] for r in db.execute("SELECT code FROM rooms")}
        gone = self._delete(old, "expired") if old else []
        with self._write() as db:
            db.execute("DELETE FROM gone WHERE until <= ?", (now,))
        for folder in folders:
            if folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)
        return len(gone)

    # ------------------------------------------------------------ entries

    @_storage
    def share(
        self,
        code: str,
        png: bytes,
        gif: bytes | None = None,
        name: str = "",
        painting: str = "",
        settings=None,
        client: str = "",
    ) -> Entry:
        """Put a finished result on the room's wall. Raises WallError when the room is gone or closed, full, the
        result is larger than a wall takes, the room has used its bytes (NST_ROOM_MB), the walls of this server
        theirs (NST_WALL_MB), or `client` (an address: a reload is the same client) its bytes on all of them
        (NST_WALL_MB_PER_CLIENT). The first picture keeps the room for NST_ROOM_HOURS."""
        room = self.room(code)
        name, painting, settings = clean_name(name), painting[:200], settings or {}
        size = len(png) + len(gif or b"")
        cap = self.limits.room_entry_mb * 1e6
        if size > cap:
            raise WallError(
                f"this result is {size / 1e6:.3g} MB and a class wall takes up to {cap / 1e6:g} MB per picture "
                "(NST_ROOM_ENTRY_MB): share a smaller run"
            )
        try:
            with Image.open(io.BytesIO(png)) as im:
                im.load()
                picture = im.convert("RGB")
        except Exception:
            raise WallError("the result is not a readable PNG") from None
        thumb = picture.copy()
        thumb.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        jpg = io.BytesIO()
        thumb.save(jpg, "JPEG", quality=85)
        now = self.clock()
        who = self.client_hash(client)
        files: dict[str, Path] = {}
        try:
            with self._write() as db:
                row = db.execute("SELECT closed, expires, created FROM rooms WHERE code = ?", (room.code,)).fetchone()
                if row is None or row["expires"] <= now:
                    raise WallError(f"room {room.code} has just been deleted")
                if row["closed"]:
                    raise WallError(f"room {room.code} is closed: its teacher no longer takes new pictures")
                count = db.execute("SELECT COUNT(*) FROM entries WHERE room = ?", (room.code,)).fetchone()[0]
                if count >= self.limits.room_entries:
                    raise WallError(
                        f"the wall of room {room.code} is full ({count} pictures, the limit: NST_ROOM_ENTRIES)"
                    )
                here = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries WHERE room = ?", (room.code,))
                if here.fetchone()[0] + size > self.limits.room_mb * 1e6:
                    raise WallError(
                        f"the wall of room {room.code} has used its {self.limits.room_mb:g} MB (NST_ROOM_MB): "
                        "ask the teacher to remove pictures"
                    )
                used = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0]
                if used + size > self.limits.wall_mb * 1e6:
                    raise WallError(
                        f"the class walls on this server have used their {self.limits.wall_mb:g} MB (NST_WALL_MB): "
                        "ask the teacher to remove pictures or delete an old room"
                    )
                if who:
                    mine = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries WHERE client = ?", (who,))
                    mine = mine.fetchone()[0]
                    if mine + size > self.limits.wall_mb_per_client * 1e6:
                        raise WallError(
                            f"your network has shared {mine / 1e6:.3g} MB to the class walls of this server, its "
                            f"limit is {self.limits.wall_mb_per_client:g} MB (NST_WALL_MB_PER_CLIENT): ask your "
                            "teachers to remove pictures or delete rooms they no longer need"
                        )
                # A room with a picture is kept for its full time (an empty one only NST_EMPTY_ROOM_HOURS).
                db.execute(
                    "UPDATE rooms SET expires = MAX(expires, ?) WHERE code = ?",
                    (row["created"] + self.limits.room_hours * 3600, room.code),
                )
                cur = db.execute(
                    "INSERT INTO entries (room, name, painting, settings, width, height, bytes, has_gif, created,"
                    " client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        room.code,
                        name,
                        painting,
                        json.dumps(settings),
                        picture.width,
                        picture.height,
                        size,
                        gif is not None,
                        now,
                        who,
                    ),
                )
                entry_id = cur.lastrowid
                files = self._files(room.code, entry_id)
                files["png"].parent.mkdir(parents=True, exist_ok=True)
                for kind, data in (("png", png), ("gif", gif), ("jpg", jpg.getvalue())):
                    if data is not None:
                        tmp = files[kind].with_suffix(".tmp")
                        tmp.write_bytes(data)
                        tmp.replace(files[kind])
        except BaseException:
            for path in files.values():  # the row was rolled back: so are its files (and a half-written one)
                path.unlink(missing_ok=True)
                path.with_suffix(".tmp").unlink(missing_ok=True)
            raise
        return Entry(entry_id, room.code, name, painting, settings, picture.size, size, gif is not None, now)

    @_storage
    def entries(self, code: str, after: int = 0) -> list[Entry]:
        """The room's entries, newest first (only those with id > after, if given)."""
        room = self.room(code)
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM entries WHERE room = ? AND id > ? ORDER BY id DESC", (room.code, after)
            ).fetchall()
        return [
            Entry(
                r["id"],
                r["room"],
                r["name"],
                r["painting"],
                json.loads(r["settings"]),
                (r["width"], r["height"]),
                r["bytes"],
                bool(r["has_gif"]),
                r["created"],
            )
            for r in rows
        ]

    @_storage
    def version(self, code: str) -> tuple:
        """Changes whenever the room's wall does (a share, a removal, closing): cheap enough to poll."""
        room = self.room(code)
        with self._connect() as db:
            count, last = db.execute("SELECT COUNT(*), MAX(id) FROM entries WHERE room = ?", (room.code,)).fetchone()
        return count, last, room.closed

    @_storage
    def file(self, entry: Entry, kind: str) -> bytes:
        """'png' (the picture), 'gif' (its animation) or 'jpg' (the wall's thumbnail)."""
        return self._files(entry.room, entry.id)[kind].read_bytes()

    @_storage
    def remove(self, code: str, key: str, entry_id: int) -> None:
        room = self.teacher(code, key)
        with self._write() as db:
            db.execute("DELETE FROM entries WHERE room = ? AND id = ?", (room.code, entry_id))
        for path in self._files(room.code, entry_id).values():
            path.unlink(missing_ok=True)

    @_storage
    def zip_file(self, code: str, key: str) -> Path:
        """Every picture of the wall as PNG, and settings.csv with a row per picture, in a ZIP file in the room's
        folder. Made once per state of the wall (kept until a picture comes or goes), one at a time on this
        server, written to disk rather than memory. A picture whose file is missing is left out and listed in
        missing.txt: the rest of the wall still downloads."""
        room = self.teacher(code, key)
        entries = sorted(self.entries(room.code), key=lambda e: e.id)
        tag = hashlib.sha256(",".join(str(e.id) for e in entries).encode()).hexdigest()[:16]
        folder = self.dir / "rooms" / room.code
        path = folder / f"wall-{tag}.zip"
        if path.exists():
            return path
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with _zip_lock, open(self.dir / "zip.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # other server processes on this data directory wait too
                if not path.exists():  # (made while this one waited)
                    tmp = folder / f"wall-{tag}.{secrets.token_hex(4)}.tmp"
                    try:
                        self._write_zip(tmp, entries)
                        os.replace(tmp, path)
                    finally:
                        tmp.unlink(missing_ok=True)
                    for old in folder.glob("wall-*.zip"):  # the wall has changed since those
                        if old != path:
                            old.unlink(missing_ok=True)
        except OSError:
            self.room(room.code)  # its folder went with the room, deleted meanwhile: say that instead
            raise
        try:
            self.room(room.code)
        except WallError:  # deleted or expired while its ZIP was made: its folder was made again, for nothing
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return path

    def _write_zip(self, target: Path, entries: list[Entry]) -> None:
        keys = sorted({k for e in entries for k in e.settings})
        missing = []
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            table = io.StringIO()
            out = csv.writer(table)
            out.writerow(["file", "name", "painting", "shared_utc", *keys])
            for e in entries:
                slug = re.sub(r"[^A-Za-z0-9]+", "-", e.name).strip("-")[:20] or "anonymous"
                fname = f"{e.id:03d}-{slug}.png"
                try:
                    z.write(self._files(e.room, e.id)["png"], fname)
                except OSError:
                    missing.append(fname)
                    continue
                shared = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.created))
                settings = {**e.settings, "masks": len(e.settings.get("masks") or [])}  # a count, not the pictures
                values = [" ".join(map(str, v)) if isinstance(v, list) else v for v in map(settings.get, keys)]
                out.writerow([inert(v) for v in (fname, e.name, e.painting, shared, *values)])
            z.writestr("settings.csv", table.getvalue())
            if missing:
                note = "These pictures were on the wall but their files could not be read:\n" + "\n".join(missing)
                z.writestr("missing.txt", note + "\n")
