"""Streamlit pieces every page uses: the shared service, image pickers, pictures, times and sentences."""

from __future__ import annotations

import collections
import io
import math
import re
import threading
from pathlib import Path

import streamlit as st
from PIL import Image

from nst_core.errors import ImageLoadError
from nst_core.images import load_image
from nst_core.serve import service as _service
from nst_core.serve.config import Config, ConfigError, config
from nst_core.serve.errors import one_line
from nst_core.serve.service import Service

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
STYLE_SCALE_MAX = 2.0  # the style scale slider's largest value (ui/fields.py): uploads are kept for it
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]


def server_config() -> Config:
    """The server's configuration (nst_core.serve.config). A variable with a bad value stops the page with one line
    that names it, on every page and every visit, until the server is started with a value it can use."""
    try:
        return config()
    except ConfigError as e:
        _service.log.error("bad configuration: %s", e)
        st.error(md(f"The server's configuration is wrong: {e}. Fix it and restart the server."))
        st.stop()
        raise  # outside a page (no script to stop): the error itself


def data_dir() -> Path:
    """Where the server keeps what outlives a session (the class walls, the results): NST_DATA_DIR, or data/."""
    return server_config().data_dir


def service() -> Service:
    """The server's one runner (with its workers) and cost model, shared by all sessions. If it cannot start
    (a Ray cluster out of reach, say), the page says why in one line; the next visit tries again."""
    server_config()  # a bad variable is said as such, not as a runner that could not start
    try:
        if _service.running():
            return _service.shared()
        with st.spinner("Starting the workers and loading VGG19 (once per server)..."):
            return _service.shared()
    except Exception as e:
        _service.log.error("the runner could not start: %s", one_line(e))
        st.error(f"The server could not start its runner: {one_line(e)}")
        st.stop()


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=^\"'])")
# Text that GitHub-flavoured markdown turns into a link even when every markdown character is escaped (measured in
# Chromium: "http://...", "www.", and e-mail addresses); a zero-width space after it keeps it a word.
_AUTOLINK = re.compile(r"(?i)(://|w(?=ww\\\.)|@)")


def md(text: str) -> str:
    """User text (a name, a file name, a code from the address) for a place that renders markdown (st.markdown,
    st.error, st.title, st.image's caption ...): every markdown character escaped, so it shows as the text it is,
    and no address in it becomes a link. A name like ![](http://host/p.png) would otherwise make every viewer's
    browser fetch from that host, and [CLICK](http://...) show a live link. Newlines become spaces."""
    escaped = _MARKDOWN.sub(r"\\\1", " ".join(str(text).split()))
    return _AUTOLINK.sub(lambda m: m.group(1) + "\u200b", escaped)


def client_address(limits) -> str:
    """The client this page's session comes from, for the limits per client: the connection's address, or behind
    a trusted reverse proxy (NST_CLIENT_HEADER) the address it reports; "local" on this machine. An IPv6 address
    stands for its /64 (one household or one school network: a client may take any address in it at will)."""
    import ipaddress

    address = ""
    header = limits.client_header
    if header:
        values = st.context.headers.get_all(header) if hasattr(st.context.headers, "get_all") else []
        # The proxy appends the address it saw to what the client sent: the last entry is the one to trust.
        address = (values[-1] if values else "").split(",")[-1].strip()
    if not address:
        ip = st.context.ip_address  # None on this machine (and not a string under AppTest)
        address = ip if isinstance(ip, str) else ""
    if not address:
        return "local"
    host = address  # a proxy may add the port: 203.0.113.7:4711, [2001:db8::1]:4711
    if host.startswith("["):
        host = host[1:].split("]")[0]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return address[:100]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def sentence(e: BaseException | str) -> str:
    """A one-line error as a sentence: capital first letter, full stop."""
    text = str(e).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def session_id() -> str:
    """This browser tab's session: it may have one run waiting or running, on any page."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else "local"


def fmt_seconds(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


# ---------------------------------------------------------------- pictures


# Previews scaled for st.image are kept for the polls that show them again, within this many bytes (the PNGs they
# were made from count too: they are the keys). A count of entries would let a GPU server's 2048 px previews hold
# hundreds of MB; 32 MB holds the live and finished previews of a few dozen pages polling at once.
PREVIEW_CACHE_BYTES = 32 * 2**20


class _Previews:
    """An LRU cache of scaled previews bounded in bytes, shared by every session's thread."""

    def __init__(self, budget: int):
        self.budget, self.used = budget, 0
        self._entries: collections.OrderedDict[tuple[bytes, int], tuple[bytes, int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, png: bytes, width: int, make) -> bytes:
        key = (png, width)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit[0]
        out = make(png, width)  # outside the lock: two threads may make the same preview, none waits on another
        cost = len(png) + (len(out) if out is not png else 0)
        with self._lock:
            if cost <= self.budget and key not in self._entries:
                self._entries[key] = (out, cost)
                self.used += cost
                while self.used > self.budget:
                    self.used -= self._entries.popitem(last=False)[1][1]
        return out

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.used = 0


_previews = _Previews(PREVIEW_CACHE_BYTES)


def _scaled(png: bytes, width: int) -> bytes:
    im = Image.open(io.BytesIO(png), formats=["PNG"])  # the runs' own previews
    if im.width <= width:
        return png
    im = im.convert("RGB").resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def preview(png: bytes, width: int) -> bytes:
    """The PNG, scaled down once if it is wider than `width`: st.image then sends it as it is, with no
    decoding or re-encoding on every poll (it re-encodes anything wider, or anything not a PNG)."""
    return _previews.get(png, width, _scaled)


def show_png(where, png: bytes, width: int, caption: str | None = None) -> None:
    where.image(preview(png, width), caption=caption, width=width, output_format="PNG")


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
        _upload(slot, title, kind)
    label, img = st.session_state[slot]
    st.image(img, caption=f"{md(label)} ({img.width}x{img.height})", width=thumb)  # captions are markdown
    if credit:
        st.caption(credit)
    return img


def upload_side(limits, device_type: str, kind: str) -> int:
    """The longest side an upload is kept at: what a run on this server can use. A photo is painted at most at the
    server's size for its device class; a painting is scaled to that size times the style scale, whose largest is
    the Studio's slider's (a value from the address is clamped to it)."""
    size = limits.max_size(device_type)
    return size if kind == "content" else math.ceil(size * STYLE_SCALE_MAX)


def _upload(slot: str, title: str, kind: str = "content") -> None:
    """The upload half of image_picker: the last good upload stays, also after a detour to the samples."""
    limits = service().limits
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
            side = upload_side(limits, service().device_type, kind)
            image = load_image(up.getvalue(), limits.max_pixels, name=up.name, max_side=side)
            st.session_state[f"{slot}_uploaded"] = (up.name, image)
            st.session_state.pop(f"{slot}_error", None)
        except ImageLoadError as e:
            st.session_state[f"{slot}_error"] = f"{e} — keeping the previous image."
    if f"{slot}_uploaded" in st.session_state:
        st.session_state[slot] = st.session_state[f"{slot}_uploaded"]
    if st.session_state.get(f"{slot}_error"):
        st.error(md(st.session_state[f"{slot}_error"]))
