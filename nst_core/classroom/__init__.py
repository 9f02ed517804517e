"""The classroom: rooms and their walls of shared pictures (wall), the pace a teacher sets for a class (pace), the
door that room codes, teacher passwords and new rooms go through, with their quotas (door), and the server's one
wall and door (server). It imports the method and the server (nst_core, nst_core.serve), never the pages (ui)."""
