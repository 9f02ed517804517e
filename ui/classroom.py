"""The class wall on the Streamlit side: a Studio tab's room (?room=CODE) and its Share form, and the pieces of the
Class page (open or join a room, the live wall, the teacher's tools). What is not Streamlit is in nst_core.classroom:
the wall's storage (wall), the server's one Wall and Door (server), the quotas a tab meets at the door (door); this
module hands them the tab's session, address and the codes its session keeps.

/Class                      open a room (teacher) or join one (student)
/Class?room=CODE            the room's wall (for students, or a projector)
/Class?room=CODE&key=KEY    the same wall for its teacher: remove pictures, download a ZIP, close, delete
/?room=CODE                 the studio, with a "Share to the class wall" button under each result

A teacher key is checked, kept in the tab's session and taken out of the address at once (the address bar is
on the projector, in the browser's history and in proxy logs).
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from nst_core.classroom import pace as paces
from nst_core.classroom import server
from nst_core.classroom.door import Tab
from nst_core.classroom.pace import Pace
from nst_core.classroom.server import forget_wall as forget_wall  # (tests open the wall anew on their own data)
from nst_core.classroom.server import open_wall
from nst_core.classroom.wall import NAME_LENGTH, Entry, Wall, WallError, grouped, normalise_code
from nst_core.images import decode_mask
from nst_core.serve import service as _service
from nst_core.serve.config import config

from .common import client_address, fmt_seconds, md, sentence, server_config, service, session_id


def class_wall() -> Wall:
    """open_wall(), or one line on the page (and nothing more of it) if the data directory is unusable or a
    setting is bad (a bad variable in the words of every page: server_config)."""
    server_config()
    try:
        return open_wall()
    except (WallError, ValueError) as e:
        st.error(f"The class wall is not available: {md(e)}.")
        st.stop()


# ---------------------------------------------------------------- in the Studio


def this_tab() -> Tab:
    """This tab at the server's door: its session, its client address, and the codes it has looked up (in its
    session state, so that its reruns are not counted again)."""
    state = st.session_state
    known = state.setdefault("known_codes", set())  # rooms this tab found, open or gone
    seen = state.setdefault("wrong_codes", set())
    return Tab(session_id(), client_address(server.door().limits), known, seen)


def find_room(wall: Wall, code: str):
    """The server's door's find_room for this tab: WallError with the reason, or with how long to wait."""
    return server.door().find_room(wall, code, this_tab())


def keep_key(wall: Wall, code: str, key: str):
    """A teacher link's key: checked (WallError if wrong), kept in this tab's session and taken out of the address.
    Returns the room. The code is looked up first, as any link's: a code that no room had counts as a wrong code."""
    room = wall.teacher(find_room(wall, code).code, key)
    st.session_state.room, st.session_state.room_key = room.code, key
    with contextlib.suppress(KeyError):
        del st.query_params["key"]
    return room


def session_key(wall: Wall, code: str) -> str | None:
    """This tab's teacher key for room `code`, if it has one that still works (a new teacher link ends the old)."""
    state = st.session_state
    key = state.get("room_key")
    if not key or state.get("room") != normalise_code(code):
        return None
    try:
        wall.teacher(code, key)
    except WallError:
        state.pop("room_key", None)
        st.warning(f"This tab's teacher link for room {md(code)} was replaced by a new one: use the new link.")
        return None
    return key


@dataclass(frozen=True)
class Membership:
    """This tab's class room: its code, whether it is the room's teacher, and the room's pace."""

    code: str
    teacher: bool
    pace: Pace | None
    version: int  # the pace's: the page follows when it changes


