"""The GPU's serving logic on a CPU, through small seams: the worker's error path after a CUDA error, lane measuring
that fails, the device flags a worker sets, the bf16 choice, the plan for several GPUs, one stream per lane, and the
host syncs of a step."""

import gc
import os
import threading
import types
import weakref

import pytest
import torch

from tests.gpu_tasks import ILLEGAL_ADDRESS
from tests.tasks import Ticking

CPU = types.SimpleNamespace(device=torch.device("cpu"))  # a backbone as the worker's run path sees it


class Failing(Ticking):
    """Two frames, then `error`; holds a tensor in the run's frame until then (what a real run's traceback holds)."""

    def __init__(self, error: type, message: str):
        super().__init__(2, 0.0)
        self.error, self.message, self.held = error, message, None

    def frames(self, backbone):
        big = torch.zeros(1000)
        self.held = weakref.ref(big)
        yield from Ticking(2, 0.0).frames(backbone)
        raise self.error(self.message)


def serve(task, cleanup):
    from nst_core.serve.backends.process import serve_run

    events = []
    serve_run(7, task, CPU, events.append, threading.Event(), cleanup, exit=lambda code: events.append(("exit", code)))
    return events


def test_after_a_cuda_error_the_worker_reports_it_and_then_ends_though_its_cleanup_raises_again():
    from nst_core.serve.backends.process import CONTEXT_BROKEN

    def cleanup(backbone):  # as torch.cuda.empty_cache() does on a broken context
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    events = serve(Failing(RuntimeError, ILLEGAL_ADDRESS), cleanup)
    assert [e[0] for e in events] == ["shot", "shot", "error", "exit"]
    assert events[2] == ("error", 7, "RuntimeError: CUDA error: an illegal memory access was encountered", "ending")
    assert events[3] == ("exit", CONTEXT_BROKEN)


