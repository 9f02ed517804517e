"""Memory of the app across many runs and sessions (run by hand; prints figures, asserts nothing).

Drives app.py through AppTest in this process (so the cached engine and runner are shared, as on a
server): several sessions, each doing several runs, and prints the process RSS after each run.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from benchmarks.common import ROOT


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(at: AppTest) -> None:
    at.button(key="run").click().run()
    while at.session_state["job"] is not None:
        time.sleep(0.2)
        at.run()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=40)
    a = ap.parse_args()
    print(f"{a.sessions} sessions x {a.runs} runs at {a.size} px, {a.iterations} iterations each")
    for s in range(a.sessions):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["size"], at.query_params["iterations"] = str(a.size), str(a.iterations)
        at.run()
        figures = []
        for r in range(a.runs):
            one_run(at)
            gc.collect()
            figures.append(rss_mb())
        print(
            f"session {s + 1}: RSS after each run (MB): "
            + ", ".join(f"{m:.0f}" for m in figures)
            + f"; gallery holds {len(at.session_state['gallery'])}"
        )
        del at
        gc.collect()
    print(f"after all sessions: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
