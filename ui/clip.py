"""The Studio's clip: a sample clip or an upload (MP4, MOV, WebM, animated GIF or WebP), checked and probed when
it arrives, the last good one kept (a bad upload is one line and changes nothing)."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from PIL import Image

from nst_core import clips

from .common import SAMPLES, md, pretty, service

CLIP_TYPES = ["mp4", "mov", "webm", "gif", "webp"]


@dataclass(frozen=True)
class Clip:
    name: str
    data: bytes  # the file, at most NST_UPLOAD_MB
    info: clips.ClipInfo
    first: Image.Image  # its first frame (what the page shows, and the result's before/after)


@st.cache_resource(max_entries=8)
def sample_clip(path: str) -> Clip:
    with open(path, "rb") as f:
        return _read(pretty(path.rsplit("/", 1)[-1]), f.read())


def _read(name: str, data: bytes) -> Clip:
    info = clips.probe(data, max_bytes=len(data), name=name)
    first = next(clips.read_frames(data, max_frames=1, max_side=512, max_bytes=len(data), name=name))
    return Clip(name, data, info, first)


def clip_picker(help: str) -> Clip:
    """A sample clip or an upload; the last good one stays, also after a detour to the samples."""
    names = sorted(p.name for p in (SAMPLES / "clips").iterdir() if p.suffix in (".mp4", ".gif", ".webp"))
    st.markdown("**Clip**")
    mode = st.radio("Clip", ["Sample", "Upload"], key="clip_mode", horizontal=True, label_visibility="collapsed")
    clip = sample_clip(str(SAMPLES / "clips" / names[0]))
    if mode == "Sample":
        name = st.selectbox("Clip sample", names, key="clip_sample", format_func=pretty, label_visibility="collapsed")
        clip = sample_clip(str(SAMPLES / "clips" / name))
    else:
        limits = service().limits
        up = st.file_uploader(
            "Upload a clip", type=CLIP_TYPES, key="clip_upload", help=f"{clips.ACCEPTED}, up to {limits.upload_mb} MB"
        )
        if up is not None and st.session_state.get("clip_upload_id") != up.file_id:
            st.session_state.clip_upload_id = up.file_id
            try:
                if up.size > limits.upload_mb * 2**20:  # before a byte of it is decoded
                    raise clips.ClipError(f"{up.name} is {up.size / 2**20:.1f} MB; the limit is {limits.upload_mb} MB")
                st.session_state.clip_uploaded = _read(up.name, up.getvalue())
                st.session_state.pop("clip_error", None)
            except clips.ClipError as e:
                st.session_state.clip_error = f"{e} — keeping the previous clip."
        clip = st.session_state.get("clip_uploaded", clip)
        if st.session_state.get("clip_error"):
            st.error(md(st.session_state.clip_error))
    if clip.data[:6] in (b"GIF87a", b"GIF89a") or clip.data[8:12] == b"WEBP":  # an animated picture
        st.image(clip.data, width=220)
    else:
        st.video(clip.data, loop=True, muted=True)
    i = clip.info
    st.caption(f"{md(clip.name)}: {i.width}x{i.height}, {i.duration:.1f} s at {i.fps:g} frames a second")
    st.caption(help)
    return clip
