"""Running the method for many people: a queue of jobs, a cost model, backends that run them elsewhere (worker
processes, Ray actors), the limits that keep a shared server alive, and the class wall's storage.

Imports point one way: nst_core.serve imports nst_core, never the reverse; only service.py names the backends.
Nothing here imports torch at module level: the web server's process stays light.
"""