def test_after_another_error_the_worker_reports_it_first_and_cleans_up_once_the_traceback_is_gone():
    """An out-of-memory error: the message goes first; then the cleanup runs, outside the `except`, when the run's
    tensors (held by the traceback until then) are gone; a cleanup that raises is only logged; the worker lives on."""
    seen = []
    task = Failing(torch.cuda.OutOfMemoryError, "CUDA out of memory. Tried to allocate 2.00 GiB")

    def cleanup(backbone):
        gc.collect()  # (only reference counting should be needed; this rules out a cycle kept by chance)
        seen.append(task.held() is None)
        raise RuntimeError("cleanup failed too")

    events = serve(task, cleanup)
    assert [e[0] for e in events] == ["shot", "shot", "error"]
    assert events[2] == ("error", 7, "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert seen == [True]


def test_which_errors_break_the_gpu_context():
    from nst_core.serve.backends.slots import context_broken

    assert context_broken(RuntimeError(ILLEGAL_ADDRESS))
    assert context_broken(RuntimeError("CUDA error: device-side assert triggered"))
    assert context_broken(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert not context_broken(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not context_broken(RuntimeError("CUDA error: out of memory"))
    assert not context_broken(ValueError("need at least one style image"))


def test_measuring_lanes_fails_at_once_with_the_error_of_a_lane_that_raises_before_the_start_line():
    """A lane that fails before it reaches the start line: the others, and the worker starting, would wait there
    for ever (the server said "out of memory?" after 300 s)."""
    from nst_core.serve.backends import lanes

    calls = []

    def setup(backbone, size):
        calls.append(size)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return lambda: None

    outcome = []

    def measure():
        try:
            lanes.throughput(CPU, 4, size=64, evals=2, setup=setup)
        except Exception as e:
            outcome.append(e)

    t = threading.Thread(target=measure, daemon=True)
    t.start()
    t.join(timeout=120)  # a guard against hanging the suite: the fixed code returns as soon as the lane fails
    assert not t.is_alive(), "the measuring hangs at the start line"
    assert [type(e).__name__ for e in outcome] == ["OutOfMemoryError"] and len(calls) <= 4


def test_each_lane_keeps_one_stream_and_every_run_works_on_its_lanes_stream():
    """With a recording stand-in for CUDA streams: twelve runs, two at a time (as two lanes run them) and then one
    at a time, use two streams in all; each run makes every tensor on the stream it took, and two runs at once never
    share one. (A new stream per run: PyTorch's allocator would cache each run's blocks for a stream no one reuses.)"""
    import contextlib

    from nst_core.serve.backends.lanes import Streams

    current = threading.local()

    @contextlib.contextmanager
    def enter(stream):
        old, current.stream = getattr(current, "stream", None), stream
        try:
            yield
        finally:
            current.stream = old

    made = []
    streams = Streams(torch.device("cpu"), make=lambda: made.append(object()) or made[-1], enter=enter)
    seen: dict[int, set] = {}
    busy, clash = set(), []
    lock = threading.Lock()
    both = threading.Barrier(2)

    def run(i: int, paired: bool) -> None:
        with streams.lane() as stream:
            with lock:
                clash.append(stream in busy)
                busy.add(stream)
            for _ in range(3):  # "make a tensor": note the stream it is made on
                seen.setdefault(i, set()).add(current.stream)
                if paired:
                    both.wait()  # the two runs of a pair are on their streams at the same time
            with lock:
                busy.discard(stream)
        assert current.__dict__.get("stream") is None  # and the stream is no longer current after the run

    for pair in range(4):
        ts = [threading.Thread(target=run, args=(2 * pair + k, True)) for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    for i in range(8, 12):
        run(i, False)
    assert len(made) == 2 and streams.made == 2
    assert all(len(s) == 1 and next(iter(s)) in made for s in seen.values()) and len(seen) == 12
    assert not any(clash)


def test_a_worker_sets_cuda_flags_in_one_place_float32_is_ieee_and_no_retuning_per_shape():
    from nst_core.backbone import configure_cuda, cuda_flags

    assert cuda_flags() == {"cudnn.benchmark": False, "cudnn.allow_tf32": False, "cuda.matmul.allow_tf32": False}
    fake = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(benchmark=True, allow_tf32=True),  # torch's TF32 default for cuDNN
        cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=True)),
    )
    configure_cuda(backends=fake)
    assert (fake.cudnn.benchmark, fake.cudnn.allow_tf32, fake.cuda.matmul.allow_tf32) == (False, False, False)


def test_the_gpu_benchmark_sets_the_workers_cuda_flags_so_its_float32_rows_are_not_tf32(monkeypatch):
    from benchmarks import bench_gpu

    configured = []
    monkeypatch.setattr(bench_gpu, "configure_cuda", lambda: configured.append(True))
    monkeypatch.setattr(bench_gpu, "load_backbone", lambda weights, device: types.SimpleNamespace(device=device))
    bench_gpu.prepared("random", torch.device("cpu"))
    assert configured == []
    bench_gpu.prepared("random", torch.device("cuda"))  # (a stand-in backbone: no GPU is touched)
    assert configured == [True]


def test_building_a_backbone_sets_no_process_wide_flag(monkeypatch):
    """cudnn.benchmark was set as a side effect of building a Backbone on a GPU; a Backbone on any device now leaves
    torch's flags alone (the worker sets them, configure_cuda). Here on the meta device, which any machine has."""
    from nst_core.backbone import Backbone, vgg19_features

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr("nst_core.backbone.native_bf16", lambda device: False)
    fake_cuda = types.SimpleNamespace(type="cuda")
    with torch.device("meta"):
        features = vgg19_features()
    monkeypatch.setattr(Backbone, "to", lambda self, *a, **k: self)  # (nothing is moved to a GPU that is not here)
    Backbone(features, "imagenet", "random", fake_cuda)
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize(("capability", "native"), [((6, 1), False), ((7, 0), False), ((7, 5), False), ((8, 0), True)])
def test_auto_picks_bf16_only_on_gpus_that_compute_it_in_hardware(monkeypatch, capability, native):
    """Pascal, Volta and Turing emulate bfloat16 (torch.cuda.is_bf16_supported() says yes for them): slower than
    float32 there. Ampere (8.0) and later have it."""
    from nst_core import backbone

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # as on a T4
    assert backbone.native_bf16(torch.device("cuda", 0)) is native


def test_a_gpu_that_torch_cannot_use_is_said_and_not_served_from_the_cpu_without_a_word(tmp_path):
    from nst_core.backbone import unused_gpu

    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  470.57.02  Tue Jul 13 16:14:05 UTC 2021\n")
    assert unused_gpu(False, driver, "13.0") == (
        "an NVIDIA GPU is here but torch (built for CUDA 13.0) cannot use it: is driver 470.57.02 too old for it?"
    )
    assert "this torch has no CUDA" in unused_gpu(False, driver, "")
    assert unused_gpu(True, driver, "13.0") is None  # used
    assert unused_gpu(False, tmp_path / "absent", "13.0") is None  # no GPU at all


def test_the_plan_for_a_two_gpu_host_gives_each_gpu_one_worker():
    from nst_core.serve.backends.process import gpu_plan
    from nst_core.serve.backends.ray import actor_device

    assert gpu_plan("auto", 2, None) == [("auto", {}), ("cuda", {"CUDA_VISIBLE_DEVICES": "1"})]
    assert gpu_plan("cuda", 2, "2,3") == [("cuda", {}), ("cuda", {"CUDA_VISIBLE_DEVICES": "3"})]
    assert gpu_plan("cuda:1", 2, None) == [("cuda:1", {})]  # one GPU named: that one alone, once
    assert gpu_plan("auto", 1, None) == [("auto", {})]
    # A Ray actor sees only the GPU Ray gave it, as cuda:0.
    assert actor_device("cuda:1", 2) == actor_device("cuda", 2) == "cuda" and actor_device("auto", 2) == "auto"
    assert actor_device("cpu", 0) == "cpu"


def test_a_process_backend_on_a_fake_two_gpu_host_starts_one_worker_per_gpu(monkeypatch):
    """The workers it starts, for NST_DEVICE=auto and =cuda:1 (before, cuda:1 was started twice and cuda:0 never)."""
    from nst_core.serve.backends import process as process_backend
    from nst_core.serve.limits import Limits

    started = []

    class Fake:
        def __init__(self, weights, device, threads=0, lanes=1, start_timeout=300.0, env=None):
            started.append((device, (env or {}).get("CUDA_VISIBLE_DEVICES")))
            self.info = {"device_type": "cuda", "gpus": 2, "lanes": 3, "device": "GPU: fake"}
            self.proc = None

    monkeypatch.setattr(process_backend, "WorkerProcess", Fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend = process_backend.ProcessBackend("random", "auto", Limits())
    assert started == [("auto", None), ("cuda", "1")] and backend.slots == 6
    started.clear()
    backend = process_backend.ProcessBackend("random", "cuda:1", Limits())
    assert started == [("cuda:1", None)] and backend.slots == 3


def test_our_lbfgs_steps_as_torchs_lbfgs_does():
    """transfer.LBFGS (no host syncs) against torch.optim.LBFGS(max_iter=1, tolerance_grad=0) on a smooth problem
    with a full history and more: the same points to float32 rounding (only the order of a few sums differs)."""
    from nst_core.transfer import LBFGS

    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 40, generator=g, dtype=torch.float64)
    hess = (a @ a.T / 40 + 0.1 * torch.eye(40)).float()
    target = torch.randn(40, generator=g)

    def loss(x):
        r = x - target
        return 0.5 * r @ hess @ r + 0.05 * (r**4).sum()

    def run(make):
        x = torch.zeros(40, requires_grad=True)
        opt = make(x)
        points = []
        for _ in range(25):

            def closure():
                opt.zero_grad()
                value = loss(x)
                value.backward()
                return value

            opt.step(closure)
            points.append(x.detach().clone())
        return torch.stack(points), opt.state[x]

    ours, ours_state = run(lambda x: LBFGS(x, 1.0, history_size=5))
    theirs, theirs_state = run(lambda x: torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=5, tolerance_grad=0))
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5), (ours - theirs).abs().max()
    assert len(ours_state["old_dirs"]) == len(theirs_state["old_dirs"]) == 5
    # (near the minimum s'y / y'y divides two small differences: rounding shows there first)
    assert float(ours_state["H_diag"]) == pytest.approx(float(theirs_state["H_diag"]), rel=1e-2)


