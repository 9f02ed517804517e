"""The result store (nst_core.serve.store): results written whole and read back, expired, within their bytes, under
ids that cannot name anything else on disk; and its Encoder: one encode per key, a bound on encodes at once."""

import dataclasses
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from nst_core.serve import store as stores
from nst_core.serve.limits import Limits
from nst_core.serve.store import Encoder, ResultStore, StoreError
from tests.helpers import result


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
    assert (back.label, back.paintings, back.stopped, back.shared) == (r.label, r.paintings, False, {})
    assert max(back.photo.size) == stores.THUMB and max(back.painting.size) == stores.THUMB
    assert back.masks.size == (240, 160)
    # Nothing at the photo's size is on disk.
    for f in (tmp_path / "results" / rid).rglob("*"):
        if f.suffix in (".jpg", ".png"):
            with Image.open(f) as im:
                assert max(im.size) <= stores.THUMB
    store.set_shared(rid, "ROOM1", "Ada")
    assert ResultStore(tmp_path).load(rid).shared == {"ROOM1": "Ada"}  # another process (a restarted server) too


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
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".keys", ".pending"]


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
    assert 2 <= len(kept.frames) < 20 and kept.frames[0] == big.frames[0] and kept.frames[-1] is big.frames[-1]
    assert [f.step for f in store.load(rid).frames] == [f.step for f in kept.frames]
    assert sum(f.stat().st_size for f in (tmp_path / "results" / rid).rglob("*")) <= 14 * frame
    tiny = ResultStore(tmp_path / "tiny", Limits(result_mb=frame / 2**20))
    with pytest.raises(StoreError, match=r"results are kept up to .* MB each \(NST_RESULT_MB\)"):
        tiny.save(stores.new_id(), big)
    assert sorted(p.name for p in (tmp_path / "tiny" / "results").iterdir()) == [".keys", ".pending"]


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
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [".keys", ".pending"]


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
    encoder = Encoder(at_once=2, waiting=6)
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
from tests.helpers import result
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


def test_a_clients_results_over_its_share_evict_its_own_oldest_not_others(tmp_path):
    probe, rid = ResultStore(tmp_path / "probe"), stores.new_id()
    probe.save(rid, result())
    one = sum(f.stat().st_size for f in (tmp_path / "probe" / "results" / rid).rglob("*") if f.is_file())
    limits = Limits(results_mb=100, results_mb_per_client=2.5 * one / 2**20, result_mb=2 * one / 2**20)
    store = ResultStore(tmp_path, limits)
    others = [stores.new_id() for _ in range(3)]
    for i, rid in enumerate(others):
        store.save(rid, dataclasses.replace(result(), client=f"student-{i}"))
    mine = []
    for _ in range(6):  # one visitor saves result after result
        mine.append(stores.new_id())
        store.save(mine[-1], dataclasses.replace(result(), client="visitor"))
    assert all(store.load(rid) is not None for rid in others)  # nobody else's result went
    kept = [rid for rid in mine if store.load(rid) is not None]
    assert kept == mine[-len(kept) :] and 1 <= len(kept) <= 2  # the visitor's own newest stay


def test_no_file_names_a_clients_address_and_the_wall_keeps_the_same_hash(tmp_path):
    """What the store keeps of a client (whose results count against whose share) is the keyed hash the class wall
    keeps too (one secret per data directory), never the address: not in a result, its copy, or a pending marker."""
    from nst_core.classroom.wall import Wall

    address = "203.0.113.77"
    store = ResultStore(tmp_path)
    first, again, waiting = stores.new_id(), stores.new_id(), stores.new_id()
    store.mark_pending(waiting, address, None)
    store.save(first, dataclasses.replace(result(), key="ef" * 32, client=address))
    store.copy(again, dataclasses.replace(result(), key="ef" * 32, client=address))
    files = [f for f in (tmp_path / "results").rglob("*") if f.is_file()]
    assert len(files) > 10 and not [f for f in files if address.encode() in f.read_bytes()]
    hashed = Wall(tmp_path).client_hash(address)
    assert store.load(first).client == store.load(again).client == store.pending(waiting)["client"] == hashed
    assert ResultStore(tmp_path)._hashed(address) == hashed  # a restart groups the same client's results


