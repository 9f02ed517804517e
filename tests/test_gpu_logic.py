"""The GPU's serving logic on a CPU, through small seams: the worker's error path after a CUDA error, lane measuring
that fails, the device flags a worker sets, the bf16 choice, the plan for several GPUs, one stream per lane, and the
host syncs of a step."""

import gc
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
    from nst_core.serve.process_backend import serve_run

    events = []
    serve_run(7, task, CPU, events.append, threading.Event(), cleanup, exit=lambda code: events.append(("exit", code)))
    return events


def test_after_a_cuda_error_the_worker_reports_it_and_then_ends_though_its_cleanup_raises_again():
    from nst_core.serve.process_backend import CONTEXT_BROKEN

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
    from nst_core.serve.slots import context_broken

    assert context_broken(RuntimeError(ILLEGAL_ADDRESS))
    assert context_broken(RuntimeError("CUDA error: device-side assert triggered"))
    assert context_broken(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert not context_broken(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert not context_broken(RuntimeError("CUDA error: out of memory"))
    assert not context_broken(ValueError("need at least one style image"))


def test_measuring_lanes_fails_at_once_with_the_error_of_a_lane_that_raises_before_the_start_line():
    """A lane that fails before it reaches the start line: the others, and the worker starting, would wait there
    for ever (the server said "out of memory?" after 300 s)."""
    from nst_core.serve import lanes

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

    from nst_core.serve.lanes import Streams

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
    from nst_core.serve.process_backend import gpu_plan
    from nst_core.serve.ray_backend import actor_device

    assert gpu_plan("auto", 2, None) == [("auto", {}), ("cuda", {"CUDA_VISIBLE_DEVICES": "1"})]
    assert gpu_plan("cuda", 2, "2,3") == [("cuda", {}), ("cuda", {"CUDA_VISIBLE_DEVICES": "3"})]
    assert gpu_plan("cuda:1", 2, None) == [("cuda:1", {})]  # one GPU named: that one alone, once
    assert gpu_plan("auto", 1, None) == [("auto", {})]
    # A Ray actor sees only the GPU Ray gave it, as cuda:0.
    assert actor_device("cuda:1", 2) == actor_device("cuda", 2) == "cuda" and actor_device("auto", 2) == "auto"
    assert actor_device("cpu", 0) == "cpu"


def test_a_process_backend_on_a_fake_two_gpu_host_starts_one_worker_per_gpu(monkeypatch):
    """The workers it starts, for NST_DEVICE=auto and =cuda:1 (before, cuda:1 was started twice and cuda:0 never)."""
    from nst_core.serve import process_backend
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
