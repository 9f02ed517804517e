"""The Studio: pick a photo and a painting, tune, watch it paint, download the picture and its animation.

Widgets (ui/fields.py) -> Settings -> a job on the shared runner (ui/job_panel.py) -> the result (ui/results.py).
"""

import streamlit as st

from nst_core.classroom.pace import host_default
from nst_core.clips import ClipError
from nst_core.errors import ImageLoadError
from nst_core.images import encode_mask
from nst_core.serve import store as stores
from nst_core.settings import TEMPORAL_WEIGHT
from nst_core.tasks.clip import ClipTask
from nst_core.tasks.still import StyleTask
from ui import results
from ui.classroom import class_room, follow_pace, share_form
from ui.clip import clip_picker
from ui.common import SAMPLES, fmt_seconds, image_picker, md, service
from ui.fields import W, apply, settings_form, widget_values
from ui.job_panel import JobPanel, wait_note
from ui.masks import mask_ui

CLIP_HELP = (
    "Paint a video (MP4, MOV, WebM) or an animated GIF or WebP, frame after frame, without flicker. A class room's "
    "pace says whether its students have the time."
)
st.set_page_config(page_title="Neural Style Studio", page_icon=":material/palette:", layout="wide")
svc = service()
panel = JobPanel("studio", results.live, results.finish, results.failed)
st.title("Neural Style Studio")
st.caption(
    "Paint a photo in the style of a painting, live. The method: Gatys, Ecker & Bethge (2015), "
    "on a VGG19 network trained on ImageNet."
)
results.follow_address(panel)  # ?result=ID: a result (or a run) this tab, another tab or the server had before
room = class_room()
caps = {"size": svc.limits.max_size(svc.device_type), "iterations": svc.limits.max_iterations}
if room and room.pace:  # the room's pace: its settings are the defaults, and a student's upper limits
    base, note = room.pace.settings(), ""
    if not room.teacher:
        caps = {"size": min(caps["size"], room.pace.size), "iterations": min(caps["iterations"], room.pace.iterations)}
        st.fragment(follow_pace, run_every=10)(room.code, room.version)
    if W + "size" in st.session_state and st.session_state.get("pace_seen") != room.version:
        apply(widget_values(base, caps))  # a new pace (or a tab that joins): the page follows
    st.session_state.pace_seen = room.version
else:
    base, note = host_default(svc.cost, caps["size"], svc.device_type)
if W + "size" not in st.session_state:  # the defaults this tab starts from, and why (said once, not on every rerun)
    st.session_state.host_note = note
note = st.session_state.host_note
with st.sidebar:
    st.header("Settings")
    settings = settings_form(caps, st.query_params.to_dict(), base)
    if note:
        st.caption(note)
    st.caption(f"Running on: {svc.caption}")
    lim = svc.limits
    st.caption(
        f"Limits on this server: {caps['size']} px, {caps['iterations']} iterations, "
        f"{fmt_seconds(lim.max_seconds)} per run, {lim.upload_mb} MB uploads."
    )

c1, c2, c3 = st.columns(3)
clip_cap = svc.limits.clip_frames(svc.device_type)
if room and room.pace and not room.teacher:  # a student's clip fits the room's time per student
    clip_cap = min(clip_cap, room.pace.clip_frames())
if clip_cap < 2:  # no clips here (or no more: the room's pace changed): the photo picker, never a stuck toggle
    st.session_state.use_clip = False
with c1:
    clip = None
    if st.toggle("A clip instead of a photo", key="use_clip", disabled=clip_cap < 2, help=CLIP_HELP):
        clip = clip_picker("Each frame starts from the one before, moved along the clip's motion (Ruder et al. 2016).")
        content = clip.first
        frames = st.slider("Frames to paint", 2, clip_cap, min(clip_cap, 24), key="clip_frames")
        rates = sorted({min(clip.info.fps, r) for r in (clip.info.fps, 12.0, 8.0)}, reverse=True)
        fps = st.select_slider("Frames a second", rates, rates[0], key="clip_fps", format_func=lambda r: f"{r:g}")
        steady = st.slider(
            "Steadiness (temporal weight)",
            0.0,
            1000.0,
            TEMPORAL_WEIGHT,
            step=50.0,
            key="clip_temporal",
            help="How strongly each frame keeps to the one before where the motion is reliable; 0 paints each frame "
            "from the one before but lets it drift (it flickers).",
        )
    else:
        if clip_cap < 2:
            st.caption("This room's pace leaves no time for clips." if room and room.pace else "")
        content = image_picker("content", "Photo", "content", "chelsea.png", help="The picture to repaint.")