def class_room() -> Membership | None:
    """A room link (?room=CODE) puts this tab in that class: its results can be shared to the room's wall, and the
    room's pace gives its settings' defaults and upper limits. The teacher's link (&key=KEY) puts its runs first."""
    code, key = st.query_params.get("room"), st.query_params.get("key")
    try:
        wall = open_wall()
    except (WallError, ValueError) as e:  # the studio works without it
        if code:
            st.warning(f"Not in a class: the class wall is not available on this server ({md(e)}).")
        return None
    state = st.session_state
    try:
        if code and key:
            room = keep_key(wall, code, key)
        elif code:
            room = find_room(wall, code)
            if state.get("room") != room.code:
                state.pop("room_key", None)  # another room: not its teacher
        elif state.get("room"):  # the same tab on another page of the app (the address lost its room)
            room = wall.room(state.room)
        else:
            return None
    except WallError as e:
        st.warning(f"Not in a class: {md(e)}.")
        state.pop("room", None)
        state.pop("room_key", None)
        return None
    state.room = room.code
    teacher = session_key(wall, room.code) is not None
    pace = Pace.from_dict(room.pace)
    if teacher:
        st.info(f"You are the teacher of room **{room.code}**: your runs go ahead of the students'.")
    else:
        limit = (
            f" The room's pace: {pace.describe()}; up to {pace.size} px and {pace.iterations} steps." if pace else ""
        )

        st.info(
            f"You are in class room **{room.code}**: when your picture is done you can share it to the "
            f"[class wall](Class?room={room.code}) (only the picture, its animation and its settings, never your "
            f"photo).{limit}"
        )
    return Membership(room.code, teacher, pace, room.pace_version)


def follow_pace(code: str, version: int) -> None:
    """Every 10 s (an st.fragment): has the teacher changed the room's pace? Then the page follows (a full rerun)."""
    try:
        now = open_wall().room(code).pace_version
    except WallError:
        return
    if now != version:
        st.rerun()


def share_form(r, store=None) -> None:
    """Opt-in: the result, its GIF and its settings go to this tab's room's wall, under a name if one is given. A
    result is shared once per room: with a result store (a result with an address), what the store says of this room
    counts (another tab's share of the same result included), checked and taken in one step."""
    code = st.session_state.room
    rid = r.id if store is not None else None
    shared = r.shared
    if rid:
        shared.update(store.shares(rid))
    if code in shared:
        st.success(f"Shared to the wall of room {code}{' as ' + md(shared[code]) if shared[code] != '-' else ''}.")
        return
    with st.form("share", border=True):
        name = st.text_input("Your first name or a nickname (optional)", max_chars=NAME_LENGTH, key="share_name")
        if st.form_submit_button("Share to the class wall", icon=":material/groups:"):
            if rid and not store.claim_share(rid, code):
                st.info(f"This result is being shared to the wall of room {code} from another tab.")
                return
            settings = {**r.info["settings"], "steps": r.info["steps"], "seconds": r.info["seconds"]}
            try:
                wall = class_wall()
                entry = wall.share(code, r.png, r.gif, name, r.paintings, settings, client=client_address(wall.limits))
            except WallError as e:
                if rid:
                    store.unclaim_share(rid, code)
                st.error(f"Not shared: {md(e)}.")
            else:
                shared[code] = entry.name or "-"
                if rid:
                    store.set_shared(rid, code, shared[code])
                st.rerun()


# ---------------------------------------------------------------- the Class page


COLUMNS = 4
REFRESH = 3  # seconds between looks at the wall


def base_url() -> str:
    """This app's address as the browser sees it, for the links a teacher hands out ('' in tests without a browser:
    links stay relative). Only a plain address is used (scheme, host, port, a path of plain characters), so it is
    safe in markdown as it is and a teacher can copy it."""
    url = (st.context.url or "").split("?")[0].rstrip("/").removesuffix("/Class")
    return url if re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d+)?(/[A-Za-z0-9._~\-/]*)?", url) else ""


FORMATS = {"png": "PNG", "gif": "GIF", "jpg": "JPEG"}


def readable(wall: Wall, entry: Entry, kind: str) -> bytes:
    """An entry's file ('png', 'gif' or 'jpg'), checked to be a whole picture of its format before st.image opens it
    (a damaged file would raise past the page); WallError if it is missing or damaged."""
    data = wall.file(entry, kind)
    try:
        with Image.open(io.BytesIO(data), formats=[FORMATS[kind]]) as im:
            im.verify()
    except Exception:
        raise WallError(f"this picture's {kind.upper()} file cannot be read") from None
    return data


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(_wall: Wall, entry: Entry) -> bytes:
    """The tile's JPEG (entries never change, so their tiles are read once); WallError if it is missing or not a
    picture (a failure is not cached: the next look tries again)."""
    return readable(_wall, entry, "jpg")


