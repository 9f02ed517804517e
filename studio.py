"""Streamlit pieces shared by the main page and the Lab: the cached engine, image pickers, job display."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import threading
import time
from pathlib import Path

import streamlit as st
from PIL import Image

from nst_core.errors import ImageLoadError
from nst_core.images import load_image
from nst_core.jobs import QUEUED, RUNNING, Busy, Engine, Job, one_line

ROOT = Path(__file__).resolve().parent
SAMPLES = ROOT / "samples"
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]


@st.cache_resource(
    show_spinner="Starting the workers and loading VGG19 (once per server)...", on_release=lambda eng: eng.close()
)
def _engine() -> Engine:
    log = logging.getLogger("nst_core")
    if not log.handlers:  # one line per finished run in the server's log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        return Engine.start(
            os.environ.get("NST_WEIGHTS", "original"),
            os.environ.get("NST_DEVICE", "auto"),
            backend=os.environ.get("NST_RUNNER", "process"),
        )
    except Exception as e:
        log.error("the runner could not start: %s", one_line(e))
        raise


def engine() -> Engine:
    """One runner (with its workers) and one cost model per server, shared by all sessions. If it cannot
    start (a Ray cluster out of reach, say), the page says why in one line; the next visit tries again."""
    try:
        return _engine()
    except Exception as e:
        st.error(f"The server could not start its runner: {one_line(e)}")
        st.stop()


engine.clear = _engine.clear  # a new engine at the next call (tests, a changed configuration)


@st.cache_resource
def open_class_wall():
    """The class wall's storage (nst_core.wall), one per server; raises if its data directory is unusable."""
    from nst_core.limits import Limits
    from nst_core.wall import Wall

    wall = Wall(os.environ.get("NST_DATA_DIR") or ROOT / "data", Limits.from_env())

    def clean_up() -> None:  # rooms past their time go even when nobody opens a page
        while True:
            with contextlib.suppress(Exception):
                wall.expire()
            time.sleep(600)

    threading.Thread(target=clean_up, name="nst-wall-expiry", daemon=True).start()
    return wall


def class_wall():
    """open_class_wall(), or one line on the page (and nothing more of it) if the data directory is unusable."""
    from nst_core.wall import WallError

    try:
        return open_class_wall()
    except (WallError, ValueError) as e:
        st.error(f"The class wall is not available: {e}.")
        st.stop()


