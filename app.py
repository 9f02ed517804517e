"""Neural Style Studio: the pages, by name (their addresses are /, /Lab and /Class). Each page is a script in
ui/pages/; what they share is in ui/, the method in nst_core/, running it for many in nst_core/serve/."""

import streamlit as st

st.set_page_config(page_title="Neural Style Studio", page_icon=":material/palette:", layout="wide")
st.navigation(
    [
        st.Page("ui/pages/studio.py", title="Studio", icon=":material/palette:", default=True),
        st.Page("ui/pages/lab.py", title="Lab", icon=":material/science:", url_path="Lab"),
        st.Page("ui/pages/classroom.py", title="Class", icon=":material/groups:", url_path="Class"),
    ]
).run()