def test_a_level_whose_curvature_pairs_were_all_skipped_carries_no_scale_to_the_next():
    """Curvature.remember: our L-BFGS keeps a pair torch would skip (s'y <= 1e-10) with weight 0, so a history of
    only such pairs is not empty, but its H_diag is still the initial 1, measured from nothing. Carried on, the next
    level's first step would be 1 x its pixels / these pixels; torch's empty history would carry nothing. On a
    linear objective every pair is such (the gradient never changes); on a quadratic 0.5 a |x|^2 every pair measures
    s'y / y'y = 1 / a."""
    from nst_core.transfer import LBFGS, Curvature

    def remembered(loss):
        x = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
        opt = LBFGS(x, 0.1, history_size=3)

        def closure():
            opt.zero_grad()
            value = loss(x)
            value.backward()
            return value

        for _ in range(5):
            opt.step(closure)
        curvature = Curvature()
        curvature.remember(opt, x)
        return curvature, opt.state[x]

    flat, state = remembered(lambda x: x.sum())
    assert len(state["old_dirs"]) == 3 and all(float(r) == 0 for r in state["ro"])
    assert flat.gamma is None and flat.first_step(64) is None
    bowl, _ = remembered(lambda x: 2.0 * (x**2).sum())  # a = 4
    assert bowl.gamma == pytest.approx(0.25) and bowl.pixels == 16


