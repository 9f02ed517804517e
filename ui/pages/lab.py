"""The classroom Lab: experiments that show, one picture at a time, why style transfer works.

The experiments are a table (ui/experiments.py); this page draws the chosen one. An optimising experiment's Plan
(nst_core.tasks.lab) runs through the same job panel and runner as the Studio; an immediate one draws itself.
"""

from __future__ import annotations

import streamlit as st

from nst_core.animation import make_gif
from nst_core.images import png_bytes
from nst_core.tasks import lab
from ui.classroom import class_room
from ui.common import fmt_seconds, service, show_png
from ui.experiments import EXPERIMENTS, Experiment, LabResult
from ui.job_panel import JobPanel, Progress, wait_note

st.set_page_config(page_title="Lab · Neural Style Studio", page_icon=":material/science:", layout="wide")


def live(p: Progress) -> None:
    if p.image is not None:
        show_png(st, p.image, 1200)


def finish(job, asked: Experiment) -> LabResult:
    last = job.final_frames()[-1]
    image = last.image()
    return LabResult(
        key=asked.key,
        image=image,
        png=png_bytes(image, {"experiment": asked.title}),
        gif=make_gif([f.image() for f in job.final_frames()]) if asked.anim else None,
        caption=f"{asked.title}: {last.step} of {last.total} steps in {fmt_seconds(last.elapsed)}"
        + (f" ({job.reason})" if job.reason else "")
        + flicker_line(last.losses),
    )


def flicker_line(losses: dict) -> str:
    """Experiment 7's figures, when its last step carries them."""
    if "alone" not in losses:
        return ""
    return (
        f". Warping error: each frame alone {losses['alone']:.4f}, with the temporal term {losses['temporal']:.4f}"
        f" (the photo's frames: {losses['floor']:.4f})."
    )


panel: JobPanel[LabResult, Experiment] = JobPanel("lab", live, finish)


def run_panel(e: Experiment, plan: lab.Plan) -> None:
    """Estimate, Run, live progress and downloads for one optimising experiment."""
    svc, key = service(), e.key
    st.caption(
        f"About {fmt_seconds(svc.cost.seconds(*plan.work()))} on this server{wait_note()} ({plan.iterations} "
        f"steps in all; {svc.caption})."
    )
    busy = panel.busy()
    if st.button("Run the experiment", type="primary", icon=":material/play_arrow:", disabled=busy, key=f"run_{key}"):
        room = st.session_state.get("lab_room")
        panel.submit(plan, plan.title, e, room=room and room.code, first=bool(room and room.teacher))
    panel.show()
    result = panel.result
    if result and result.key == key and not panel.busy():
        st.image(result.image, caption=result.caption)
        c1, c2 = st.columns(2)
        download = {"icon": ":material/download:"}
        c1.download_button("Picture (PNG)", result.png, f"lab-{key}.png", "image/png", key=f"dl_png_{key}", **download)
        if result.gif:
            c2.download_button(
                "Animation (GIF)", result.gif, f"lab-{key}.gif", "image/gif", key=f"dl_gif_{key}", **download
            )


def main() -> None:
    service()
    st.title("The Lab")
    st.session_state.lab_room = class_room()  # a teacher's link (?room=...&key=...) puts the demo's runs first
    st.caption("Why does style transfer work? Seven experiments, each a picture a class can make live.")
    by_label = {e.label: e for e in EXPERIMENTS}
    e = by_label[st.radio("Experiment", list(by_label), key="lab_experiment", horizontal=True)]
    st.markdown(e.text)
    if e.plan is None:
        e.draw()
        return
    size = st.slider(
        "Size of each picture (px)",
        48,
        256,
        e.size,
        step=16,
        key=f"lab_size_{e.key}",
        help="Small is fast; each experiment runs several optimisations.",
    )
    steps = st.slider("Steps per picture", 5, 300, e.steps, step=5, key=f"lab_steps_{e.key}")
    run_panel(e, e.plan(e.key, size, steps))


main()