def test_addresses_an_older_server_kept_are_hashed_when_the_store_opens(tmp_path, monkeypatch):
    """A data directory from before addresses were hashed: its results and markers get the hash when a new server
    opens it, and its results count as the same client's as new ones (one share, not two)."""
    address, rid, waiting = "198.51.100.23", stores.new_id(), stores.new_id()
    with monkeypatch.context() as m:
        m.setattr(ResultStore, "_hashed", lambda self, client: client)  # as the older server kept it
        old = ResultStore(tmp_path)
        old.save(rid, dataclasses.replace(result(), client=address))
        old.mark_pending(waiting, address, None)
        older = stores.new_id()  # older still: the address in result.json alone
        old.save(older, dataclasses.replace(result(), client=address))
        (tmp_path / "results" / older / stores.CLIENT).unlink()
        damaged = stores.new_id()
        old.save(damaged, dataclasses.replace(result(), client=address))
        (tmp_path / "results" / damaged / stores.CLIENT).write_bytes(b"\xff\xfe\x00")
    assert (tmp_path / "results" / rid / stores.CLIENT).read_text() == address
    made = tmp_path / "results" / rid / "result.json"
    hour_ago = int(time.time()) - 3600
    os.utime(made, (hour_ago, hour_ago))  # its age: what expiry and eviction read
    store = ResultStore(tmp_path)  # (a damaged client.txt does not keep the store from opening)
    files = [f for f in (tmp_path / "results").rglob("*") if f.is_file()]
    assert not [f for f in files if address.encode() in f.read_bytes()]
    hashed = store._hashed(address)
    assert store.load(rid).client == store.load(older).client == store.pending(waiting)["client"] == hashed
    assert hashed == store._hashed(hashed)
    assert stores._owner(tmp_path / "results" / rid) == hashed  # the eviction's grouping: the same client
    assert made.stat().st_mtime == hour_ago  # the result kept its age


def test_the_same_run_kept_again_shares_its_files_and_each_copy_is_charged_a_part(tmp_path):
    key = "ab" * 32
    store = ResultStore(tmp_path)
    first, again = stores.new_id(), stores.new_id()
    store.save(first, dataclasses.replace(result(), key=key, client="a", label="Cat × Night"))
    copy = store.copy(again, dataclasses.replace(result(frames=1), key=key, client="b", label="Mine × Night"))
    assert copy is not None and copy.label == "Mine × Night" and copy.client == store._hashed("b") != "b"
    assert store.copy(stores.new_id(), dataclasses.replace(result(), key="cd" * 32)) is None  # no such run kept
    one, two = tmp_path / "results" / first, tmp_path / "results" / again
    assert (one / "picture.png").stat().st_ino == (two / "picture.png").stat().st_ino
    assert [f.png for f in store.load(again).frames] == [f.png for f in store.load(first).frames]
    assert stores._charge(two) < 0.6 * sum(f.stat().st_size for f in two.rglob("*") if f.is_file())
    shutil.rmtree(one)  # the first one expires: the copy still has its files
    assert store.load(again).png == result().png


def test_a_stopped_run_is_never_served_as_the_result_of_an_identical_finished_one(tmp_path):
    """A stopped run's result is partial (a picture cut short, a clip of the frames done): a later identical run that
    finishes gets a result of its own, never a link to it."""
    key = "ef" * 32
    store = ResultStore(tmp_path)
    stopped = stores.new_id()
    store.save(stopped, dataclasses.replace(result(), key=key, stopped=True))
    store.keep(stopped, "clip.mp4", b"PARTIAL")
    assert store.copy(stores.new_id(), dataclasses.replace(result(), key=key)) is None
    done = stores.new_id()
    store.save(done, dataclasses.replace(result(), key=key))
    assert not store.load(done).stopped and store.kept(done, "clip.mp4") is None
    assert store.copy(stores.new_id(), dataclasses.replace(result(), key=key)) is not None  # the finished one serves