def test_a_step_brings_its_numbers_to_the_host_once(monkeypatch, backbone, content, style):
    """Every step of a real run: one `to_host` (its losses, stacked) and no other read of a tensor's value on the host
    (aten's _local_scalar_dense: what .item(), float(), `if tensor` and a tensor passed as a number all call; on a GPU
    each is a wait for the device). Before: about 25 a step (five float()s, L-BFGS's `alpha`s and tests). (Adam is
    not counted here: torch's Adam reads its step count, which it keeps on the host for a GPU's tensors.)"""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nst_core import Settings, transfer

    class Reads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                Reads.count += 1
            return func(*args, **(kwargs or {}))

    hosted = []
    monkeypatch.setattr(transfer, "to_host", lambda x: hosted.append(x.numel()) or x.tolist())
    s = Settings(size=32, iterations=12, scales=1, preview_every=100)
    c, st, _ = transfer.level_targets(content, [style], s, 32, backbone.device)
    objective = transfer.Objective(backbone, s, c, st)
    steps = transfer.optimise(objective, c.clone(), s.iterations, s)
    next(steps)  # (the first step builds the optimiser)
    per_step = []
    for _ in range(s.iterations - 1):
        before, n = Reads.count, len(hosted)
        with Reads():
            next(steps)
        per_step.append((Reads.count - before, len(hosted) - n))
    assert per_step == [(0, 1)] * (s.iterations - 1)
    assert hosted[-1] == 4  # content, style, tv, total in one


