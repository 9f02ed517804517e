"""The classroom: rooms and their walls of shared pictures (wall), the pace a teacher sets for a class (pace).
It imports the method and the server (nst_core, nst_core.serve), never the pages (ui)."""