def settings_line(s: dict) -> str:
    parts = [f"{s['size']} px" if "size" in s else "", f"{s['steps']} steps" if "steps" in s else ""]
    if "style_weight" in s:
        parts.append(f"style {s['style_weight']:g}")
    if s.get("preserve_colors"):
        parts.append("photo's colours")
    if s.get("masks"):
        parts.append("masked" if len(s["masks"]) == 1 else f"{len(s['masks'])} masks")
    return " · ".join(p for p in parts if p)


def retention(wall: Wall) -> str:
    return (
        f"Rooms and everything shared in them are deleted {wall.limits.room_hours:g} hours after the room opens "
        f"({wall.limits.empty_room_hours:g} hours after its teacher last used it if nothing was shared). "
        "Only the result pictures, their animations, their settings and the names students type are stored, "
        "never their photos."
    )


def start_page(wall: Wall) -> None:
    st.title("Class wall")
    st.write(
        "A teacher opens a room and shares its link. Each student makes a picture in the Studio and shares it to "
        "the room's wall, where everyone sees all of them side by side: the same photo under different weights, "
        "the same painting on thirty photos."
    )
    left, right = st.columns(2)
    with left.form("open"):
        st.subheader("Open a room (teacher)")
        title = st.text_input("Name of the class (optional)", max_chars=40, placeholder="e.g. Art 2B")
        students, minutes = pace_inputs("open")
        password = config().teacher_password
        given = st.text_input("Teacher password", type="password") if password else None
        if st.form_submit_button("Open a room", type="primary", icon=":material/add:"):
            try:
                room, key = server.door().open_room(wall, title, password, given, client_address(wall.limits))
                wall.set_pace(room.code, key, plan_pace(students, minutes).to_dict())
            except WallError as e:
                st.error(md(sentence(e)))
            else:  # the key goes to this tab's session, never into the address
                st.session_state.room, st.session_state.room_key = room.code, key
                st.session_state.link_new = True
                st.query_params.from_dict({"room": room.code})
                st.rerun()
    with right.form("join"):
        st.subheader("Join a room (student)")
        code = st.text_input("Room code", max_chars=12, placeholder="e.g. K7QF-3M2A")
        if st.form_submit_button("See the wall", icon=":material/groups:"):
            try:
                room = find_room(wall, code)
            except WallError as e:
                st.error(md(sentence(e)))
            else:
                st.query_params.from_dict({"room": room.code})
                st.rerun()
    st.caption(retention(wall))


def teacher_panel(wall: Wall, room, key: str) -> None:
    """For the room's teacher (room_page has checked the key): the links, the ZIP, close, delete."""
    code, base = room.code, base_url()
    st.success(
        f"**Room {grouped(code)} is open.** Students go to **{base}/?room={code}** to make and share their pictures; "
        f"the wall alone (for a projector) is **{base}/Class?room={code}**."
    )
    # Links within this tab, whose session keeps the key: the key stays out of every address (a link's address is
    # shown when hovered, on the projector, and goes into the history and the request line).
    a, b = st.columns(2)
    room_only = {"room": code}
    a.page_link("ui/pages/studio.py", label="Your Studio: your runs go ahead of the students'", query_params=room_only)
    b.page_link("ui/pages/lab.py", label="The Lab, for a demo on the projector", query_params=room_only)
    teacher_link(wall, code, key)
    pace_form(wall, room, key)
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Download the wall (ZIP)",
        lambda: wall.zip_file(code, key).read_bytes(),
        f"class-wall-{code}.zip",
        "application/zip",
        icon=":material/download:",
        help="Every picture as PNG and settings.csv with a row per picture.",
        on_click="ignore",
    )
    if not room.closed and c2.button("Close the room", icon=":material/lock:", help="No more pictures can be shared."):
        wall.close_room(code, key)
        st.rerun()
    with c3.popover("Delete the room now", icon=":material/delete:"):
        st.write("Deletes the room, its wall and every picture on it, for everyone. This cannot be undone.")
        if st.button("Delete everything", type="primary", key="delete_room"):
            wall.delete_room(code, key)
            st.session_state.pop("room_key", None)
            st.query_params.clear()
            st.rerun()


