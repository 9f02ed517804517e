"""Finished Studio results on disk, each under an unguessable id (NST_DATA_DIR/results/<id>/), so that a reload,
another tab or a restarted server shows a result again; bounded in bytes per client and in all, expired, written
atomically.

A result is what a run made, never what a visitor uploaded: the picture (PNG with its settings), the kept preview
frames (at most PREVIEW px), the settings and losses, the masks' overlay, and the photo and paintings as small
thumbnails (THUMB px) for the result's view. Its animations are kept beside it once made (Encoder: one encode per
result and kind). Results of the same run (the same task digest, served from the identical-run cache) share one copy
of their files (hard links), each id charged its part.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import NSTError
from ..images import png_bytes
from .clients import client_hash, client_key
from .job import Shot
from .limits import Limits

ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
HASHED = re.compile(r"[0-9a-f]{24}")  # a client as kept (serve.clients): no address or network prefix looks like it
NAME = re.compile(r"[a-z0-9-]{1,40}\.(gif|mp4|webp)")  # a kept animation's file name
KEY = re.compile(r"[0-9a-f]{64}")  # a task's digest (jobs.Results.key)
THUMB = 256  # px, the photo's and the paintings' thumbnails
PREVIEW = 768  # px, the largest side of a kept preview frame (the picture itself is kept whole)
STALE = 3600.0  # seconds after which a half-written file or folder (a process killed mid-write) is removed
ENCODE_WAIT = 60.0  # seconds a download waits for an encode slot before it is refused
WAITING = 4  # downloads waiting for an encode slot at once; a further one is refused at once
CLIENT = "client.txt"  # whose result it is: the client's keyed hash (serve.clients; NST_RESULTS_MB_PER_CLIENT)


class StoreError(NSTError):
    """A result could not be kept (too big for NST_RESULT_MB, or the disk failed), or an encode was refused."""


@dataclass(frozen=True)
class Stored:
    """One result as it is kept: what a page needs to show it again, with its downloads and its share form."""

    png: bytes  # the picture, its settings in the PNG's metadata
    gif: bytes  # the whole run's animation
    frames: tuple[Shot, ...]  # the kept previews, the last being the picture
    info: dict  # settings, weights, steps, seconds, device
    label: str
    paintings: str
    stopped: bool
    history: tuple[dict, ...]  # the losses per step
    photo: Image.Image  # thumbnails, at most THUMB px
    painting: Image.Image  # the first painting
    masks: Image.Image | None = None  # the masks' overlay on the photo
    shared: dict | None = None  # room code -> the name it was shared to that room's wall under ("-": no name)
    created: float = 0.0
    others: tuple[Image.Image, ...] = ()  # the further paintings' thumbnails
    room: str | None = None  # the class room the run was made in
    client: str | None = None  # the client that made it: its address given, its keyed hash kept and loaded
    key: str | None = None  # the task's digest: an identical run is kept once
    image: Image.Image | None = None  # the picture, decoded (filled in by load)


def new_id() -> str:
    return secrets.token_urlsafe(16)


def valid(rid) -> bool:
    return isinstance(rid, str) and ID.fullmatch(rid) is not None


def thumb(im: Image.Image, side: int = THUMB) -> Image.Image:
    t = im.convert("RGB")  # always a new image: the thumbnail never touches `im`
    t.thumbnail((side, side), Image.Resampling.LANCZOS)
    return t


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    thumb(im).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _preview(shot: Shot) -> bytes:
    """A preview frame as kept: at most PREVIEW px (a GPU's 2048 px previews would leave room for three)."""
    with Image.open(io.BytesIO(shot.png)) as im:
        if max(im.size) <= PREVIEW:
            return shot.png
        return png_bytes(thumb(im, PREVIEW))


def _room_file(room: str) -> str:
    return f"shared-{hashlib.sha256(room.encode()).hexdigest()[:24]}.json"


def _charge(folder: Path) -> float:
    """The bytes `folder` holds, each file's shared with its other names (hard links) in equal parts."""
    total = 0.0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                st = os.stat(os.path.join(dirpath, f))
            except OSError:
                continue
            total += st.st_size / max(1, st.st_nlink)
    return total


def _owner(folder: Path) -> str | None:
    """The keyed hash of the client whose result `folder` is (None if unknown)."""
    try:
        return (folder / CLIENT).read_text()
    except (OSError, ValueError):  # (ValueError: not text, a damaged file)
        return None


class Encoder:
    """Encodes (animations) made once per key and at most `at_once` at a time in this process: a second ask for a
    key waits for the first and gets what it kept, and thirty pressed downloads are never thirty encodes at once.
    An ask waits at most `wait` seconds, and at most `waiting` asks wait at all: the others are refused in one line
    (StoreError), so waiting downloads never hold every thread the web server has."""

    def __init__(self, at_once: int = 1, wait: float = ENCODE_WAIT, waiting: int = WAITING):
        self._slots = threading.BoundedSemaphore(max(1, at_once))
        self._keys: dict[tuple, list] = {}  # key -> [its lock, how many ask for it now]
        self._lock = threading.Lock()
        self._wait, self._most, self._asking = wait, max(1, at_once) + waiting, 0
        self.queued = threading.Event()  # set whenever an ask has to wait (tests)

    def get(
        self,
        key: tuple,
        make: Callable[[], bytes],
        read: Callable[[], bytes | None] = lambda: None,
        keep: Callable[[bytes], object] = lambda data: None,
    ) -> bytes:
        """read() if it has the bytes; else make() them (waiting for a free slot) and keep() them."""
        busy = StoreError("the server is busy making other animations: try this download again in a minute")
        with self._lock:
            if self._asking >= self._most:
                raise busy
            self._asking += 1
            entry = self._keys.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(blocking=False):
                self.queued.set()
                if not entry[0].acquire(timeout=self._wait):
                    raise busy
            try:
                data = read()
                if data is None:
                    if not self._slots.acquire(blocking=False):
                        self.queued.set()
                        if not self._slots.acquire(timeout=self._wait):
                            raise busy
                    try:
                        data = make()
                    finally:
                        self._slots.release()
                    keep(data)
                return data
            finally:
                entry[0].release()
        finally:
            with self._lock:
                self._asking -= 1
                entry[1] -= 1
                if not entry[1]:
                    del self._keys[key]


class ResultStore:
    """The results in `directory`/results: one folder per id, written whole to a temporary folder and renamed into
    place (a kill mid-write leaves no half result), each at most NST_RESULT_MB (previews are thinned to fit), those
    of one client at most NST_RESULTS_MB_PER_CLIENT (its own oldest go first), all of them at most NST_RESULTS_MB
    (the oldest go first), each deleted NST_RESULT_HOURS after it was made. A result of a run already kept (the same
    task digest, .keys/<digest> names its first id) is a new folder of hard links to the first one's files.

    A run waiting or painting has a pending marker (.pending/<id>) naming the server process it was submitted to
    (`boot`): after a restart, an address with such an id can say that its run was lost, not that it never was."""

    def __init__(self, directory: str | Path, limits: Limits | None = None, clock: Callable[[], float] = time.time):
        self.limits = limits or Limits()
        self.clock = clock
        self.dir = Path(directory) / "results"
        self.boot = secrets.token_hex(8)  # this server process
        self.encoder = Encoder(self.limits.encodes_at_once)
        self._lock = threading.Lock()  # the folders: renames, evictions, kept animations
        self._saving = threading.Lock()  # one save at a time: two copies of one run find each other
        self._loaded: collections.OrderedDict[str, tuple[Stored, int]] = collections.OrderedDict()
        self._loaded_bytes = 0
        try:
            (self.dir / ".pending").mkdir(parents=True, exist_ok=True)
            (self.dir / ".keys").mkdir(exist_ok=True)
            self._client_key = client_key(Path(directory))  # the class wall's too: one secret per data directory
            self._hash_old_addresses()
        except OSError as e:
            raise StoreError(f"cannot use {self.dir} (NST_DATA_DIR) for results: {e.strerror or e}") from None

    def _folder(self, rid: str) -> Path:
        if not valid(rid):  # nothing from an address reaches the disk unchecked
            raise ValueError("not a result id")
        return self.dir / rid

    def _write(self, path: Path, data: bytes) -> None:
        """`data` as `path`, whole or not at all (a temporary dot-file renamed into place)."""
        tmp = path.with_name(f".{path.name}-{secrets.token_hex(4)}")
        try:
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------ runs in progress

    def _hashed(self, client: str | None) -> str | None:
        """What is kept of a client's address: its keyed hash (serve.clients), never the address. A client that is
        a hash already (a loaded result's) stays as it is."""
        if client is None or HASHED.fullmatch(client):
            return client
        return client_hash(self._client_key, client)

    def _hash_old_addresses(self) -> None:
        """Results and pending markers that an older server wrote with the client's address itself get its hash
        instead, once, when the store opens (they would otherwise keep the address until they expire, and count as
        another client's). Each keeps its age (its file's time: what expiry and eviction read)."""
        for folder in self.dir.iterdir():
            if not valid(folder.name):
                continue
            owner = _owner(folder)  # (read first: a small file; result.json only where it is missing)
            if owner is not None and HASHED.fullmatch(owner):
                continue
            try:
                meta = json.loads((folder / "result.json").read_text())
                owner = owner if owner is not None else meta.get("client")  # (kept in result.json alone, once)
                if not isinstance(owner, str) or HASHED.fullmatch(owner):
                    continue
                meta["client"] = self._hashed(owner)
                self._rewrite(folder / "result.json", json.dumps(meta).encode())
                self._rewrite(folder / CLIENT, meta["client"].encode())
            except (OSError, ValueError):
                continue  # (an unreadable result: the sweep or eviction removes it)
        for path in (self.dir / ".pending").iterdir():
            try:
                marker = json.loads(path.read_text()) if valid(path.name) else None
                if isinstance(marker, dict) and isinstance(marker.get("client"), str):
                    if not HASHED.fullmatch(marker["client"]):
                        marker["client"] = self._hashed(marker["client"])
                        self._rewrite(path, json.dumps(marker).encode())
            except (OSError, ValueError):
                continue

    def _rewrite(self, path: Path, data: bytes) -> None:
        """`data` as `path` (whole, as _write), keeping the time of the file it replaces, if any."""
        try:
            then = path.stat().st_mtime_ns
        except FileNotFoundError:
            then = None
        self._write(path, data)
        if then is not None:
            os.utime(path, ns=(then, then))

    def mark_pending(self, rid: str, client: str | None = None, room: str | None = None) -> None:
        self._folder(rid)  # checks the id
        marker = {"boot": self.boot, "created": self.clock(), "client": self._hashed(client), "room": room}
        self._write(self.dir / ".pending" / rid, json.dumps(marker).encode())

    def pending(self, rid: str) -> dict | None:
        """The marker of a run submitted under `rid` and not finished: {"boot", "created", "client", "room"}, or
        None."""
        if not valid(rid):
            return None
        try:
            marker = json.loads((self.dir / ".pending" / rid).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(marker, dict) or marker.get("created", 0) + self.limits.result_hours * 3600 < self.clock():
            return None
        return marker

    def forget_pending(self, rid: str) -> None:
        """The run under `rid` has ended (a disk that fails here only leaves a marker the sweep removes)."""
        if valid(rid):
            try:
                (self.dir / ".pending" / rid).unlink(missing_ok=True)
            except OSError:
                pass

    # ------------------------------------------------------------ results

    def _same(self, key: str | None) -> Path | None:
        """The folder of a result already kept for the run `key` (None if there is none, or it has gone)."""
        if key is None or not KEY.fullmatch(key):
            return None
        try:
            first = self._folder((self.dir / ".keys" / key).read_text().strip())
            meta = json.loads((first / "result.json").read_text())
        except (OSError, ValueError):
            return None
        return first if meta.get("key") == key and not meta.get("stopped") else None  # a stopped run: partial

    def save(self, rid: str, result: Stored) -> Stored:
        """Write `result` under `rid` (once: a second save of the same id keeps the first). Returns what was kept:
        with its previews thinned if the whole was over NST_RESULT_MB. A result of a run already kept (result.key)
        shares that one's files. Raises StoreError if even the picture and its GIF are over NST_RESULT_MB, or the
        disk fails."""
        folder = self._folder(rid)
        result = dataclasses.replace(result, client=self._hashed(result.client))
        with self._saving:
            try:
                if (folder / "result.json").exists():
                    return result
                first = self._same(result.key)
                if first is not None:
                    kept = self._link(rid, first, result)
                    if kept is not None:
                        return kept
                return self._save(rid, result)
            finally:
                self.forget_pending(rid)

    def copy(self, rid: str, result: Stored) -> Stored | None:
        """Keep `rid` as a copy of the result already kept for the same run (result.key), sharing its files, with
        `result`'s own label, client and room; None if there is none (then the caller makes and saves it whole)."""
        folder = self._folder(rid)
        result = dataclasses.replace(result, client=self._hashed(result.client))
        with self._saving:
            if (folder / "result.json").exists():
                return self.load(rid)
            first = self._same(result.key)
            kept = self._link(rid, first, result) if first is not None else None
            if kept is not None:
                self.forget_pending(rid)
            return kept

    def _meta(self, result: Stored, frames: list[Shot]) -> dict:
        return {
            "info": result.info,
            "label": result.label,
            "paintings": result.paintings,
            "stopped": result.stopped,
            "history": list(result.history),
            "frames": [[f.step, f.total, f.losses, f.elapsed, list(f.size)] for f in frames],
            "client": result.client,
            "room": result.room,
            "key": result.key,
            "others": len(result.others),
        }

    def _link(self, rid: str, first: Path, result: Stored) -> Stored | None:
        """`rid` as a folder of hard links to `first`'s files, with its own settings' record (None if the files
        cannot be linked: then it is written as a result of its own)."""
        tmp = self.dir / f".tmp-{rid}-{secrets.token_hex(4)}"
        try:
            meta = json.loads((first / "result.json").read_text())
            (tmp / "frames").mkdir(parents=True)
            for dirpath, _, files in os.walk(first):
                for f in files:
                    src = Path(dirpath) / f
                    rel = src.relative_to(first)
                    if f.startswith(".") or f in ("result.json", CLIENT) or f.startswith("shared-"):
                        continue
                    os.link(src, tmp / rel)
            if result.client is not None:
                (tmp / CLIENT).write_text(result.client)
            own = self._meta(result, [])
            meta.update({k: own[k] for k in ("label", "paintings", "client", "room", "stopped")})
            (tmp / "result.json").write_text(json.dumps(meta))
            with self._lock:
                tmp.rename(self.dir / rid)
                self._evict(result.client)
        except (OSError, ValueError):
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        return self.load(rid) or result

    def _save(self, rid: str, result: Stored) -> Stored:
        cap = self.limits.result_mb * 2**20
        files = {
            "picture.png": result.png,
            "run.gif": result.gif,
            "photo.jpg": _jpeg(result.photo),
            "painting.jpg": _jpeg(result.painting),
        }
        for i, im in enumerate(result.others, 1):
            files[f"painting-{i}.jpg"] = _jpeg(im)
        if result.client is not None:
            files[CLIENT] = result.client.encode()  # read by every eviction: a small file, not result.json
        if result.masks is not None:
            files["masks.png"] = png_bytes(thumb(result.masks))
        frames = list(result.frames)
        # The last frame is the picture (kept once, as picture.png); the others are kept at most PREVIEW px.
        previews = {id(f): _preview(f) for f in frames[:-1]}
        fixed = sum(map(len, files.values())) + 200 * len(result.history) + 4096
        while fixed + sum(len(previews[id(f)]) for f in frames[:-1]) > cap:
            if len(frames) <= 2:
                raise StoreError(
                    f"this result is {(fixed + sum(len(previews[id(f)]) for f in frames[:-1])) / 2**20:.1f} MB and "
                    f"results are kept up to {self.limits.result_mb:g} MB each (NST_RESULT_MB)"
                )
            frames = frames[:-1:2] + frames[-1:]  # every other one, the first and the last kept
        tmp = self.dir / f".tmp-{rid}-{secrets.token_hex(4)}"
        try:
            (tmp / "frames").mkdir(parents=True)
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            for i, f in enumerate(frames[:-1]):
                (tmp / "frames" / f"{i:03d}.png").write_bytes(previews[id(f)])
            # Written last: its time is the result's (expiry, eviction), and a folder without it is no result.
            (tmp / "result.json").write_text(json.dumps(self._meta(result, frames)))
            with self._lock:
                tmp.rename(self.dir / rid)
                if result.key is not None and KEY.fullmatch(result.key) and not result.stopped:
                    self._write(self.dir / ".keys" / result.key, rid.encode())
                self._evict(result.client)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if (self.dir / rid / "result.json").exists():
                return result  # saved already (a second tab finished the same run)
            raise StoreError(f"the result could not be kept in {self.dir} (NST_DATA_DIR): {e.strerror or e}") from None
        kept = [dataclasses.replace(f, png=previews[id(f)]) for f in frames[:-1]] + frames[-1:]
        return dataclasses.replace(result, frames=tuple(kept))

    def load(self, rid: str) -> Stored | None:
        """The result kept under `rid`, or None if the id is malformed, unknown, expired or its files are damaged.
        What was read is kept in memory (within NST_RESULTS_LOADED_MB), shared by every page that shows it."""
        if not valid(rid):
            return None
        folder = self.dir / rid
        try:
            created = (folder / "result.json").stat().st_mtime
        except OSError:
            return None
        if created + self.limits.result_hours * 3600 < self.clock():
            return None
        with self._lock:
            hit = self._loaded.get(rid)
            if hit is not None and hit[0].created == created:
                self._loaded.move_to_end(rid)
                return dataclasses.replace(hit[0], shared=self._shared(folder))
        try:
            meta = json.loads((folder / "result.json").read_text())
            png = (folder / "picture.png").read_bytes()
            image = _open(png)  # a damaged picture is no result, not a page that fails on every rerun
            frames = []
            rows = meta["frames"]
            for i, (step, total, losses, elapsed, size) in enumerate(rows):
                path = folder / "frames" / f"{i:03d}.png"
                shot_png = png if i == len(rows) - 1 and not path.exists() else path.read_bytes()
                frames.append(Shot(step, total, losses, elapsed, tuple(size), shot_png))
            masks = folder / "masks.png"
            saved = Stored(
                png=png,
                gif=(folder / "run.gif").read_bytes(),
                frames=tuple(frames),
                info=meta["info"],
                label=meta["label"],
                paintings=meta["paintings"],
                stopped=meta["stopped"],
                history=tuple(meta["history"]),
                photo=_open((folder / "photo.jpg").read_bytes()),
                painting=_open((folder / "painting.jpg").read_bytes()),
                masks=_open(masks.read_bytes()) if masks.exists() else None,
                created=created,
                others=tuple(
                    _open((folder / f"painting-{i}.jpg").read_bytes()) for i in range(1, meta.get("others", 0) + 1)
                ),
                room=meta.get("room"),
                client=meta.get("client"),
                key=meta.get("key"),
                image=image,
            )
        except Exception:  # missing, unreadable or not what it should be: the result is gone, said in one line
            return None
        size = (
            len(saved.png)
            + len(saved.gif)
            + sum(len(f.png or b"") for f in saved.frames)
            + 4 * image.width * (image.height)
        )
        with self._lock:
            if size <= self.limits.results_loaded_mb * 2**20:
                old = self._loaded.pop(rid, None)
                self._loaded_bytes += size - (old[1] if old else 0)
                self._loaded[rid] = (saved, size)
                while self._loaded_bytes > self.limits.results_loaded_mb * 2**20:
                    self._loaded_bytes -= self._loaded.popitem(last=False)[1][1]
        return dataclasses.replace(saved, shared=self._shared(folder))

    # ------------------------------------------------------------ shares

    def _shared(self, folder: Path) -> dict:
        """room -> name of every finished share of the result in `folder`."""
        done = {}
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith("shared-")]
        except OSError:
            return done
        for n in names:
            try:
                rec = json.loads((folder / n).read_text())
                if rec.get("name") is not None:
                    done[rec["room"]] = rec["name"]
            except (OSError, ValueError, KeyError, AttributeError):
                pass
        return done

    def shares(self, rid: str) -> dict:
        """room -> name of every finished share of result `rid` ({} if none, or no such result)."""
        return self._shared(self.dir / rid) if valid(rid) else {}

    def claim_share(self, rid: str, room: str) -> bool:
        """Take the right to share result `rid` to `room` (False: it is shared there, or being shared from another
        tab). Atomic across tabs and processes: the claim is a file created only if it is not there. A claim left by
        a server process that has gone (killed mid-share) is taken over."""
        path = self._folder(rid) / _room_file(room)
        claim = json.dumps({"room": room, "name": None, "boot": self.boot}).encode()
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    rec = json.loads(path.read_text())
                except (OSError, ValueError):
                    rec = {}
                if rec.get("name") is not None or rec.get("boot") == self.boot:
                    return False
                path.unlink(missing_ok=True)  # a claim of a server that has gone
                continue
            except OSError:
                return False  # the result has gone
            with os.fdopen(fd, "wb") as f:
                f.write(claim)
            return True
        return False

    def set_shared(self, rid: str, room: str, name: str) -> None:
        """Remember that the result was shared to `room` (its share form there then says so after a reload or a
        restart)."""
        try:
            self._write(self._folder(rid) / _room_file(room), json.dumps({"room": room, "name": name}).encode())
        except OSError:
            pass  # the result has gone: nothing to remember

    def unclaim_share(self, rid: str, room: str) -> None:
        """A claimed share that failed: the result can be shared to `room` again."""
        try:
            (self._folder(rid) / _room_file(room)).unlink(missing_ok=True)
        except OSError:
            pass

    # ------------------------------------------------------------ kept animations

    def kept(self, rid: str, name: str) -> bytes | None:
        if not valid(rid) or not NAME.fullmatch(name):
            return None
        try:
            return (self.dir / rid / name).read_bytes()
        except OSError:
            return None

    def keep(self, rid: str, name: str, data: bytes) -> bool:
        """Keep an animation beside its result if the result stays within NST_RESULT_MB (else it is not kept)."""
        if not NAME.fullmatch(name):
            raise ValueError(f"not an animation's name: {name!r}")
        folder = self._folder(rid)
        with self._lock:
            if not (folder / "result.json").exists() or _charge(folder) + len(data) > self.limits.result_mb * 2**20:
                return False
            try:
                self._write(folder / name, data)
            except OSError:
                return False
            self._evict(_owner(folder))
        return True

    def animation(self, rid: str, name: str, make: Callable[[], bytes]) -> bytes:
        """The kept animation `name` of result `rid`, made (once, by one caller) if it was not kept yet."""
        return self.encoder.get((rid, name), make, lambda: self.kept(rid, name), lambda d: self.keep(rid, name, d))

    # ------------------------------------------------------------ limits

    def _results(self) -> list[tuple[float, Path]]:
        """(made, folder) of every result, oldest first."""
        found = []
        for entry in os.scandir(self.dir):
            if entry.is_dir() and ID.fullmatch(entry.name):
                try:
                    found.append((os.stat(os.path.join(entry.path, "result.json")).st_mtime, Path(entry.path)))
                except OSError:
                    found.append((0.0, Path(entry.path)))  # no result.json: not a result, remove it
        return sorted(found)

    def _delete(self, folder: Path) -> None:
        hit = self._loaded.pop(folder.name, None)
        if hit is not None:
            self._loaded_bytes -= hit[1]
        shutil.rmtree(folder, ignore_errors=True)

    def _evict(self, client: str | None = None) -> None:
        """(Under self._lock.) `client`'s oldest results go until its results fit NST_RESULTS_MB_PER_CLIENT (at least
        one result's NST_RESULT_MB), then the oldest of all until all of them fit NST_RESULTS_MB. A result sharing
        its files with another (the same run) is charged its part of them."""
        results = [[made, folder, _owner(folder)] for made, folder in self._results()]
        charge = {str(r[1]): _charge(r[1]) for r in results}
        if client is not None:
            mine = [r for r in results if r[2] == client]
            total = sum(charge[str(r[1])] for r in mine)
            cap = max(self.limits.results_mb_per_client, self.limits.result_mb) * 2**20
            for r in mine[:-1]:  # the newest stays: it is within one result's cap
                if total <= cap:
                    break
                self._delete(r[1])
                results.remove(r)
                total -= charge[str(r[1])]
            charge = {str(r[1]): _charge(r[1]) for r in results}  # its copies' parts changed
        total, cap = sum(charge.values()), self.limits.results_mb * 2**20
        for r in results:
            if total <= cap:
                break
            self._delete(r[1])
            total -= charge[str(r[1])]

    def expire(self) -> int:
        """Delete results, pending markers, run keys and half-written files past their time; returns the results
        deleted."""
        now, hours = self.clock(), self.limits.result_hours * 3600
        gone = 0
        with self._lock:
            for made, folder in self._results():
                if made + hours < now:
                    self._delete(folder)
                    gone += 1
                    continue
                try:  # temporary files a killed process left inside a result
                    for entry in os.scandir(folder):
                        if entry.name.startswith(".") and entry.stat().st_mtime + STALE < now:
                            os.unlink(entry.path)
                except OSError:
                    pass
            for entry in os.scandir(self.dir):
                try:
                    if entry.name.startswith(".tmp-") and entry.stat().st_mtime + STALE < now:
                        shutil.rmtree(entry.path, ignore_errors=True)
                except OSError:
                    pass
            for sub, age in ((".pending", hours), (".keys", hours)):
                for entry in os.scandir(self.dir / sub):
                    try:
                        if entry.stat().st_mtime + age < now or (
                            entry.name.startswith(".") and entry.stat().st_mtime + STALE < now
                        ):
                            os.unlink(entry.path)
                    except OSError:
                        pass
        return gone
