"""The default 512 px run, before and after, side by side (run by hand; prints figures, asserts nothing).

"Before" is the code at a git revision (default: the last commit before the schedule and precision change of
#8), checked out into a temporary worktree; "after" is this checkout. Both run the CLI with default settings
on the same photo and painting, alternately, in separate processes. For each run it prints the wall time of
the optimisation loop, per level the evaluations, the seconds and the loss at its start and end, and how
fast the loss still falls at the end of the level: the geometric mean over the last 10 evaluations of the
per-step decrease of the best loss so far. The final pictures are scored under one objective, the default
one in float32 at 512 px, evaluated by this checkout.

    .venv/bin/python -m benchmarks.bench_schedule [--before REV] [--rounds 1] [--pairs rocket.jpg:the_scream.jpg]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, levels, machine, run_cli_in, score

BEFORE = "bb57412"  # main before #8's schedule and precision work
PAIRS = ["rocket.jpg:the_scream.jpg", "coffee.png:wave_crop.jpg"]
TAIL = 10


def describe(m: dict, sched: list[tuple[int, int]]) -> str:
    totals = [h["total"] for h in m["losses"]]
    parts, i = [], 0
    for size, n in sched:
        level = totals[i : i + n]
        best = [min(level[: k + 1]) for k in range(n)]
        k = min(TAIL, n - 1)
        rate = 1 - (best[-1] / best[-1 - k]) ** (1 / k) if k else float("nan")
        parts.append(f"{size} px: {n} evals {level[0]:.3f} -> {best[-1]:.3f}, {100 * rate:.2f}%/step at the end")
        i += n
    return "; ".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pairs", nargs="+", default=PAIRS)
    a = ap.parse_args()
    print(f"machine: {machine()}; default settings (512 px, 160 evaluations); before = {a.before}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        old = tmp / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), a.before], cwd=ROOT, check=True, capture_output=True
        )
        try:
            trees = {"before": old, "after": ROOT}
            scheds = {name: levels(tree) for name, tree in trees.items()}
            for pair in a.pairs:
                photo, painting = pair.split(":")
                content, style = ROOT / "samples/content" / photo, ROOT / "samples/styles" / painting
                print(f"{photo} x {painting}")
                times = {name: [] for name in trees}
                for r in range(a.rounds):
                    for name, tree in trees.items():
                        out = tmp / f"{name}{r}.png"
                        m = run_cli_in(tree, content, style, out)
                        times[name].append(m["seconds"])
                        print(f"  {name}: {m['seconds']:.1f} s ({m['device']}), final {score(out, content, style):.4f}")
                        print(f"    {describe(m, scheds[name])}", flush=True)
                ratio = sum(times["after"]) / sum(times["before"])
                print(f"  time after / before: {ratio:.2f}x")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)


if __name__ == "__main__":
    main()