def sentence(e: BaseException) -> str:
    """A one-line error as a sentence: capital first letter, full stop."""
    text = str(e).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def session_id() -> str:
    """This browser tab's session: it may have one run waiting or running, on any page."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else "local"


def submit(eng: Engine, task, label: str, estimate: float) -> Job | None:
    """Queue a run for this session; None (with the reason shown) if it already has one."""
    try:
        return eng.runner.submit(task, label, estimate, owner=session_id())
    except Busy as e:
        st.error(f"Not started: {e}.")
        return None


@st.cache_resource
def sample_image(path: str) -> Image.Image:
    return load_image(path)


@st.cache_data
def sample_credits() -> dict[str, str]:
    """'content/chelsea.png' -> 'Chelsea the cat — CC0, photographer Stefan van der Walt' (from LICENSES.md)."""
    credits = {}
    for line in (SAMPLES / "LICENSES.md").read_text().splitlines():
        m = re.match(r"\|\s*((?:content|styles)/[^|]+?)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|", line)
        if m:
            credits[m.group(1)] = f"{m.group(2)} — {m.group(3)}"
    return credits


def samples(kind: str) -> list[str]:
    return sorted(p.name for p in (SAMPLES / kind).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def pretty(name: str) -> str:
    return Path(name).stem.replace("_", " ").title()


def image_picker(slot: str, title: str, kind: str, default: str, help: str, thumb: int = 220) -> Image.Image:
    """A sample or an upload. A bad upload shows an error and leaves the previous image in place."""
    names = samples(kind)
    if slot not in st.session_state:
        st.session_state[slot] = (pretty(default), sample_image(str(SAMPLES / kind / default)))
    st.markdown(f"**{title}**")
    mode = st.radio(
        title, ["Sample", "Upload"], key=f"{slot}_mode", horizontal=True, label_visibility="collapsed", help=help
    )
    if mode == "Sample":
        name = st.selectbox(
            f"{title} sample",
            names,
            index=names.index(default),
            key=f"{slot}_sample",
            format_func=pretty,
            label_visibility="collapsed",
        )
        st.session_state[slot] = (pretty(name), sample_image(str(SAMPLES / kind / name)))
        credit = sample_credits().get(f"{kind}/{name}")
    else:
        credit = None
        limits = engine().limits
        up = st.file_uploader(
            f"Upload a {title.lower()}",
            type=UPLOAD_TYPES,
            key=f"{slot}_upload",
            help=f"JPEG, PNG, WebP, GIF, BMP or TIFF, up to {limits.upload_mb} MB",
        )
        if up is not None and st.session_state.get(f"{slot}_upload_id") != up.file_id:
            st.session_state[f"{slot}_upload_id"] = up.file_id
            try:
                if up.size > limits.upload_mb * 2**20:
                    raise ImageLoadError(f"{up.name} is {up.size / 2**20:.1f} MB; the limit is {limits.upload_mb} MB")
                st.session_state[f"{slot}_uploaded"] = (
                    up.name,
                    load_image(up.getvalue(), limits.max_pixels, name=up.name),
                )
                st.session_state.pop(f"{slot}_error", None)
            except ImageLoadError as e:
                st.session_state[f"{slot}_error"] = f"{e} — keeping the previous image."
        if f"{slot}_uploaded" in st.session_state:  # the last good upload, also after a detour to the samples
            st.session_state[slot] = st.session_state[f"{slot}_uploaded"]
        if st.session_state.get(f"{slot}_error"):
            st.error(st.session_state[f"{slot}_error"])
    label, img = st.session_state[slot]
    st.image(img, caption=f"{label} ({img.width}x{img.height})", width=thumb)
    if credit:
        st.caption(credit)
    return img


def queue_status(eng: Engine, job: Job) -> str | None:
    pos = eng.runner.position(job)
    if pos:
        stats = eng.runner.stats()
        wait = eng.runner.wait_seconds(job)
        return (
            f"Waiting for a free slot: you are number {pos} in the queue ({stats['running']} run(s) in progress). "
            f"Starts in about {fmt_seconds(wait)}, done in about {fmt_seconds(wait + job.estimate)}."
        )
    return None


def wait_note(eng: Engine) -> str:
    """For the estimate before Run: the queue's wait, if any."""
    wait = eng.runner.wait_seconds()
    return f" plus about {fmt_seconds(wait)} waiting for the runs ahead in the queue" if wait >= 1 else ""


@functools.lru_cache(maxsize=64)
def preview(png: bytes, width: int) -> bytes:
    """The PNG, scaled down once if it is wider than `width`: st.image then sends it as it is, with no
    decoding or re-encoding on every poll (it re-encodes anything wider, or anything not a PNG)."""
    im = Image.open(io.BytesIO(png))
    if im.width <= width:
        return png
    im = im.convert("RGB").resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def show_png(where, png: bytes, width: int, caption: str | None = None) -> None:
    where.image(preview(png, width), caption=caption, width=width, output_format="PNG")


def fmt_seconds(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


POLL_QUEUED, POLL_RUNNING = 3.0, 1.0  # seconds between a page's polls while its run waits / runs


def poll(view, job: Job) -> None:
    """Run `view` as a fragment that polls: every second while the job runs, every 3 s while it waits
    (a waiting page has little news; thirty of them polling each second cost the server and browsers)."""
    queued = job.state == QUEUED
    st.session_state["poll_queued"] = queued
    st.fragment(view, run_every=POLL_QUEUED if queued else POLL_RUNNING)()


def job_progress(eng: Engine, job: Job):
    """Queue place or progress bar, and a Stop button; returns the job's snapshot. Call it while polling."""
    job.heartbeat()
    state, latest, image, image_step, history = job.snapshot()
    if state != QUEUED and st.session_state.get("poll_queued"):
        st.rerun()  # it has started: poll faster from now on (a full rerun makes the fragment anew)
    if state == QUEUED:
        st.info(queue_status(eng, job) or "Starting...")
    elif state == RUNNING and latest is not None:
        left = job.seconds_left()
        st.progress(
            latest.step / latest.total,
            text=f"Step {latest.step} of {latest.total} · {latest.size[0]}x{latest.size[1]} px · "
            f"{fmt_seconds(latest.elapsed)} elapsed · about {fmt_seconds(left)} left",
        )
    elif state == RUNNING:
        st.progress(0.0, text="Computing the targets...")
    if state in (QUEUED, RUNNING) and st.button(
        "Stop", key="stop", icon=":material/stop:", help="Stop now and keep the picture so far."
    ):
        job.cancel("stopped by you")
    return state, latest, image, image_step, history