def test_previews_are_kept_at_most_preview_size_and_the_picture_once(tmp_path):
    big = result(frames=4, noise=True, size=(1200, 800))
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.save(rid, big)
    kept = sorted((tmp_path / "results" / rid / "frames").iterdir())
    assert len(kept) == 3  # the last frame is the picture, kept once
    for f in kept:
        with Image.open(f) as im:
            assert max(im.size) == stores.PREVIEW
    back = store.load(rid)
    assert len(back.frames) == 4 and back.frames[-1].png == big.png and back.frames[0].size == (1200, 800)


def test_a_damaged_picture_is_no_result(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.save(rid, result())
    (tmp_path / "results" / rid / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert ResultStore(tmp_path).load(rid) is None


def test_every_painting_is_kept_as_a_thumbnail(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    two = dataclasses.replace(result(), others=(Image.new("RGB", (800, 600), "yellow"),))
    store.save(rid, two)
    back = store.load(rid)
    assert len(back.others) == 1 and max(back.others[0].size) == stores.THUMB


def test_files_a_killed_process_left_inside_results_are_swept(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.save(rid, result())
    left = [tmp_path / "results" / rid / ".anim-5-0.mp4-dead", tmp_path / "results" / ".pending" / ".x-dead"]
    for f in left:
        f.write_bytes(b"half")
        old = time.time() - 2 * stores.STALE
        os.utime(f, (old, old))
    store.expire()
    assert not any(f.exists() for f in left) and store.load(rid) is not None


def test_a_pending_marker_is_written_whole_and_a_failing_disk_never_raises_into_the_page(tmp_path, monkeypatch):
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.mark_pending(rid, "10.0.0.1", "ROOM1")
    assert store.pending(rid)["room"] == "ROOM1"
    assert [p.name for p in (tmp_path / "results" / ".pending").iterdir()] == [rid]  # no temporary file left

    def broken(self, missing_ok=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "unlink", broken)
    store.forget_pending(rid)  # logged nowhere, raised nowhere: the marker stays for the sweep


def test_a_result_is_shared_once_per_room_even_from_two_tabs(tmp_path):
    store, rid = ResultStore(tmp_path), stores.new_id()
    store.save(rid, result())
    assert store.claim_share(rid, "ROOM1") and not store.claim_share(rid, "ROOM1")  # the second tab
    assert store.claim_share(rid, "ROOM2")  # another room is another share
    store.set_shared(rid, "ROOM1", "Ada")
    store.unclaim_share(rid, "ROOM2")  # its share failed: it can be shared there again
    assert store.shares(rid) == {"ROOM1": "Ada"} and store.claim_share(rid, "ROOM2")
    assert not ResultStore(tmp_path).claim_share(rid, "ROOM1")  # shared: for every process
    assert ResultStore(tmp_path).claim_share(rid, "ROOM2")  # a claim of a server that has gone is taken over


def test_an_encode_waits_a_bounded_time_and_a_bounded_number_of_asks_wait_at_all():
    encoder, held, started = Encoder(1, wait=0.05, waiting=1), threading.Event(), threading.Event()

    def slow():
        started.set()
        held.wait(30)
        return b"a"

    first = threading.Thread(target=encoder.get, args=(("r1", "a.mp4"), slow))
    first.start()
    started.wait(30)
    with pytest.raises(StoreError, match="busy making other animations"):  # waited its time for the slot
        encoder.get(("r2", "b.mp4"), lambda: b"b")
    blocked = Encoder(1, wait=30, waiting=1)
    gate, in_slot = threading.Event(), threading.Event()

    def hold():
        in_slot.set()
        gate.wait(30)
        return b"x"

    threads = [threading.Thread(target=blocked.get, args=(("r1", "a.mp4"), hold))]
    threads[0].start()
    in_slot.wait(30)
    threads.append(threading.Thread(target=blocked.get, args=(("r2", "b.mp4"), lambda: b"y")))
    threads[1].start()
    blocked.queued.wait(30)  # the second waits for the slot
    with pytest.raises(StoreError, match="busy"):  # a third is refused at once, not a third thread held
        blocked.get(("r3", "c.mp4"), lambda: b"z")
    gate.set()
    held.set()
    for t in [first, *threads]:
        t.join(30)
    assert encoder._keys == {} and blocked._keys == {}
