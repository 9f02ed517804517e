"""The Studio's run, drawn: the live view, the result (pictures, downloads, before/after, every saved step,
losses) and the session's gallery; a result's address (?result=ID, kept on disk by nst_core.serve.store)."""

from __future__ import annotations

import functools
import io
import json
import threading
import time
from dataclasses import dataclass, field, replace

import streamlit as st
from PIL import Image

from nst_core import clips
from nst_core.animation import KINDS, gif_frames, intro_card, make_animation
from nst_core.images import png_bytes
from nst_core.serve import store as stores
from nst_core.serve.job import DONE, Job
from nst_core.serve.kept import Kept
from nst_core.serve.service import log
from nst_core.serve.store import Encoder, ResultStore, Stored, StoreError
from nst_core.settings import run_record

from .common import client_address, data_dir, md, service, show_png
from .job_panel import JobPanel, Progress
from .masks import overlay

GALLERY_SIZE = 6
DL = ":material/download:"
CHART = {
    "height": 220,
    "mark": {"type": "line"},
    "transform": [{"fold": ["content", "style", "total"], "as": ["loss", "value"]}],
    "encoding": {
        "x": {"field": "step", "type": "quantitative"},
        "y": {"field": "value", "type": "quantitative", "title": "loss"},
        "color": {"field": "loss", "type": "nominal"},
    },
}


@dataclass(frozen=True, eq=False)
class Result:
    """A Studio result as a page shows it: made when its run ends, or read back from its address (then the photo and
    paintings are thumbnails and the steps the kept ones). `shared` is the one part that changes (room -> the name
    it was shared under, '-' for none), so that a share made on this page is shown without a reload."""

    id: str | None  # its address (?result=ID); None when it has none
    image: Image.Image
    png: bytes  # the picture, with its run record inside
    gif: bytes  # the whole run's animation, made when the run ended
    frames: list  # the saved steps (Frames)
    info: dict  # the run record (nst_core.settings.run_record)
    content: Image.Image
    styles: list[Image.Image]
    label: str  # "photo × painting + painting"
    paintings: str
    history: list[dict]  # the losses per step
    stopped: bool  # ended before its last step (Stop, the time limit)
    masks: Image.Image | None
    room: str | None  # the class room it was made in
    shared: dict[str, str] = field(default_factory=dict)
    no_address: str | None = None  # why the store could not keep it, when it could not
    clip: bytes | None = None  # a painted clip (MP4, the source's audio kept); its figures in info["clip"]
    no_clip: str | None = None  # why a clip result's MP4 is not kept under its address

    @property
    def settings_json(self) -> str:
        return json.dumps(self.info, indent=2)


@dataclass(frozen=True)
class Pictured:
    """One of this session's pictures in its gallery: small, with what its downloads need (the MP4 and WebP are
    made from the GIF when asked for)."""

    id: str  # apart from the others' in the widgets' keys
    thumb: Image.Image
    png: bytes
    gif: bytes
    label: str
    masks: Image.Image | None


