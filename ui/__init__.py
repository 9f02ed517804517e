"""The Streamlit side: pieces every page uses (common.py), one job panel (job_panel.py), one field table between
Settings and the widgets (fields.py), the Studio's result (results.py), the class wall (classroom.py), and the
pages themselves (pages/, scripts that app.py names). Imports point one way: ui -> nst_core.serve -> nst_core."""
