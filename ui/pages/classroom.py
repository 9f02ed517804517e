"""The Class page: open or join a room; a room's live wall; the teacher's tools (ui/classroom.py)."""

import streamlit as st

from ui.classroom import class_wall, room_page, start_page

st.set_page_config(page_title="Class · Neural Style Studio", page_icon=":material/groups:", layout="wide")
wall = class_wall()  # expired rooms are out of reach at once; their files go with the clean-up thread
code = st.query_params.get("room")
if code:
    room_page(wall, code, st.query_params.get("key"))
else:
    start_page(wall)
