"""Finished Studio results on disk, each under an unguessable id (NST_DATA_DIR/results/<id>/), so that a reload,
another tab or a restarted server shows a result again; bounded in bytes, expired, written atomically.

A result is what a run made, never what a visitor uploaded: the picture (PNG with its settings), the kept preview
frames, the settings and losses, the masks' overlay, and the photo and painting as small thumbnails (THUMB px) for
the result's view. Its animations are kept beside it once made (Encoder: one encode per result and kind).
"""

from __future__ import annotations

import dataclasses
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
from .jobs import Shot
from .limits import Limits

ID = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16): 128 random bits
NAME = re.compile(r"[a-z0-9-]{1,40}\.(gif|mp4|webp)")  # a kept animation's file name
THUMB = 256  # px, the photo's and the painting's thumbnails
STALE = 3600.0  # seconds after which a half-written folder (a process killed mid-write) is removed


class StoreError(NSTError):
    """A result could not be kept (too big for NST_RESULT_MB, or the disk failed)."""


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
    painting: Image.Image
    masks: Image.Image | None = None  # the masks' overlay on the photo
    shared: str | None = None  # the name it was shared to a class wall under ("-": no name)
    created: float = 0.0


def new_id() -> str:
    return secrets.token_urlsafe(16)


def valid(rid) -> bool:
    return isinstance(rid, str) and ID.fullmatch(rid) is not None


def thumb(im: Image.Image, side: int = THUMB) -> Image.Image:
    t = im.convert("RGB").copy()
    t.thumbnail((side, side), Image.Resampling.LANCZOS)
    return t


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    thumb(im).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


class Encoder:
    """Encodes (animations) made once per key and at most `at_once` at a time in this process: a second ask for a
    key waits for the first and gets what it kept, and thirty pressed downloads are never thirty encodes at once."""

    def __init__(self, at_once: int = 1):
        self._slots = threading.BoundedSemaphore(max(1, at_once))
        self._keys: dict[tuple, list] = {}  # key -> [its lock, how many ask for it now]
        self._lock = threading.Lock()

    def get(
        self,
        key: tuple,
        make: Callable[[], bytes],
        read: Callable[[], bytes | None] = lambda: None,
        keep: Callable[[bytes], object] = lambda data: None,
    ) -> bytes:
        """read() if it has the bytes; else make() them (waiting for a free slot) and keep() them."""
        with self._lock:
            entry = self._keys.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                data = read()
                if data is None:
                    with self._slots:
                        data = make()
                    keep(data)
                return data
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._keys[key]