with c2:
    style = image_picker("style", "Painting", "styles", "starry_night.jpg", help="Whose brushwork to borrow.")
with c3:
    styles, labels = [style], [clip.name if clip else st.session_state.content[0], st.session_state.style[0]]
    if st.toggle("Blend a second painting", key="two_styles"):
        styles.append(
            image_picker("style2", "Second painting", "styles", "the_scream.jpg", help="Mixed with the first.")
        )
        labels.append(st.session_state.style2[0])
        mix = st.slider(
            "Blend", 0.0, 1.0, 0.5, step=0.05, key=W + "blend", help="0: the first painting; 1: the second."
        )
        if settings is not None:
            settings = settings.replace(style_blend=(round(1 - mix, 3), round(mix, 3)))

masks = mask_ui(content, len(styles)) if clip is None else []
if masks and settings is not None:
    settings = settings.replace(masks=tuple(encode_mask(m) for m in masks))

busy = panel.busy()
if svc.memory_line:  # this host's memory caps the size, or cannot hold a run at all: said before Run, not after
    (st.error if svc.cannot_paint else st.caption)(svc.memory_line)
too_big = None
if settings is not None and clip is not None:  # a clip's frames at most the server's clip size
    settings = settings.replace(size=min(settings.size, svc.limits.clip_size(svc.device_type)))
if settings is not None:
    aspect = min(content.size) / max(content.size)
    est = svc.cost.estimate(settings, aspect)
    what = f"{settings.iterations} steps at {settings.size} px"
    if clip is not None:
        try:
            planned = ClipTask.of(clip.data, styles, settings, frames, fps, steady, info=clip.info)
        except (ClipError, ImageLoadError) as e:
            too_big = f"This clip cannot be painted: {md(e)}"
        else:
            est = svc.cost.seconds(*planned.work())
            w, h = planned.size
            what = (
                f"{planned.count} frames at {w}x{h} ({planned.count / planned.fps:.1f} s of the clip): the first "
                f"{settings.iterations} steps, each later one {planned.later_iterations}"
            )
    st.caption(f"Estimated time on this server: about {fmt_seconds(est)} for {what} (measured here){wait_note()}.")
    too_big = too_big or svc.memory_check(settings, aspect)
    if too_big:
        st.warning(too_big)
blocked = busy or settings is None or svc.cannot_paint or bool(too_big)
if st.button("Run", type="primary", icon=":material/play_arrow:", disabled=blocked, key="run"):
    # A student's run within the room's limits, whatever the browser sent (the widgets offer no more).
    settings = settings.replace(
        size=min(settings.size, caps["size"]), iterations=min(settings.iterations, caps["iterations"])
    )
    try:
        if clip is None:
            task = StyleTask.of(content, styles, settings)
        else:
            frames = max(1, min(frames, clip_cap))  # whatever the browser sent
            task = ClipTask.of(clip.data, styles, settings, frames, fps, steady, info=clip.info)
    except (ImageLoadError, ClipError) as e:
        st.error(f"These pictures cannot run at this size: {md(e)}")
    else:
        rid = stores.new_id()  # the result's address, from the moment the run is queued
        run = results.record(settings, content, styles, labels, masks or [], rid, room and room.code)
        asked = results.Asked(rid, run, content, styles, masks or [])
        first = bool(room and room.teacher)
        job = panel.submit(task, " + ".join(labels), asked, room=room and room.code, first=first, on_end=run.ended)
        results.started(panel, job, asked)
        busy = panel.busy()
panel.show()
if panel.result and not busy:
    results.result_view(panel.result)
    if st.session_state.get("room"):
        share_form(panel.result, results.result_store())
    results.result_tabs(panel.result)
results.gallery_view()
with st.expander("About the sample images and the method"):
    st.markdown((SAMPLES / "LICENSES.md").read_text())
