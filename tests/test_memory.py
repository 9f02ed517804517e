"""The memory a run needs (serve/memory.py): the estimate against the meta device's saved tensors and against a
real run's peak; the host's memory group read from fake cgroup files (v1, v2, no limit)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nst_core import Settings
from nst_core.serve import memory
from nst_core.serve.limits import Limits
from nst_core.serve.memory import MB, HostMemory, run_bytes, saved_for_backward, size_cap

ROOT = Path(__file__).resolve().parents[1]


def meta_saved(h: int, w: int, layers: tuple[str, ...], bf16: bool) -> int:
    """Bytes autograd really saves from VGG19's forward pass on the meta device (no memory, only shapes): the
    backbone's own pass, with autocast's bf16 copies made by hand (autocast does not run on meta)."""
    import torch
    from torch import nn

    from nst_core.backbone import vgg19_features
    from nst_core.layers import LAYER_INDEX, LAYERS

    dtype = torch.bfloat16 if bf16 else torch.float32
    features = [nn.ReLU() if isinstance(m, nn.ReLU) else m for m in vgg19_features()]
    features = nn.Sequential(*features).to("meta").requires_grad_(False)
    x = torch.empty(1, 3, h, w, device="meta", requires_grad=True)
    params = {p.untyped_storage()._cdata for p in features.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in params and t is not x:
            seen[key] = t.untyped_storage().nbytes()
        return t

    last = max(LAYER_INDEX[n] for n in layers)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hid = ((x.flip(1) - 0.5) / 0.5).contiguous(memory_format=torch.channels_last).to(dtype)
        for i, module in enumerate(features[: last + 1]):
            if isinstance(module, nn.Conv2d) and bf16:
                hid = nn.functional.conv2d(hid, module.weight.to(dtype), module.bias.to(dtype), padding=1)
            else:
                hid = module(hid)
            if LAYERS[i] in layers:
                kept.append(hid.float())
        sum(k.pow(2).sum() for k in kept)  # the losses keep each feature handed to them (here pow keeps it)
    return sum(seen.values())


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("hw", [(96, 128), (384, 512)])
def test_saved_activations_match_the_meta_device(hw, bf16):
    layers = tuple(dict.fromkeys(Settings().content_layers + Settings().style_layers))
    est, real = saved_for_backward(*hw, layers, bf16), meta_saved(*hw, layers, bf16)
    assert 0.9 * real <= est <= 1.1 * real, (est, real)


def test_a_run_grows_with_size_quadratically_and_with_its_settings():
    s = Settings()
    sizes = [256, 512, 1024, 2048]
    need = [run_bytes(s.replace(size=n), 1.0, "cpu", bf16=False) for n in sizes]
    for a, b in zip(need, need[1:]):
        assert 3.0 < b / a < 4.5  # twice the side, about four times the memory
    worst = Settings(size=2048, precision="float32", style_scale=2.0, lbfgs_history=10)
    assert run_bytes(worst, 1.0, "cuda") > run_bytes(worst.replace(precision="bfloat16"), 1.0, "cuda")
    assert run_bytes(worst, 1.0, "cuda") > 1.15 * run_bytes(worst.replace(style_scale=1.0), 1.0, "cuda")
    # The painting's pass at 4096 px is the peak there; at style scale 1 a step is, and the history counts.
    at_one = worst.replace(style_scale=1.0)
    assert run_bytes(at_one, 1.0, "cuda") > run_bytes(at_one.replace(lbfgs_history=2), 1.0, "cuda")
    assert run_bytes(worst, 1.0, "cuda") > run_bytes(worst, 0.5, "cuda")  # a wide picture has fewer pixels
    # The worst a GPU host offers: over 8 GB by this count (so a lane plans with it, not with 512 px x 16).
    assert run_bytes(worst, 1.0, "cuda") > 8 << 30
    # precision="auto": bf16 on a GPU; on a CPU the caller says (or the larger float32 is assumed).
    auto = worst.replace(precision="auto")
    assert run_bytes(auto, 1.0, "cuda") == run_bytes(worst.replace(precision="bfloat16"), 1.0, "cuda")
    assert run_bytes(auto, 1.0, "cpu") == run_bytes(worst, 1.0, "cpu")


_PEAK = r"""
import json, sys
from nst_core import Settings, load_backbone, load_image
from nst_core.images import fit
from nst_core.transfer import run
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
bb = load_backbone("original", "cpu")
photo = fit(load_image("samples/content/chelsea.png"), 256)
painting = fit(load_image("samples/styles/the_scream.jpg"), 256)
s = Settings(size=256, iterations=16, precision="float32", preview_every=4)
run(fit(photo, 64), [fit(painting, 64)], s.replace(size=64, iterations=3), backbone=bb)  # as the worker's probe
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
run(photo, [painting], s, backbone=bb)
print(json.dumps({"peak": status("VmHWM") - before, "aspect": min(photo.size) / max(photo.size)}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc/self/clear_refs")
def test_the_estimate_matches_a_real_runs_peak():
    """A real 256 px float32 run in a fresh process: its peak RSS above the warmed-up process is within a factor
    of 2 of the estimate either way (measured 1.2 at 256-768 px on a 2-core AMD EPYC, benchmarks/bench_memory.py;
    a wide margin for other CPUs' kernels and allocators)."""
    out = subprocess.run([sys.executable, "-c", _PEAK], cwd=ROOT, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    est = run_bytes(Settings(size=256, iterations=16, precision="float32"), r["aspect"], "cpu")
    assert est / 2 <= r["peak"] <= 2 * est, (r["peak"] / MB, est / MB)


def fake_host(tmp_path, cgroup: str, files: dict[str, str], meminfo: str = "MemAvailable:  4000000 kB\n") -> str:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    (tmp_path / "proc/meminfo").write_text("MemTotal:  8000000 kB\n" + meminfo)
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def test_cgroup_v2_limit_use_and_the_smallest_limit_above(tmp_path):
    root = fake_host(
        tmp_path,
        "0::/app/worker\n",
        {
            "sys/fs/cgroup/app/memory.max": "734003200\n",
            "sys/fs/cgroup/app/worker/memory.max": "max\n",
            "sys/fs/cgroup/app/worker/memory.current": "600000000\n",
            "sys/fs/cgroup/app/worker/memory.stat": "anon 500000000\ninactive_file 100000000\n",
        },
    )
    mem = memory.host_memory(root)
    assert mem == HostMemory(734003200, 500000000, 4000000 * 1024)
    assert memory.host_limit_bytes(root) == 734003200
    assert mem.room() == 234003200


def test_cgroup_v2_max_is_no_limit_and_meminfo_bounds_the_room(tmp_path):
    root = fake_host(tmp_path, "0::/\n", {"sys/fs/cgroup/memory.max": "max\n", "sys/fs/cgroup/memory.current": "100\n"})
    mem = memory.host_memory(root)
    assert mem.limit is None and memory.host_limit_bytes(root) is None
    assert mem.room() == 4000000 * 1024  # MemAvailable


def test_cgroup_v1_limit_and_no_limit(tmp_path):
    files = {
        "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824\n",
        "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": "700000000\n",
        "sys/fs/cgroup/memory/docker/abc/memory.stat": "cache 5\ntotal_inactive_file 200000000\n",
        "sys/fs/cgroup/memory/docker/memory.limit_in_bytes": "9223372036854771712\n",
    }
    root = fake_host(tmp_path, "12:pids:/docker/abc\n4:cpuacct,memory:/docker/abc\n0::/\n", files)
    mem = memory.host_memory(root)
    assert (mem.limit, mem.used) == (1073741824, 500000000)
    assert mem.room() == 1073741824 - 500000000
    unlimited = fake_host(
        tmp_path / "u", "4:memory:/\n", {"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}
    )
    assert memory.host_limit_bytes(unlimited) is None


def test_a_container_sees_its_group_at_the_mount_root(tmp_path):
    # /proc/self/cgroup names the host's path, which the container's own mount does not have.
    root = fake_host(tmp_path, "0::/kubepods/pod1/c1\n", {"sys/fs/cgroup/memory.max": "536870912\n"})
    assert memory.host_limit_bytes(root) == 536870912


def test_no_cgroup_files_at_all(tmp_path):
    root = fake_host(tmp_path, "", {})
    assert memory.host_memory(root) == HostMemory(None, None, 4000000 * 1024)
    (tmp_path / "proc/meminfo").unlink()
    assert memory.host_memory(root).room() is None


def test_the_size_cap_takes_the_largest_size_that_fits_or_says_the_host_cannot_paint():
    limits = Limits()
    need = {n: run_bytes(Settings(size=n, precision="float32"), 1.0, "cpu") for n in (128, 256, 384, 512, 768)}
    cap = size_cap(HostMemory(None, None, None), limits, 1)
    assert cap["size"] == limits.max_size_cpu and cap["line"] is None  # nothing known: the configured limit
    # Room for a 384 px run and its margins, not for 512 px.
    room = memory.SLACK * need[384] + memory.margin(limits) + MB
    cap = size_cap(HostMemory(2 << 30, (2 << 30) - room, None), limits, 1)
    assert cap["size"] == 384 and "384 px" in cap["line"]
    # Two slots: each needs its own room.
    cap2 = size_cap(HostMemory(2 << 30, (2 << 30) - room, None), limits, 2)
    assert cap2["size"] < 384
    # No room even for the smallest size: the host cannot paint, said in one line.
    tight = size_cap(HostMemory(700 * MB, 690 * MB, None), limits, 1)
    assert tight["size"] is None and "cannot paint" in tight["line"] and "\n" not in tight["line"]
    # The configured limit is never raised.
    big = size_cap(HostMemory(64 << 30, 1 << 30, None), limits.__class__(max_size_cpu=512), 1)
    assert big["size"] == 512 and big["line"] is None


def test_nst_memory_mb_is_a_limit_too(tmp_path):
    root = fake_host(tmp_path, "0::/\n", {"sys/fs/cgroup/memory.max": "max\n"})
    mem = memory.host_memory(root, Limits(memory_mb=1024))
    assert mem.limit == 1024 * MB and mem.used is not None and mem.used > 0  # this process's resident memory
    tight = fake_host(
        tmp_path / "t",
        "0::/\n",
        {"sys/fs/cgroup/memory.max": "734003200\n", "sys/fs/cgroup/memory.current": "600000000\n"},
    )
    assert memory.host_memory(tight, Limits(memory_mb=4096)) == HostMemory(734003200, 600000000, 4000000 * 1024)


@pytest.mark.parametrize("room_mb", [420, 60])
def test_the_service_caps_its_size_to_the_memory_it_has(monkeypatch, room_mb):
    from nst_core.serve import service

    monkeypatch.setattr(memory, "host_memory", lambda **kw: HostMemory(2 << 30, (2 << 30) - room_mb * MB, None))
    svc = service.start("random", "cpu", Limits(result_cache_mb=20), backend="thread")
    try:
        if room_mb == 420:
            assert 128 <= svc.limits.max_size_cpu < 768 and not svc.cannot_paint
            assert f"up to {svc.limits.max_size_cpu} px" in svc.memory_line
            at_cap = Settings(size=svc.limits.max_size_cpu)
            assert svc.memory_check(at_cap) is None  # any precision at the cap fits
            line = svc.memory_check(at_cap.replace(style_scale=2.0))  # the painting's pass at twice the size
            assert line.startswith("This run needs about") and "\n" not in line
        else:
            assert svc.cannot_paint and svc.memory_line.startswith("This server cannot paint")
            assert svc.limits.max_size_cpu == memory.SMALLEST  # a run tried anyway is the smallest
    finally:
        svc.close()


def test_the_server_plans_memory_without_torch():
    """The server process does not load torch (about 300 MB): the estimate and the host's memory are arithmetic."""
    code = (
        "import sys; from nst_core import Settings; from nst_core.serve import memory; "
        "memory.run_bytes(Settings()); memory.size_cap(memory.host_memory(), __import__("
        "'nst_core.serve.limits', fromlist=['Limits']).Limits(), 1); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
