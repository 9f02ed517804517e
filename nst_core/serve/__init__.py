"""Running the method for many people: the server's configuration (config, limits), a queue of jobs that runs any
task (nst_core.tasks) through a backend (backends/: worker processes, Ray actors, or this process), a cost model,
the result store on disk.

Imports point one way: nst_core.serve imports nst_core and nst_core.tasks' protocol, never the reverse; only
service.py names the backends, and nothing here names a kind of task. Nothing here imports torch at module level:
the web server's process stays light.
"""