def loss_chart(history: list[dict], points: int = 160) -> None:
    """The losses per step. A plain Vega-Lite spec and at most `points` rows: it is drawn on
    every poll, and st.line_chart's Altair build costs about ten times as much."""
    if len(history) > 1:
        rows = history[:: max(1, len(history) // points)] + history[-1:]
        data = {k: [r[k] for r in rows] for k in ("step", "content", "style", "total")}
        st.vega_lite_chart(data, CHART, width="stretch")


def live(p: Progress) -> None:
    """The picture so far and the losses, on every poll; for a clip, the frame being painted and the last ones done."""
    cols = st.columns([3, 2])
    if p.image is not None:
        clip = p.latest.part if p.latest is not None else None
        where = f"Frame {clip[0]} of {clip[1]}, step {p.image_step}" if clip else f"Step {p.image_step}"
        show_png(cols[0], p.image, 480, caption=where)
    with cols[1]:
        loss_chart(p.history)
    if p.strip:
        st.caption(f"{p.outputs} frames painted:")
        st.image([s.png for s in p.strip], width=96, caption=[str(s.part[0]) for s in p.strip])


CLIP = "clip.mp4"  # a painted clip, kept beside its result
CLIP_NOT_KEPT = (
    "This painted clip is too big to keep under this result's address (NST_RESULT_MB): download it now; the address "
    "keeps its first frame."
)


def clip_record(painted: list, fps: float, count: int) -> dict:
    """A painted clip's figures for its record: frames, rate, each frame's seconds and losses, and the warping error
    (Lai et al. 2018) of the painted clip beside the input clip's own, its floor."""
    ends = [s.elapsed for s in painted]
    seconds = [round(b - a, 2) for a, b in zip([0.0, *ends], ends)]
    pairs = [s.losses for s in painted[1:] if "warping" in s.losses]
    mean = lambda k: round(sum(x[k] for x in pairs) / len(pairs), 5) if pairs else None  # noqa: E731
    return {
        "frames": len(painted),
        "of": count,
        "fps": fps,
        "warping_error": mean("warping"),
        "input_warping_error": mean("floor"),
        "frame_seconds": seconds,
        "frame_losses": [{k: round(v, 5) for k, v in s.losses.items()} for s in painted],
    }


# ---------------------------------------------------------------- results on disk, and their addresses

_lock = threading.Lock()
_store: Kept[ResultStore] = Kept(ResultStore, ResultStore.expire, "nst-result-expiry")
_fallback = Encoder(1)  # the encodes of a session's results that have no place on disk
# The runs waiting or painting in this server process by their result id, so that a reload (a new session, whose page
# has the id in its address) watches the same run. Each leaves when its run ends (Run.ended), never holding uploads.
_runs: dict[str, tuple[Job, Asked]] = {}
RESTARTED = "The server restarted before your run finished: press Run again."
UNKNOWN = "This result has expired or does not exist."


def result_store() -> ResultStore | None:
    """The server's one result store (NST_DATA_DIR/results), kept in this module with a thread that deletes expired
    results every 10 minutes; None (logged) if the data directory is unusable: the Studio works without addresses."""
    try:
        return _store.get(data_dir(), service().limits)
    except StoreError as e:
        log.error("results have no addresses: %s", e)
        return None


def forget() -> None:
    """As a new server process would start: no store open, no runs known (tests; a changed NST_DATA_DIR)."""
    with _lock:
        _store.forget()
        _runs.clear()


def encoder() -> Encoder:
    store = result_store()
    return store.encoder if store is not None else _fallback


@dataclass(eq=False)
class Run:
    """What a run's result is made of besides its frames, given when Run is pressed: small copies of the photo and
    paintings (never the uploads), the labels and settings, the room and client. The result is made once, by
    whichever comes first: the runner's thread when the run ends (ended: so a result whose page was closed is kept)
    or the page that watched it (settle). Only store work: no Streamlit here."""

    rid: str | None
    store: ResultStore | None
    settings: object
    weights: str
    device: str
    labels: list[str]
    photo: Image.Image
    paintings: list[Image.Image]
    masks: Image.Image | None
    room: str | None
    client: str | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    result: Result | None = None

    def ended(self, job: Job) -> None:
        """The runner's on_end: the result kept on disk (or the run's pending marker removed)."""
        with _lock:
            _runs.pop(self.rid, None)
        if self.store is None or not self.rid:
            return  # no address: the page that watches the run makes its result
        if job.finished_ok:
            self.settle(job)
        else:
            self.store.forget_pending(self.rid)

    def settle(self, job: Job) -> Result:
        """The result of the ended `job`, made and kept once."""
        with self.lock:
            if self.result is None:
                self.result = self._make(job)
            return self.result

    def _make(self, job: Job) -> Result:
        frames = job.final_frames()
        last = frames[-1]
        painted = list(job.outputs)
        end = job.ended_at()  # a clip's steps and seconds are the whole clip's
        info = run_record(self.settings, self.weights, self.device, end.step, round(end.elapsed, 1))
        if painted:  # the clip's frames out of those the run had (fewer than asked if the clip was shorter)
            info["clip"] = clip_record(painted, job.task.fps, painted[-1].part[1])
        own = {
            "label": self.labels[0] + " × " + " + ".join(self.labels[1:]),
            "paintings": " + ".join(self.labels[1:]),
            "stopped": job.state != DONE,
            "room": self.room,
            "client": self.client,
            "key": job.key if job.state == DONE else None,  # a stopped run is never another run's result
        }
        store, rid = self.store, self.rid
        if store is not None and rid and own["key"] is not None:
            blank = Image.new("RGB", (1, 1))
            same = Stored(b"", b"", (), info, history=(), photo=blank, painting=blank, **own)
            kept = store.copy(rid, same)  # the same run kept already (a served run): its files, not a new copy
            if kept is not None:
                clip = (store.kept(rid, CLIP) or painted_clip(job)) if painted else None
                return keep_clip(store, from_stored(rid, kept, clip))
        clip = painted_clip(job) if painted else None
        image = last.image()
        pictures = [f.image() for f in frames[:-1]] + [image]
        result = Stored(
            png=png_bytes(image, info),
            gif=make_animation("gif", pictures),  # once per run, on the run's own thread (not an encode slot)
            frames=tuple(frames),
            info=info,
            history=tuple(job.history),
            photo=self.photo,
            painting=self.paintings[0],
            others=tuple(self.paintings[1:]),
            masks=self.masks,
            image=image,
            **own,
        )
        if store is None or not rid:
            return from_stored(None, result, clip)
        try:
            kept = store.save(rid, result)
        except StoreError as e:
            return replace(from_stored(None, result, clip), no_address=str(e))
        return keep_clip(store, from_stored(rid, kept, clip))


def painted_clip(job: Job) -> bytes:
    """The painted frames as an MP4 at the clip's rate, with the source's sound for the frames painted: encoded once,
    on the run's thread (a served twin's result reuses the kept file)."""
    task, pictures = job.task, [s.image() for s in job.outputs]
    return clips.write_mp4(pictures, task.fps, audio_from=task.clip, seconds=len(pictures) / task.fps)


def keep_clip(store: ResultStore, r: Result) -> Result:
    """A painted clip kept beside its result, within the result's bytes; if it does not fit, the page that made it
    still shows it, and says it is not kept."""
    if r.clip is None or store.kept(r.id, CLIP) is not None or store.keep(r.id, CLIP, r.clip):
        return r
    return replace(r, no_clip=CLIP_NOT_KEPT)


@dataclass(eq=False)
class Asked:
    """A run the Studio submitted, as its job panel keeps it beside the job: the result's address (from the moment
    the run is queued), its Run, the pictures as uploaded (the result's before/after and full-size steps) and the
    result shown before it (a run that fails puts that one's address back). A run watched after a reload has only
    its address and Run."""

    result_id: str | None
    run: Run
    content: Image.Image | None = None
    styles: list[Image.Image] = field(default_factory=list)
    masks: list[Image.Image] = field(default_factory=list)
    shown: str | None = None


def record(
    settings, content: Image.Image, styles: list, labels: list[str], masks: list, result_id: str, room: str | None
) -> Run:
    """A run about to be submitted (its address `result_id`): what its result is made of, and its pending marker on
    disk (a restart can then say the run was lost)."""
    svc, store = service(), result_store()
    rid = result_id if store is not None else None
    client = client_address(svc.limits)
    if rid:
        try:
            store.mark_pending(rid, client, room)
        except OSError as e:
            log.error("no pending marker for a run: %s", e)
    return Run(
        rid=rid,
        store=store,
        settings=settings,
        weights=svc.weights,
        device=svc.caption,
        labels=list(labels),
        photo=stores.thumb(content),
        paintings=[stores.thumb(im) for im in styles],
        masks=overlay(content, masks, stores.THUMB) if masks else None,
        room=room,
        client=client,
    )


def started(panel: JobPanel, job: Job | None, asked: Asked) -> None:
    """A run was submitted (or refused: None, and its pending marker goes): its id goes in the address at
    once (with its room, which a page reached from the sidebar has only in the session), so that a reload finds the
    run, and the result shown before is remembered (a run that fails puts its address back)."""
    run = asked.run
    if job is None:
        if run.store is not None and run.rid:
            run.store.forget_pending(run.rid)
        return
    shown = panel.result
    asked.shown = shown.id if shown else None
    if not run.rid:
        return
    with _lock:
        if job.active:  # one that has ended (served at once) has its result already
            _runs[run.rid] = (job, Asked(run.rid, run))
    st.query_params["result"] = run.rid
    if run.room:
        st.query_params["room"] = run.room


def failed(asked: Asked | None) -> None:
    """A run ended without a picture: the address names the result shown before it, if any."""
    rid = asked and asked.result_id
    if rid and st.query_params.get("result") == rid:
        if asked.shown:
            st.query_params["result"] = asked.shown
        else:
            del st.query_params["result"]


def follow_address(panel: JobPanel) -> None:
    """The result the address names (?result=ID): shown with its downloads (read from disk, or from the store's
    memory of it), or the run it names watched here (a reload), or one line saying why not. The id is checked before
    the disk is read and never shown. A result made in a class room puts its room in the address (when it has none),
    so its share form is there after a reload or a restart. Call it before class_room()."""
    rid = st.query_params.get("result")
    panel.busy()  # a run that ended between reruns is finished first (its result has this id)
    r, asked = panel.result, panel.meta
    if rid is None or (r is not None and r.id == rid) or (asked is not None and asked.result_id == rid):
        return
    store = result_store() if stores.valid(rid) else None
    saved = store.load(rid) if store is not None else None
    if saved is not None:
        panel.keep(from_stored(rid, saved, store.kept(rid, CLIP)))
        if saved.room and "room" not in st.query_params and not st.session_state.get("room"):
            st.query_params["room"] = saved.room
        return
    if panel.job is None and store is not None:
        with _lock:
            run = _runs.get(rid)
        if run is not None:
            panel.adopt(*run)
            return
        marker = store.pending(rid)
        if marker is not None and marker.get("boot") != store.boot:
            st.warning(RESTARTED)
            return
    st.warning(UNKNOWN)


def from_stored(rid: str | None, saved: Stored, clip: bytes | None = None) -> Result:
    """A result as a page shows it, from what is kept (the photo and paintings as thumbnails) and its painted clip."""
    image = saved.image if saved.image is not None else Image.open(io.BytesIO(saved.png)).convert("RGB")
    return Result(
        id=rid,
        image=image,
        png=saved.png,
        gif=saved.gif,
        frames=list(saved.frames),
        info=saved.info,
        content=saved.photo,
        styles=[saved.painting, *saved.others],
        label=saved.label,
        paintings=saved.paintings,
        history=list(saved.history),
        stopped=saved.stopped,
        masks=saved.masks,
        room=saved.room,
        shared=dict(saved.shared or {}),
        clip=clip,
    )


# ---------------------------------------------------------------- the result


def finish(job: Job, asked: Asked) -> Result:
    """The session's result from a finished job: the one kept on disk under its address (made when the run ended,
    or now), shown with the session's own pictures and full-size steps where it has them; a copy in the gallery."""
    with st.spinner("Making the GIF..."):  # MP4 and WebP are made when asked for: the server only serves
        kept = asked.run.settle(job)
    result = replace(kept, shared=dict(kept.shared))
    if asked.content is not None:  # this session's pictures and full-size steps (a reload has only the kept)
        result = replace(result, content=asked.content, styles=asked.styles, frames=job.final_frames())
    rid = asked.result_id
    if result.no_address and rid and st.query_params.get("result") == rid:
        del st.query_params["result"]
    gallery = st.session_state.setdefault("gallery", [])
    thumb = result.image.copy()
    thumb.thumbnail((240, 240))
    masks = overlay(asked.content, asked.masks, 120) if asked.masks else None
    gallery.insert(0, Pictured(f"{time.time():.3f}", thumb, result.png, result.gif, result.label, masks))
    del gallery[GALLERY_SIZE:]  # older results (and their media) are released
    return result


def before_after(content: Image.Image, result: Image.Image, split: int) -> Image.Image:
    """The photo on the left of the split, the result on the right."""
    before = content.resize(result.size, Image.Resampling.LANCZOS)
    out = result.copy()
    x = round(result.width * split / 100)
    out.paste(before.crop((0, 0, x, result.height)), (0, 0))
    if 0 < x < result.width:
        out.paste((255, 255, 255), (max(0, x - 1), 0, x + 1, result.height))
    return out


def result_view(r: Result) -> None:
    st.subheader("Result" + (" (stopped early)" if r.stopped else ""))
    if r.id:
        hours = service().limits.result_hours
        st.caption(
            f"This page's address is this result's link: it shows the result again for {hours:g} hours, also in "
            "another tab or after the server restarts (only the picture, its steps and settings are kept, with "
            "small copies of the photo and the painting)."
        )
    elif r.no_address:
        st.caption(f"This result has no link of its own: {md(r.no_address)}.")
    if r.clip is not None:
        clip_view(r)
    elif "clip" in r.info:
        st.warning(CLIP_NOT_KEPT.split(":")[0] + ": only its first frame is kept.")
    c1, c2, c3 = st.columns(3)
    c1.image(r.content, caption="Photo" if r.clip is None else "The clip's first frame", width="stretch")
    c2.image(r.styles[0], caption="Painting" if len(r.styles) == 1 else "Paintings (first)", width="stretch")
    painted = "First frame painted" if r.clip is not None else "Result"
    c3.image(r.image, caption=f"{painted} after {r.frames[-1].step} steps", width="stretch")
    if r.masks is not None:
        c1.image(r.masks, caption="Where the paintings went (the masks, saved in the PNG and the JSON)")
    d1, _, d3 = st.columns(3)
    d1.download_button(
        "Picture (PNG)",
        r.png,
        "style-transfer.png",
        "image/png",
        key="dl_png",
        icon=DL,
        help="The settings are stored inside the PNG.",
    )
    d3.download_button("Settings (JSON)", r.settings_json, "settings.json", "application/json", key="dl_json", icon=DL)
    intro = st.checkbox(
        "Open the animations with the photo and the painting",
        key="intro",
        help="One and a half seconds of the two pictures side by side, so a shared clip explains itself.",
    )
    animation_buttons(r, len(r.frames), intro, "all")


def clip_view(r: Result) -> None:
    """The painted clip playing, its downloads, and how steady it is: its warping error beside the input clip's."""
    c = r.info["clip"]
    st.video(r.clip, loop=True, autoplay=True, muted=True)
    shown = f"{c['frames']} frames at {c['fps']:g} frames a second" + (
        f" (stopped: {c['frames']} of {c['of']})" if c["frames"] < c["of"] else ""
    )
    if c["warping_error"] is not None:
        shown += (
            f" · warping error {c['warping_error']:.4f}, the input clip's own {c['input_warping_error']:.4f}: how much"
            " each painted frame differs from the one before moved along the clip's motion (0 is perfectly steady;"
            " the input's own is as low as a painted clip can go)"
        )
    st.caption(shown)
    if r.no_clip:
        st.warning(r.no_clip)
    helps = {"mp4": "H.264 with the clip's sound.", "gif": "Looping; 256 colours.", "webp": "Looping, full colour."}
    for col, kind in zip(st.columns(3), ("mp4", "gif", "webp"), strict=True):
        col.download_button(
            f"Painted clip ({ {'mp4': 'MP4', 'gif': 'GIF', 'webp': 'WebP'}[kind] })",
            r.clip if kind == "mp4" else functools.partial(clip_as, r, kind),
            f"painted-clip.{kind}",
            KINDS[kind],
            key=f"dl_clip_{kind}",
            icon=DL,
            help=helps[kind],
            on_click="ignore",
        )
    st.markdown("**The first frame, and how it was painted:**")


def clip_as(r: Result, kind: str) -> bytes:
    """The painted clip as a GIF or WebP, made from its MP4 when a download asks for it (once per result, one encode
    at a time on this server)."""
    fps = r.info["clip"]["fps"]

    def encode() -> bytes:
        frames = list(clips.read_frames(r.clip, max_frames=r.info["clip"]["frames"], max_side=None, fps=fps))
        return clips.write_clip(kind, frames, fps)

    store = result_store()
    if r.id and store is not None:
        return store.animation(r.id, f"clip.{kind}", encode)
    return encoder().get((f"session-{id(r)}", f"clip.{kind}"), encode)


def result_tabs(r: Result) -> None:
    tab1, tab2, tab3 = st.tabs(["Before / after", "Every saved step", "Losses"])
    with tab1:
        split = st.slider(
            "Photo ⟷ result", 0, 100, 50, key="split", help="Drag to wipe between the photo and the result."
        )
        st.image(before_after(r.content, r.image, split), width=560)
    with tab2:
        frames = r.frames
        i = st.select_slider(
            "Step",
            options=list(range(len(frames))),
            value=len(frames) - 1,
            key="scrub",
            format_func=lambda j: str(frames[j].step),
            help="Earlier steps are sometimes the more striking picture.",
        )
        f = frames[i]
        show_png(st, f.png, 560, caption=f"Step {f.step} of {f.total} ({f.size[0]}x{f.size[1]})")
        st.download_button(
            f"This step as PNG (step {f.step})",
            png_bytes(f.image(), {**r.info, "steps": f.step}),
            f"style-transfer-step{f.step}.png",
            "image/png",
            key="dl_frame",
            icon=DL,
        )
        if i > 0:
            st.caption(f"The optimisation up to step {f.step}:")
            animation_buttons(r, i + 1, st.session_state.get("intro", False), "upto")
    with tab3:
        loss_chart(r.history)
        st.caption(
            "Content loss: how far the picture's deep features are from the photo's. Style loss: how far "
            "its texture statistics (Gram matrices) are from the painting's. Both are relative errors."
        )


def animation_buttons(r: Result, n: int, intro: bool, key: str) -> None:
    """GIF, MP4 and WebP of the first n saved steps (the whole run's GIF is made when it ends; others on click)."""
    labels = {"gif": "Animation (GIF)", "mp4": "Video (MP4)", "webp": "Animation (WebP)"}
    helps = {
        "gif": "Every saved step, looping; 256 colours.",
        "mp4": "H.264: plays in browsers and on phones.",
        "webp": "Full colour, looping, smaller than the GIF.",
    }
    for col, kind in zip(st.columns(3), KINDS, strict=True):
        whole_gif = kind == "gif" and n == len(r.frames) and not intro
        col.download_button(
            labels[kind],
            r.gif if whole_gif else functools.partial(animation, r, kind, n, intro),
            f"style-transfer.{kind}",
            KINDS[kind],
            key=f"dl_{key}_{kind}",
            icon=DL,
            help=helps[kind],
            on_click="ignore",
        )


def animation(r: Result, kind: str, n: int, intro: bool) -> bytes:
    """Result `r`'s `kind` animation of its first n saved steps, made when a download asks for it: once per result
    (kept beside it on disk, within its bytes), and one encode at a time on this server (NST_ENCODES_AT_ONCE)."""

    # Named by the frames it is made of: a page with the full-size steps and one with the kept (thinned) ones differ.
    name, store = f"anim-{n}of{len(r.frames)}-{int(intro)}.{kind}", result_store()
    kept = bool(r.id) and store is not None

    def encode() -> bytes:
        pictures = [f.image() for f in r.frames[:n]]
        photo, painting = r.content, r.styles[0]
        if kept:  # kept on disk: the photo no larger than its thumbnail there
            photo, painting = stores.thumb(photo), stores.thumb(painting)
        card = intro_card(photo, painting, pictures[-1].size) if intro else None
        return make_animation(kind, pictures, card)

    if kept:
        return store.animation(r.id, name, encode)
    return encoder().get((f"session-{id(r)}", name), encode)


def from_gif(gif: bytes, kind: str, key: str):
    """A gallery entry's MP4 or WebP, made when clicked from its GIF's frames (256 colours): the gallery
    keeps no full-colour frames, which for six 512 px runs would be over 100 MB per session."""
    return lambda: encoder().get((f"gallery-{key}", kind), lambda: make_animation(kind, gif_frames(gif)))


def gallery_view() -> None:
    gallery = st.session_state.get("gallery", [])
    if len(gallery) < 2:
        return
    st.subheader("This session's pictures")
    cols = st.columns(GALLERY_SIZE)
    for col, g in zip(cols, gallery):
        col.image(g.thumb, caption=md(g.label))
        if g.masks is not None:
            col.image(g.masks, caption="its mask")
        col.download_button("PNG", g.png, "style-transfer.png", "image/png", key=f"g_png_{g.id}")
        for kind, mime in KINDS.items():
            col.download_button(
                kind.upper(),
                g.gif if kind == "gif" else from_gif(g.gif, kind, g.id),
                f"style-transfer.{kind}",
                mime,
                key=f"g_{kind}_{g.id}",
                on_click="ignore",
            )
