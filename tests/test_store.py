"""The result store (nst_core.serve.store): results written whole and read back, expired, within their bytes, under
ids that cannot name anything else on disk; and its Encoder: one encode per key, a bound on encodes at once."""

import io
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from nst_core.serve import store as stores
from nst_core.serve.jobs import Shot
from nst_core.serve.limits import Limits
from nst_core.serve.store import Encoder, ResultStore, Stored, StoreError


def png(colour, size=(64, 43), noise=False) -> bytes:
    im = Image.effect_noise(size, 90).convert("RGB") if noise else Image.new("RGB", size, colour)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def result(frames: int = 5, noise=False, masks=True, size=(64, 43), photo=(1200, 800)) -> Stored:
    shots = tuple(
        Shot(i + 1, frames, {"total": 1.0 / (i + 1)}, 0.1 * i, size, png((10 * i, 0, 0), size, noise))
        for i in range(frames)
    )
    return Stored(
        png=shots[-1].png,
        gif=b"GIF89a" + b"\0" * 100,
        frames=shots,
        info={"settings": {"size": 64, "iterations": frames}, "steps": frames, "seconds": 1.5},
        label="Chelsea × Starry Night",
        paintings="Starry Night",
        stopped=False,
        history=tuple({"step": i + 1, "total": 1.0} for i in range(frames)),
        photo=Image.new("RGB", photo, "green"),
        painting=Image.new("RGB", (900, 1200), "blue"),
        masks=Image.new("RGB", (240, 160), "red") if masks else None,
    )


def test_a_result_is_read_back_as_it_was_written_and_the_photo_only_as_a_thumbnail(tmp_path):
    store = ResultStore(tmp_path)
    rid = stores.new_id()
    assert stores.valid(rid) and len(rid) == 22
    r = result()
    store.save(rid, r)
    back = store.load(rid)
    assert back.png == r.png and back.gif == r.gif and back.info == r.info and back.history == r.history
    assert [(f.step, f.total, f.losses, f.size, f.png) for f in back.frames] == [
        (f.step, f.total, f.losses, f.size, f.png) for f in r.frames
    ]
    assert (back.label, back.paintings, back.stopped, back.shared) == (r.label, r.paintings, False, None)
    assert max(back.photo.size) == stores.THUMB and max(back.painting.size) == stores.THUMB
    assert back.masks.size == (240, 160)
    # Nothing at the photo's size is on disk.
    for f in (tmp_path / "results" / rid).rglob("*"):
        if f.suffix in (".jpg", ".png"):
            with Image.open(f) as im:
                assert max(im.size) <= stores.THUMB
    store.set_shared(rid, "Ada")
    assert ResultStore(tmp_path).load(rid).shared == "Ada"  # another process (a restarted server) reads it too


def test_a_result_without_masks_and_a_second_save_of_the_same_id(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.save(rid, result(masks=False))
    store.save(rid, result(frames=3))  # a second tab that finished the same run: the first is kept
    back = store.load(rid)
    assert back.masks is None and len(back.frames) == 5
    assert [p.name for p in (tmp_path / "results").iterdir() if p.name.startswith(".tmp")] == []


@pytest.mark.parametrize(
    "bad",
    ["", "../../etc/passwd", "..", "a" * 21, "a" * 23, "a/" + "b" * 20, "%2e%2e" + "a" * 16, "a" * 21 + "\n", None, 7],
)
def test_ids_that_are_not_ids_read_nothing_and_write_nothing(tmp_path, bad):
    store = ResultStore(tmp_path)
    assert not stores.valid(bad)
    assert store.load(bad) is None and store.pending(bad) is None and store.kept(bad, "anim-5-0.mp4") is None
    with pytest.raises(ValueError):
        store.save(bad, result())
    with pytest.raises(ValueError):
        store.mark_pending(bad)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".pending"]


def test_unknown_ids_and_animation_names_outside_the_pattern_read_nothing(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    assert store.load(stores.new_id()) is None
    store.save(rid, result())
    assert store.kept(rid, "result.json") is None and store.kept(rid, "../x.mp4") is None
    with pytest.raises(ValueError):
        store.keep(rid, "picture.png", b"x")


def test_results_expire_after_their_hours(tmp_path):
    now = [time.time()]
    store = ResultStore(tmp_path, Limits(result_hours=1), clock=lambda: now[0])
    old, new = stores.new_id(), stores.new_id()
    store.save(old, result())
    now[0] += 1800
    store.save(new, result())
    os.utime(tmp_path / "results" / new / "result.json", (now[0], now[0]))  # made half an hour later
    store.mark_pending(stores.new_id())
    now[0] += 2400  # the first is 70 minutes old, the second 40
    assert store.load(old) is None and store.load(new) is not None  # an expired one is never shown
    assert store.expire() == 1
    assert not (tmp_path / "results" / old).exists() and (tmp_path / "results" / new).exists()


def test_a_result_over_its_cap_is_kept_with_fewer_previews_or_refused_in_one_line(tmp_path):
    big = result(frames=20, noise=True)  # about 8 kB a frame
    frame = len(big.frames[0].png)
    store = ResultStore(tmp_path, Limits(result_mb=(14 * frame) / 2**20))
    rid = stores.new_id()
    kept = store.save(rid, big)
    assert 2 <= len(kept.frames) < 20 and kept.frames[0] is big.frames[0] and kept.frames[-1] is big.frames[-1]
    assert [f.step for f in store.load(rid).frames] == [f.step for f in kept.frames]
    assert sum(f.stat().st_size for f in (tmp_path / "results" / rid).rglob("*")) <= 14 * frame
    tiny = ResultStore(tmp_path / "tiny", Limits(result_mb=frame / 2**20))
    with pytest.raises(StoreError, match=r"results are kept up to .* MB each \(NST_RESULT_MB\)"):
        tiny.save(stores.new_id(), big)
    assert [p.name for p in (tmp_path / "tiny" / "results").iterdir()] == [".pending"]


def test_the_oldest_results_go_first_when_all_of_them_are_over_the_total(tmp_path):
    one = sum(len(f.png) for f in result().frames) + len(result().png)
    store = ResultStore(tmp_path, Limits(results_mb=3.5 * one / 2**20 + 0.02))
    ids = [stores.new_id() for _ in range(6)]
    for i, rid in enumerate(ids):
        store.save(rid, result())
        t = time.time() - 100 + i  # made in this order
        os.utime(tmp_path / "results" / rid / "result.json", (t, t))
    kept = [rid for rid in ids if store.load(rid) is not None]
    assert kept and kept == ids[-len(kept) :] and len(kept) < 6  # the newest stay, the oldest went


def test_a_write_killed_midway_leaves_no_result(tmp_path, monkeypatch):
    """A write fails (a disk full, a process killed) halfway through the frames: the id reads as unknown, and
    nothing half-written is left behind under the result's name."""
    store, rid = ResultStore(tmp_path), stores.new_id()
    real = type(tmp_path).write_bytes
    calls = []

    def failing(self, data):
        calls.append(self.name)
        if len(calls) == 7:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", failing)
    with pytest.raises(StoreError, match="No space left on device"):
        store.save(rid, result())
    monkeypatch.undo()
    assert store.load(rid) is None
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".pending"]


