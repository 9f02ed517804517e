"""Engine benchmark (run by hand: `make bench`); prints figures, asserts nothing.

1. Overhead of one objective evaluation over a bare VGG19 forward+backward at the same size.
2. Against pastiche 1.6.0 at 256 px (`python -m pastiche --size 256 --num-steps 100`), same images:
   wall time of each CLI, and the loss of each result under one fixed objective (pastiche's own).
3. A 512-px run with default settings: wall time and peak memory (max RSS of the process).
Optional: --gpu also times 500 iterations at 512 and 1024 px on CUDA.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, interleaved, machine, pastiche_terms, run_cli
from nst_core import Settings, load_backbone, load_image
from nst_core.images import fit, to_tensor
from nst_core.transfer import Objective

CONTENT = ROOT / "samples" / "content" / "astronaut.png"
STYLE = ROOT / "samples" / "styles" / "starry_night.jpg"


def overhead(bb, size=256):
    s = Settings(size=size)
    c = to_tensor(fit(load_image(CONTENT), size))
    st = to_tensor(fit(load_image(STYLE), size))
    obj = Objective(bb, s, c, [st])
    layers = obj.layers
    x = c.clone().requires_grad_(True)

    def bare():
        x.grad = None
        feats = bb.extract(x, layers)
        sum(f.sum() for f in feats.values()).backward()

    def ours():
        x.grad = None
        obj(x)["total"].backward()

    tb, to = interleaved(bare, ours)
    print(
        f"[overhead] {size}px: bare VGG19 fwd+bwd {tb * 1000:.0f} ms, objective evaluation {to * 1000:.0f} ms "
        f"-> overhead {100 * (to / tb - 1):+.1f}%"
    )


def versus_pastiche(bb, tmp: Path):
    theirs, ours = tmp / "pastiche.png", tmp / "ours.png"
    t_p, _ = run_cli(
        "pastiche",
        [
            "--size",
            "256",
            "--num-steps",
            "100",
            "--device",
            "cpu",
            "-c",
            str(CONTENT),
            "-s",
            str(STYLE),
            "-o",
            str(theirs),
        ],
    )
    t_o, _ = run_cli("nst_core", [str(CONTENT), str(STYLE), "--size", "256", "-q", "--device", "cpu", "-o", str(ours)])
    l_p, l_o = (sum(pastiche_terms(bb, f, CONTENT, STYLE)) for f in (theirs, ours))
    print(
        f"[vs pastiche] 256px: pastiche 100 steps {t_p:.1f} s wall, loss {l_p:.4g}; "
        f"ours (defaults) {t_o:.1f} s wall, loss {l_o:.4g}  -> time ratio {t_o / t_p:.2f}, "
        f"loss ratio {l_o / l_p:.2f} (under pastiche's own objective)"
    )


def run_512(tmp: Path):
    out = tmp / "ours512.json"
    wall, rss = run_cli(
        "nst_core",
        [str(CONTENT), str(STYLE), "-q", "--device", "cpu", "-o", str(tmp / "ours512.png"), "--metrics", str(out)],
    )
    m = json.loads(out.read_text())
    print(
        f"[512px defaults] {m['evaluations']} evaluations, {m['seconds']:.1f} s in the loop, {wall:.1f} s wall "
        f"(process start and weights included), peak RSS of that process {rss:.0f} MB"
    )


def gpu(bb_cuda):
    c, st = load_image(CONTENT), load_image(STYLE)
    from nst_core.transfer import stylize

    for size in (512, 1024):
        s = Settings(size=size, iterations=500, scales=1, preview_every=500)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for f in stylize(c, [st], s, bb_cuda):
            pass
        torch.cuda.synchronize()
        print(
            f"[gpu] {size}px, 500 iterations single scale: {time.perf_counter() - t:.1f} s, "
            f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB, final loss {f.losses['total']:.4g}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--only", choices=["overhead", "pastiche", "512"])
    a = ap.parse_args()
    print(f"machine: {machine()}")
    bb = load_backbone("original", "cpu")
    with tempfile.TemporaryDirectory() as d:
        if a.only in (None, "overhead"):
            overhead(bb)
        if a.only in (None, "pastiche"):
            versus_pastiche(bb, Path(d))
        if a.only in (None, "512"):
            run_512(Path(d))
    if a.gpu:
        gpu(load_backbone("original", "cuda"))


if __name__ == "__main__":
    main()