def teacher_link(wall: Wall, code: str, key: str) -> None:
    """The private teacher link, which the address bar no longer shows: in an expander, closed (the page may be on a
    projector) except right after the link was made; and a button for a new link, which ends this one."""
    with st.expander(
        "Your private teacher link", icon=":material/key:", expanded=bool(st.session_state.pop("link_new", 0))
    ):
        st.write("Keep it to come back and moderate this room; anyone who has it is its teacher.")
        st.code(f"{base_url() or '.'}/Class?room={code}&key={key}", language=None)
        if st.button("Make a new teacher link", icon=":material/autorenew:", help="The link above stops working."):
            try:
                st.session_state.room_key = wall.new_key(code, key)
            except WallError as e:
                st.error(md(sentence(e)))
            else:
                st.session_state.link_new = True
                st.rerun()


def plan_pace(students: int, minutes: float) -> Pace:
    """The settings that keep the promise on this server (nst_core/classroom/pace.py), from its cost model and slots."""
    svc = service()
    return paces.plan(
        svc.cost,
        svc.runner.slots,
        students,
        minutes,
        svc.limits.max_size(svc.device_type),
        svc.limits.max_iterations,
    )


OWN = "the students and minutes below"


def pace_inputs(prefix: str, students: int = 30, minutes: float = 5.0) -> tuple[int, float]:
    """A named pace, or the class's size and the minutes it may wait for everyone's first picture (in a form:
    both are shown, the choice says which counts)."""
    choice = st.selectbox(
        "The class's pace", [OWN, *paces.NAMED], key=f"{prefix}_pace", help="How long the class may wait."
    )
    a, b = st.columns(2)
    n = a.number_input("Students", 1, 500, students, key=f"{prefix}_students")
    m = b.number_input("Minutes for everyone's first picture", 0.5, 240.0, minutes, step=0.5, key=f"{prefix}_minutes")
    return (int(n), float(m)) if choice == OWN else paces.NAMED[choice]


def pace_form(wall: Wall, room, key: str) -> None:
    """The room's pace: shown, and changed at any time (every student's page follows within 10 s)."""
    pace = Pace.from_dict(room.pace)
    with st.form("pace", border=True):
        st.markdown(f"**The room's pace:** {pace.describe()}." if pace else "**The room has no pace yet.**")
        students, minutes = pace_inputs("change", *(pace.students, pace.minutes) if pace else (30, 5.0))
        if st.form_submit_button("Set the pace", icon=":material/speed:"):
            wall.set_pace(room.code, key, plan_pace(students, minutes).to_dict())
            st.rerun()


def progress_line(code: str) -> None:
    """In this room: pictures done, painting and waiting, and when the last should be done. (A wall alone, on a
    projector, does not start the server's workers: before they run, nothing is painting.)"""
    if not _service.running():
        return
    p = service().runner.progress(code)
    if p.painting or p.waiting:
        st.info(
            f"In this room: {p.done} picture{'s' * (p.done != 1)} done, {p.painting} painting, "
            f"{p.waiting} waiting; the last should be done in about {fmt_seconds(p.last)}."
        )
    elif p.done:
        st.caption(f"In this room: {p.done} picture{'s' * (p.done != 1)} done, none painting or waiting.")


def watch(code: str) -> None:
    """Every REFRESH seconds (an st.fragment): has the wall changed since this page drew it? Then draw it
    again (a full rerun). Drawing thirty pages' tiles on every poll instead cost the server several times as
    much per page and poll, and their browsers more (benchmarks/bench_wall.py)."""
    try:
        version = class_wall().version(code)
    except WallError:
        version = None  # deleted or expired: the full run says so
    if version != st.session_state.get("wall_seen"):
        st.rerun()
    progress_line(code)


