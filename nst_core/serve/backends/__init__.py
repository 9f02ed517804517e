"""Where tasks run. One name per idea:

- a *worker* loads VGG19 once and runs tasks one after another: a process on this machine (process.WorkerProcess)
  or a Ray actor (ray.WorkerActor); a thread of the server itself for the in-process backend (thread);
- a *slot* is one run at a time, what the queue counts (`Backend.slots`) and a backend's Pool hands out
  (process.ProcessSlot, ray.ActorSlot; slots.py has the code both share);
- a *lane* is a slot inside a GPU worker: a thread and a CUDA stream of its own, several per GPU when the worker
  measured that they pay (lanes.py), so a GPU process's slots are its lanes.

Only nst_core.serve.service names these modules.
"""