def test_a_preview_is_encoded_and_sent_beside_the_run_which_goes_on_meanwhile():
    """The worker PNG-encodes and sends each shot in a thread beside the run's: the run makes its next step while a
    preview is being sent (before, the run waited for each encode), every shot goes, in order, and a stop still ends
    the run after the step that saw it."""
    from PIL import Image

    from nst_core.serve.backends.process import encode_aside
    from nst_core.transfer import Frame

    resumed = {n: threading.Event() for n in range(1, 8)}
    closed = []

    def frames():
        try:
            for n in range(1, 8):
                if n > 1:
                    resumed[n - 1].set()  # the run is at its next step
                image = Image.new("RGB", (16, 16)) if n % 2 else None
                yield Frame(n, 7, {"total": 1.0}, 0.0, (16, 16), image)
        finally:
            closed.append(True)

    sent, overlapped = [], []
    stop = threading.Event()

    def emit(shot):
        if shot.step == 1:  # (a guard, not a bound: the fixed code goes on at once)
            overlapped.append(resumed[1].wait(timeout=30))
        sent.append((shot.step, shot.png is not None))
        if shot.step == 3:
            stop.set()

    encode_aside(frames(), emit, stop)
    assert overlapped == [True]
    assert sent[:3] == [(1, True), (2, False), (3, True)] and [s for s, _ in sent] == list(range(1, len(sent) + 1))
    # Stopped within the frames already made when the stop came: the one being sent, two waiting, one being put.
    assert len(sent) <= 3 + 2 + 1 and closed == [True]


def test_lanes_are_chosen_from_injected_timings_and_memory_read_after_the_cached_blocks_are_given_back(
    monkeypatch,
):
    """measure_lanes with the GPU's answers injected: the fewest lanes near the best throughput, within the free memory
    for runs at the largest size at the worst settings; free memory is read only after the cache is emptied (blocks
    cached by loading and probing counted as used would cost lanes)."""
    from nst_core.serve.backends import lanes

    calls = []
    rates = {1: 10.0, 2: 19.0, 4: 30.0, 8: 31.0}
    monkeypatch.setattr(lanes, "throughput", lambda backbone, k, streams=None: rates[k])
    monkeypatch.setattr(lanes, "worst_run_bytes", lambda backbone, size: calls.append(("estimate", size)) or 12 * 2**30)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    cached = {"free": 30 * 2**30}

    def mem_get_info(device=None):
        calls.append("free")
        return cached["free"] + (50 * 2**30 if "empty" in calls else 0), 80 * 2**30

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    chosen, measured = lanes.measure_lanes(CPU, 2048)
    # (80 GiB x 0.8 holds five runs of 12 GiB: eight lanes are not measured)
    assert measured == {1: 10.0, 2: 19.0, 4: 30.0} and calls.index("empty") < calls.index("free")
    assert ("estimate", 2048) in calls
    assert chosen == 4  # 80 GiB free x 0.8 holds five runs of 12 GiB; four lanes are within 5% of the best
    assert lanes.choose(rates, 12 * 2**30, 30 * 2**30) == 2  # what reading free memory too early would have chosen


def test_the_worst_run_a_lane_must_hold_is_estimated_at_the_largest_size_not_scaled_from_512_px():
    from nst_core.serve.backends import lanes

    worst = lanes.worst_settings(2048)
    assert (worst.size, worst.precision, worst.style_scale, worst.lbfgs_history) == (2048, "float32", 2.0, 10)
    pytest.importorskip("nst_core.serve.memory")
    small, large = lanes.worst_run_bytes(None, 1024), lanes.worst_run_bytes(None, 2048)
    assert 3 < large / small < 5  # (about the pixels, 4x: estimated from the layers at each size, no GPU needed)


def test_a_worker_serving_from_the_cpu_beside_a_gpu_it_cannot_use_says_so_in_its_device_caption(monkeypatch, capsys):
    from nst_core import backbone
    from nst_core.serve import cost
    from nst_core.serve.backends import slots

    note = "an NVIDIA GPU is here but torch (built for CUDA 13.0) cannot use it: is driver 470.57.02 too old for it?"
    monkeypatch.setattr(backbone, "unused_gpu", lambda: note)
    monkeypatch.setattr(cost.CostModel, "probe", classmethod(lambda cls, bb: cls(1e-9, 0.0)))
    monkeypatch.setattr(backbone, "default_device", lambda: torch.device("cpu"))
    _, info = slots.prepare("random", "auto", 0)
    assert info["device_type"] == "cpu" and info["device"].endswith(f" ({note})")
    assert note in capsys.readouterr().err
    _, info = slots.prepare("random", "cpu", 0)  # asked for the CPU: nothing to say
    assert note not in info["device"]