def wall_view(wall: Wall, room, key: str | None) -> None:
    """The room's pictures, newest first; new ones appear without a reload (see watch())."""
    st.session_state.wall_seen = wall.version(room.code)  # before reading: a share in between is drawn next time
    entries = wall.entries(room.code)
    state = "closed: no new pictures" if room.closed else f"open: share from {base_url()}/?room={room.code}"
    st.caption(f"{len(entries)} picture{'s' * (len(entries) != 1)} · room {room.code} is {state}")
    chosen = next((e for e in entries if e.id == st.session_state.get("wall_open")), None)
    if chosen is not None:
        with st.container(border=True):
            a, b = st.columns(2)
            try:
                png = readable(wall, chosen, "png")
            except WallError:
                png = None
                a.warning("This picture's file is missing on the server or damaged.")
            else:
                a.image(png, width="stretch")
            a.markdown(f"**{md(chosen.name) or 'anonymous'}** · {md(chosen.painting)}")
            a.caption(settings_line(chosen.settings))
            for i, text in enumerate(chosen.settings.get("masks") or []):  # the mask travels with the result
                with contextlib.suppress(ValueError):
                    a.image(decode_mask(text), caption=f"mask {i + 1}: where the painting went", width=240)
            if png is not None:
                a.download_button(
                    "Picture (PNG)", png, f"wall-{chosen.id}.png", "image/png", icon=":material/download:"
                )
            try:
                gif = readable(wall, chosen, "gif") if chosen.has_gif else None
            except WallError:  # the picture alone
                b.warning("This picture's animation is missing on the server or damaged.")
            else:
                if gif is not None:
                    b.image(gif, caption="The optimisation, step by step", width="stretch")
                    b.download_button(
                        "Animation (GIF)", gif, f"wall-{chosen.id}.gif", "image/gif", icon=":material/download:"
                    )
            if b.button("Close", key="wall_close", icon=":material/close:"):
                st.session_state.wall_open = None
                st.rerun()
    cols = st.columns(COLUMNS)
    for i, e in enumerate(entries):
        with cols[i % COLUMNS]:
            try:
                st.image(thumbnail(wall, e), width="stretch")
            except WallError:  # one missing file is one tile: the rest of the wall, and this tile's Remove, stay
                st.warning("This picture's file is missing or damaged.", icon=":material/broken_image:")
            st.markdown(f"**{md(e.name) or 'anonymous'}** · {md(e.painting)}")
            st.caption(f"{settings_line(e.settings)} · {time.strftime('%H:%M', time.localtime(e.created))}")
            v, r = st.columns(2)
            if v.button("View", key=f"view_{e.id}", icon=":material/open_in_full:"):
                st.session_state.wall_open = e.id
                st.rerun()
            if key and r.button("Remove", key=f"remove_{e.id}", icon=":material/delete:"):
                wall.remove(room.code, key, e.id)
                st.rerun()
    if not entries:
        st.info("No pictures yet: they appear here as students share them.")


def room_page(wall: Wall, code: str, key: str | None = None) -> None:
    """The room's wall; its teacher's tools for a teacher link's `key` (then kept in the session and taken out of
    the address) or for the key this tab already keeps."""
    try:
        if key:
            room = keep_key(wall, code, key)
        else:
            room = find_room(wall, code)
            key = session_key(wall, room.code)
    except WallError as e:
        st.title("Class wall")
        st.error(md(sentence(e)))
        if st.button("Open or join another room"):
            st.query_params.clear()
            st.rerun()
        return
    st.title(f"Class wall · {md(room.title) or 'room ' + grouped(room.code)}")
    try:  # the room deleted meanwhile, a teacher link replaced in another tab: one line, and the next look says more
        if key:
            teacher_panel(wall, room, key)
        elif not room.closed:
            st.markdown(f"[Make a picture for this wall]({base_url() or '.'}/?room={room.code})")
        wall_view(wall, room, key)
    except WallError as e:
        st.error(md(sentence(e)))
    st.fragment(watch, run_every=REFRESH)(room.code)
    st.caption(retention(wall))
