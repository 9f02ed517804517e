"""What the benchmarks share: the machine's description, timing helpers, process CPU and memory readings,
the real server's browser flags, and the scores they compare pictures by. No benchmark imports another.

Run each from the project root as a module: `.venv/bin/python -m benchmarks.bench_load --sessions 1 30`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from nst_core.images import load_image
from tests.servers import FLAGS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def machine() -> str:
    import torch

    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def interleaved(a, b, rounds: int = 7, reps: int = 3) -> tuple[float, float]:
    """Median per-call times of a and b, measured in alternating rounds (fair on a busy 2-core machine)."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(a, reps))
        tb.append(timed(b, reps))
    return sorted(ta)[rounds // 2], sorted(tb)[rounds // 2]


# Runs a module as __main__ and reports that process's own peak RSS (KB) on its last stderr line.
_PEAK = (
    "import resource, runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_module(sys.argv[0], run_name='__main__')\n"
    "finally:\n    print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def run_cli(module: str, args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `python -m module args` in a fresh process."""
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", _PEAK, module, *args], check=True, cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    return wall, int(r.stderr.strip().splitlines()[-1].split()[1]) / 1024


# Pages in one browser would otherwise be throttled as background tabs: each stands for a student's screen.
PAGE_FLAGS = FLAGS + [
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
]


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def mem_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants(pid: int) -> list[int]:
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += [int(child)] + descendants(int(child))
    return out


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in [pid] + descendants(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def client_cpu(server) -> float:
    """This process, Playwright's driver and Chromium: everything under us but the server."""
    return tree_cpu(os.getpid()) - tree_cpu(server.proc.pid)


STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def pastiche_inputs(content_path: Path, style_path: Path, h: int, w: int) -> tuple[Image.Image, Image.Image]:
    """The content and style pictures pastiche optimises against for an h x w result: as its load_image
    makes them (PIL bilinear; the style at the content's pixel count)."""
    st = load_image(style_path)
    sh = round((h * w * st.height / st.width) ** 0.5)
    return (
        load_image(content_path).resize((w, h), Image.Resampling.BILINEAR),
        st.resize((round(st.width / st.height * sh), sh), Image.Resampling.BILINEAR),
    )


def pastiche_terms(bb, image_path: Path, content_path: Path, style_path: Path) -> tuple[float, float]:
    """pastiche 1.6.0's default objective, split: content 0.01 * MSE on relu4_2; style: sum over relu1_1 ...
    relu5_1 of 10/C^2 * MSE of Grams (each divided by H*W); caffe-scale features, no TV."""
    import torch

    from nst_core.images import to_tensor
    from nst_core.losses import gram

    x = to_tensor(load_image(image_path))
    c, st = (to_tensor(im) for im in pastiche_inputs(content_path, style_path, *x.shape[-2:]))
    mse = torch.nn.functional.mse_loss
    with torch.no_grad():
        fx, fc, fs = bb.extract(x, STYLE_LAYERS + ["relu4_2"]), bb.extract(c, ["relu4_2"]), bb.extract(st, STYLE_LAYERS)
        content = 0.01 * mse(fx["relu4_2"], fc["relu4_2"])
        style = sum(10 / fx[l].shape[1] ** 2 * mse(gram(fx[l]), gram(fs[l])) for l in STYLE_LAYERS)
    return float(content), float(style)


def run_cli_in(tree: Path, content: Path, style: Path, out: Path, *options: str) -> dict:
    """`python -m nst_core` of the code in `tree` (a checkout or a worktree), with --metrics; its metrics."""
    metrics = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "nst_core", str(content), str(style), "-q", "-o", str(out), "--metrics", str(metrics)]
    cmd += options
    subprocess.run(cmd, check=True, cwd=tree)
    return json.loads(metrics.read_text())


def levels(tree: Path) -> list[tuple[int, int]]:
    """The default schedule of the code in `tree` (older metrics files do not say which level a step is at)."""
    code = "import json; from nst_core import Settings; from nst_core.schedule import schedule; "
    code += "print(json.dumps(schedule(Settings())))"
    return [tuple(x) for x in json.loads(subprocess.check_output([sys.executable, "-c", code], cwd=tree))]


def score(path: Path, content: Path, style: Path) -> float:
    """The default objective in float32 at 512 px, evaluated on a saved picture by this checkout."""
    import torch

    from nst_core import Settings, load_backbone, load_image
    from nst_core.images import to_tensor
    from nst_core.transfer import Objective, level_targets

    s = Settings(precision="float32")
    c, st, _ = level_targets(load_image(content), [load_image(style)], s, s.size)
    with torch.no_grad():
        return float(Objective(load_backbone(), s, c, st)(to_tensor(load_image(path)))["total"])