class FakeConnection:
    """The worker's end of its socket: records what it sends; the server has gone as soon as it is read from."""

    def __init__(self, fd):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)

    def recv(self):
        raise EOFError


def test_a_gpu_worker_whose_lanes_run_out_of_memory_at_four_starts_with_two_and_measures_no_more_than_fit(
    monkeypatch,
):
    """A worker on a GPU that holds fewer real runs at once than the candidates: lanes are measured only up to what
    the free memory holds at the worst settings, and a candidate that runs out of memory all the same (a GPU shared
    with another process) ends the measuring at the one before, its blocks freed before the cache is emptied, instead
    of failing the worker's start. Real measuring threads; the timings and the GPU's answers injected."""
    from nst_core.serve.backends import lanes, slots
    from nst_core.serve.backends import process as process_backend

    gpu = types.SimpleNamespace(device=torch.device("cuda"))  # (only its type is read: no GPU is touched)
    rates = {1: 10.0, 2: 19.0, 4: 30.0, 8: 31.0}  # four lanes would be chosen, were there memory for them
    tried, held, emptied = [], [], []
    oom_at = {"k": 4}

    def setup(backbone, size):
        k = len(tried) and tried[-1]
        big = torch.zeros(1000)
        held.append(weakref.ref(big))
        if k == oom_at["k"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return lambda: big.add_(1)

    real_throughput = lanes.throughput

    def throughput(backbone, k, streams=None):
        tried.append(k)
        real_throughput(CPU, k, size=8, evals=1, streams=lanes.Streams(CPU.device), setup=setup)
        return rates[k]

    free = {"bytes": 80 * 2**30}
    monkeypatch.setattr(lanes, "throughput", throughput)
    monkeypatch.setattr(lanes, "worst_run_bytes", lambda backbone, size: 12 * 2**30)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(all(r() is None for r in held)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
    monkeypatch.setattr(process_backend, "Connection", FakeConnection)
    monkeypatch.setattr(slots, "prepare", lambda weights, device, threads: (gpu, {"device": "a GPU"}))
    sent = []
    monkeypatch.setattr(FakeConnection, "send", lambda self, msg: sent.append(msg))
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")  # (recorded, so that what the worker sets is undone after)
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)

    process_backend.main(0, "random", "cuda", 0, 0)
    assert [m[0] for m in sent] == ["ready"], sent
    assert sent[0][1]["lanes"] == 2 and sent[0][1]["lane_throughput"] == {1: 10.0, 2: 19.0}
    assert tried == [1, 2, 4] and emptied[-1] is True  # the failed lanes' tensors were gone when the cache was emptied

    # 80 GiB x 0.8 holds five runs of 12 GiB: eight lanes are never tried, even with memory to spare at four.
    tried.clear(), sent.clear()
    oom_at["k"] = None
    process_backend.main(0, "random", "cuda", 0, 0)
    assert tried == [1, 2, 4] and sent[0][1]["lanes"] == 4
    # 30 GiB holds two: four are not tried (eight real runs at once on a 16 GB card fail the start, not just a lane).
    tried.clear(), sent.clear()
    free["bytes"] = 30 * 2**30
    process_backend.main(0, "random", "cuda", 0, 0)
    assert tried == [1, 2] and sent[0][1]["lanes"] == 2


def test_measuring_lanes_still_fails_on_an_error_that_is_not_out_of_memory_or_at_one_lane(monkeypatch):
    from nst_core.serve.backends import lanes

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)

    def failing(at, error):
        def measure(k):
            if k == at:
                raise error
            return float(k)

        return measure

    with pytest.raises(torch.cuda.OutOfMemoryError):
        lanes.measure_up_to(CPU, 8, failing(1, torch.cuda.OutOfMemoryError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        lanes.measure_up_to(CPU, 8, failing(4, RuntimeError("CUDA error: an illegal memory access was encountered")))
    assert lanes.measure_up_to(CPU, 8, failing(8, torch.cuda.OutOfMemoryError("out of memory"))) == {1: 1, 2: 2, 4: 4}


def test_a_gpu_worker_gets_expandable_segments_before_cuda_starts_and_a_cpu_worker_does_not(monkeypatch):
    """Lanes on several streams fragment the caching allocator's fixed segments: a GPU worker's environment asks for
    expandable ones, set before it loads anything (torch reads the setting once, when CUDA's allocator starts)."""
    from nst_core import backbone
    from nst_core.serve.backends import process as process_backend
    from nst_core.serve.backends import slots

    key = "PYTORCH_CUDA_ALLOC_CONF"
    assert slots.worker_env("cuda", {}) == {key: "expandable_segments:True"}
    assert slots.worker_env("cuda:1", {}) == {key: "expandable_segments:True"}
    assert slots.worker_env("cpu", {}) == {}
    assert slots.worker_env("cuda", {key: "backend:cudaMallocAsync"}) == {}  # the operator's own wins
    monkeypatch.setattr(backbone, "default_device", lambda: torch.device("cuda"))
    assert slots.worker_env("auto", {}) == {key: "expandable_segments:True"}
    monkeypatch.setattr(backbone, "default_device", lambda: torch.device("cpu"))
    assert slots.worker_env("auto", {}) == {}

    seen = {}

    def prepare(weights, device, threads):
        seen[device] = os.environ.get(key)
        return CPU, {"device": "here"}

    monkeypatch.setattr(process_backend, "Connection", FakeConnection)
    monkeypatch.setattr(slots, "prepare", prepare)
    monkeypatch.setenv(key, "")  # (recorded, so that what the worker sets is undone after)
    monkeypatch.delenv(key)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    process_backend.main(0, "random", "cpu", 0, 1)
    assert seen == {"cpu": None}
    process_backend.main(0, "random", "cuda", 0, 1)  # (lanes given: nothing measured)
    assert seen["cuda"] == "expandable_segments:True"


def test_a_ray_actor_on_a_gpu_gets_expandable_segments_too_unless_its_node_sets_its_own(monkeypatch):
    """Ray starts its actors' processes itself, in each node's environment: the actor sets the allocator in its own
    environment before it loads anything, as a worker process does, and keeps a node's own setting."""
    import sys
    import types

    from nst_core.serve.backends import slots
    from nst_core.serve.backends.ray import WorkerActor

    key = "PYTORCH_CUDA_ALLOC_CONF"
    seen = []

    def prepare(weights, device, threads):
        seen.append(os.environ.get(key))
        return CPU, {"device": "here"}

    context = types.SimpleNamespace(get_node_id=lambda: "node")  # (this test is not in a Ray actor)
    ray = types.SimpleNamespace(get_runtime_context=lambda: context, util=types.SimpleNamespace())
    ray.util.get_node_ip_address = lambda: "127.0.0.1"
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr(slots, "prepare", prepare)
    monkeypatch.setenv(key, "")  # (recorded, so that what the worker sets is undone after)
    monkeypatch.delenv(key)
    monkeypatch.delenv("PYTORCH_ALLOC_CONF", raising=False)
    WorkerActor("random", "cpu", 1)
    WorkerActor("random", "cuda", 1)
    monkeypatch.setenv(key, "backend:cudaMallocAsync")  # the node's own
    WorkerActor("random", "cuda", 1)
    assert seen == [None, "expandable_segments:True", "backend:cudaMallocAsync"]