def test_a_folder_half_written_by_a_killed_process_is_invisible_and_swept(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    half = tmp_path / "results" / f".tmp-{rid}-dead"  # where a kill -9 mid-write leaves its files
    (half / "frames").mkdir(parents=True)
    (half / "picture.png").write_bytes(b"half")
    assert store.load(rid) is None
    old = time.time() - 2 * stores.STALE
    os.utime(half, (old, old))
    store.expire()
    assert not half.exists()


def test_a_pending_marker_names_the_server_that_took_the_run(tmp_path):
    first, rid = ResultStore(tmp_path), stores.new_id()
    first.mark_pending(rid)
    restarted = ResultStore(tmp_path)  # the same data directory, a new server process
    assert first.pending(rid)["boot"] == first.boot != restarted.boot == restarted.boot
    assert restarted.pending(rid)["boot"] == first.boot
    restarted.save(rid, result())  # a finished run leaves no marker
    assert restarted.pending(rid) is None and first.load(rid) is not None


def test_an_animation_is_encoded_once_and_then_served_from_disk(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.save(rid, result())
    calls, gate = [], threading.Event()

    def encode():
        calls.append(1)
        gate.wait(10)
        return b"\0\0\0\x18ftypmp42" + b"\0" * 1000

    got = []
    threads = [threading.Thread(target=lambda: got.append(store.animation(rid, "anim-5-0.mp4", encode))) for _ in "ab"]
    for t in threads:
        t.start()
    while not calls:
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(got) == 2 and got[0] == got[1]
    assert ResultStore(tmp_path).kept(rid, "anim-5-0.mp4") == got[0]  # kept with the result, also after a restart
    assert store.animation(rid, "anim-5-0.mp4", encode) == got[0] and len(calls) == 1


def test_an_animation_that_would_take_a_result_over_its_cap_is_served_but_not_kept(tmp_path):
    r = result()
    size = len(r.png) + len(r.gif) + sum(len(f.png) for f in r.frames) + 20_000
    store, rid = ResultStore(tmp_path, Limits(result_mb=size / 2**20)), stores.new_id()
    store.save(rid, r)
    assert store.animation(rid, "anim-5-0.webp", lambda: b"w" * 50_000) == b"w" * 50_000
    assert store.kept(rid, "anim-5-0.webp") is None


def test_encodes_of_different_keys_never_run_more_at_once_than_the_bound():
    encoder = Encoder(at_once=2)
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Semaphore(0)

    def encode():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.acquire(timeout=10)
        with lock:
            running[0] -= 1
        return b"x"

    threads = [threading.Thread(target=encoder.get, args=((f"r{i}", "anim.mp4"), encode)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while running[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in threads:
        release.release()
    for t in threads:
        t.join(10)
    assert most[0] == 2 and running[0] == 0
    assert encoder._keys == {}  # nothing kept per key once nobody asks for it


def test_a_process_killed_while_it_writes_results_leaves_only_whole_ones(tmp_path):
    """A process saves results one after another and is killed (SIGKILL) in the middle of it: every result folder
    it left reads back whole, and what it was writing is invisible until the sweep removes it."""
    import signal
    import subprocess
    import sys

    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from tests.test_store import result
from nst_core.serve import store as stores
store = stores.ResultStore({str(tmp_path)!r})
r = result(frames=40, noise=True, size=(384, 256), photo=(64, 43))  # mostly writing, little encoding
while True:
    rid = stores.new_id()
    store.save(rid, r)
    print(rid, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    written = [proc.stdout.readline().strip() for _ in range(3)]
    while not set(os.listdir(tmp_path / "results")) - {*written, ".pending"}:  # until it writes the fourth
        assert proc.poll() is None
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    store = ResultStore(tmp_path)
    folders = [p.name for p in (tmp_path / "results").iterdir() if stores.valid(p.name)]
    assert set(written) <= set(folders)
    for rid in folders:
        back = store.load(rid)
        assert back is not None and len(back.frames) == 40, rid
