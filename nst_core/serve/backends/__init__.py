"""Where tasks run: in the runner's thread (thread), in worker processes on this machine (process), or on Ray
actors (ray), over the slot code they share (slots) and, on one GPU, several runs at once (lanes). Only
nst_core.serve.service names them."""