class ResultStore:
    """The results in `directory`/results: one folder per id, written whole to a temporary folder and renamed into
    place (a kill mid-write leaves no half result), each at most NST_RESULT_MB (previews are thinned to fit), all of
    them at most NST_RESULTS_MB (the oldest go first), each deleted NST_RESULT_HOURS after it was made.

    A run waiting or painting has a pending marker (.pending/<id>) naming the server process it was submitted to
    (`boot`): after a restart, an address with such an id can say that its run was lost, not that it never was."""

    def __init__(self, directory: str | Path, limits: Limits | None = None, clock: Callable[[], float] = time.time):
        self.limits = limits or Limits()
        self.clock = clock
        self.dir = Path(directory) / "results"
        self.boot = secrets.token_hex(8)  # this server process
        self.encoder = Encoder(self.limits.encodes_at_once)
        self._lock = threading.Lock()
        try:
            (self.dir / ".pending").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot use {self.dir} (NST_DATA_DIR) for results: {e.strerror or e}") from None

    def _folder(self, rid: str) -> Path:
        if not valid(rid):  # nothing from an address reaches the disk unchecked
            raise ValueError("not a result id")
        return self.dir / rid

    # ------------------------------------------------------------ runs in progress

    def mark_pending(self, rid: str) -> None:
        self._folder(rid)  # checks the id
        (self.dir / ".pending" / rid).write_text(json.dumps({"boot": self.boot, "created": self.clock()}))

    def pending(self, rid: str) -> dict | None:
        """The marker of a run submitted under `rid` and not finished: {"boot", "created"}, or None."""
        if not valid(rid):
            return None
        try:
            marker = json.loads((self.dir / ".pending" / rid).read_text())
        except (OSError, ValueError):
            return None
        if marker.get("created", 0) + self.limits.result_hours * 3600 < self.clock():
            return None
        return marker

    def forget_pending(self, rid: str) -> None:
        if valid(rid):
            (self.dir / ".pending" / rid).unlink(missing_ok=True)

    # ------------------------------------------------------------ results

    def save(self, rid: str, result: Stored) -> Stored:
        """Write `result` under `rid` (once: a second save of the same id keeps the first). Returns what was kept:
        with its previews thinned if the whole was over NST_RESULT_MB. Raises StoreError if even the picture and
        its GIF are over it, or the disk fails."""
        folder, cap = self._folder(rid), self.limits.result_mb * 2**20
        frames = list(result.frames)
        files = {
            "picture.png": result.png,
            "run.gif": result.gif,
            "photo.jpg": _jpeg(result.photo),
            "painting.jpg": _jpeg(result.painting),
        }
        if result.masks is not None:
            files["masks.png"] = _png(result.masks)
        fixed = sum(map(len, files.values())) + 200 * len(result.history) + 4096
        while fixed + sum(len(f.png or b"") for f in frames) > cap:
            if len(frames) <= 2:
                raise StoreError(
                    f"this result is {(fixed + sum(len(f.png or b'') for f in frames)) / 2**20:.1f} MB and results "
                    f"are kept up to {self.limits.result_mb:g} MB each (NST_RESULT_MB)"
                )
            frames = frames[:-1:2] + frames[-1:]  # every other one, the first and the last kept
        meta = {
            "info": result.info,
            "label": result.label,
            "paintings": result.paintings,
            "stopped": result.stopped,
            "history": list(result.history),
            "frames": [[f.step, f.total, f.losses, f.elapsed, list(f.size)] for f in frames],
        }
        tmp = self.dir / f".tmp-{rid}-{secrets.token_hex(4)}"
        try:
            (tmp / "frames").mkdir(parents=True)
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            for i, f in enumerate(frames):
                (tmp / "frames" / f"{i:03d}.png").write_bytes(f.png)
            # Written last: its time is the result's (expiry, eviction), and a folder without it is no result.
            (tmp / "result.json").write_text(json.dumps(meta))
            with self._lock:
                try:
                    tmp.rename(folder)
                except OSError:
                    if not folder.exists():
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)  # saved already (a second tab finished the same run)
                self._evict()
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"the result could not be kept in {self.dir} (NST_DATA_DIR): {e.strerror or e}") from None
        finally:
            self.forget_pending(rid)
        return dataclasses.replace(result, frames=tuple(frames))

    def load(self, rid: str) -> Stored | None:
        """The result kept under `rid`, or None if the id is malformed, unknown, expired or its files are damaged."""
        if not valid(rid):
            return None
        folder = self.dir / rid
        try:
            created = (folder / "result.json").stat().st_mtime
            if created + self.limits.result_hours * 3600 < self.clock():
                return None
            meta = json.loads((folder / "result.json").read_text())
            frames = []
            for i, (step, total, losses, elapsed, size) in enumerate(meta["frames"]):
                png = (folder / "frames" / f"{i:03d}.png").read_bytes()
                frames.append(Shot(step, total, losses, elapsed, tuple(size), png))
            masks = folder / "masks.png"
            shared = folder / "shared.json"
            return Stored(
                png=(folder / "picture.png").read_bytes(),
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
                shared=json.loads(shared.read_text())["name"] if shared.exists() else None,
                created=created,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def set_shared(self, rid: str, name: str) -> None:
        """Remember that the result was shared (its share form then says so after a reload or a restart)."""
        folder = self._folder(rid)
        tmp = folder / f".shared-{secrets.token_hex(4)}"
        try:
            tmp.write_text(json.dumps({"name": name}))
            tmp.replace(folder / "shared.json")
        except OSError:
            tmp.unlink(missing_ok=True)  # the result has gone: nothing to remember

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
            if not (folder / "result.json").exists() or _size(folder) + len(data) > self.limits.result_mb * 2**20:
                return False
            tmp = folder / f".{name}-{secrets.token_hex(4)}"
            try:
                tmp.write_bytes(data)
                tmp.replace(folder / name)
            except OSError:
                tmp.unlink(missing_ok=True)
                return False
            self._evict()
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
        shutil.rmtree(folder, ignore_errors=True)

    def _evict(self) -> None:
        """The oldest results go until all of them fit NST_RESULTS_MB (under self._lock)."""
        results = [(made, folder, _size(folder)) for made, folder in self._results()]
        total, cap = sum(r[2] for r in results), self.limits.results_mb * 2**20
        for _, folder, size in results:
            if total <= cap:
                break
            self._delete(folder)
            total -= size

    def expire(self) -> int:
        """Delete results, pending markers and half-written folders past their time; returns the results deleted."""
        now, hours = self.clock(), self.limits.result_hours * 3600
        gone = 0
        with self._lock:
            for made, folder in self._results():
                if made + hours < now:
                    self._delete(folder)
                    gone += 1
            for entry in os.scandir(self.dir):
                try:
                    if entry.name.startswith(".tmp-") and entry.stat().st_mtime + STALE < now:
                        shutil.rmtree(entry.path, ignore_errors=True)
                except OSError:
                    pass
            for entry in os.scandir(self.dir / ".pending"):
                try:
                    if entry.stat().st_mtime + hours < now:
                        os.unlink(entry.path)
                except OSError:
                    pass
        return gone
