"""The memory a run needs (from VGG19's layer shapes, no torch: the server uses it) and the memory this host has
(its cgroup's limit and use, /proc/meminfo): what caps the size a host offers, and what a GPU's lanes can plan with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..images import MIN_SIDE
from ..layers import BLOCKS, CHANNELS, LAYER_INDEX, LAYERS
from ..schedule import schedule
from ..settings import PIXELS, Settings

MB = 1 << 20
# A cgroup v1 group without a limit reports about 2^63; anything above this is no limit.
NO_LIMIT = 1 << 60
# What a run keeps besides VGG19's activations, in copies of the picture (float32, 3 channels): the pixels being
# optimised, their gradient, the best picture and its gradient, the step's copy, the start, the photo and its
# colours, the folded picture and its intermediates, a preview; L-BFGS adds 2 per pair of its history (s and y)
# and about 6 of its own (direction, last gradient, flat gradient, the two-loop's q and r, a step's product).
PICTURE_COPIES = 15
LBFGS_OWN = 6
ADAM_OWN = 2  # its two moment estimates


@dataclass(frozen=True)
class _Layer:
    name: str
    channels: int
    shrink: int  # the picture's side divided by this layer's


def _vgg19() -> list[_Layer]:
    """Each layer of VGG19's features with its output's channels and stride."""
    out, shrink = [], 1
    for block, (n, c) in enumerate(zip(BLOCKS, CHANNELS, strict=True), start=1):
        for k in range(1, n + 1):
            out += [_Layer(f"conv{block}_{k}", c, shrink), _Layer(f"relu{block}_{k}", c, shrink)]
        shrink *= 2
        out.append(_Layer(f"pool{block}", c, shrink))
    return out


VGG19 = _vgg19()
assert [layer.name for layer in VGG19] == list(LAYERS)


def _elements(layer: _Layer, h: int, w: int) -> int:
    return layer.channels * (h // layer.shrink) * (w // layer.shrink)


def _dims(size: int, aspect: float) -> tuple[int, int]:
    return max(MIN_SIDE, round(size * aspect)), size


def saved_for_backward(h: int, w: int, layers: tuple[str, ...], bf16: bool) -> int:
    """Bytes autograd keeps from one forward pass through VGG19 up to the deepest of `layers`: what each step's
    backward needs. A convolution keeps its input (the ReLU or pooling before it keeps the same tensor), a ReLU its
    output, a max pooling its input and int64 indices at its output's size; with bf16 (autocast) the first
    convolution's input is a bf16 copy, each convolution's weight too, and each layer handed to the losses a float32
    copy. Checked against the meta device's saved tensors (tests/test_memory.py)."""
    deep = [n for n in layers if n != PIXELS]
    if not deep:
        return 0
    size = 2 if bf16 else 4
    last = max(LAYER_INDEX[n] for n in deep)
    total = 3 * h * w * size if bf16 else 0  # the preprocessed picture in bf16 (in float32, counted as a picture)
    for layer in VGG19[: last + 1]:
        n = _elements(layer, h, w)
        if layer.name.startswith("relu"):
            total += n * size
        elif layer.name.startswith("pool"):
            total += n * size + n * 8  # its output (the next convolution's input) and max pooling's indices
        elif bf16:
            total += 9 * layer.channels * _in_channels(layer) * size  # the weight's bf16 copy
        if bf16 and layer.name in deep:
            total += n * 4
    return total


def _in_channels(layer: _Layer) -> int:
    i = VGG19.index(layer)
    before = [x for x in VGG19[:i] if x.name.startswith("conv")]
    return before[-1].channels if before else 3


def target_pass_peak(h: int, w: int, layers: tuple[str, ...], bf16: bool) -> tuple[int, int]:
    """(peak bytes, bytes kept) of a forward pass without gradients (the photo's and the painting's targets):
    each layer's input and output are alive at once, plus the features kept so far for the losses."""
    deep = [n for n in layers if n != PIXELS]
    if not deep:
        return 0, 0
    size = 2 if bf16 else 4
    last = max(LAYER_INDEX[n] for n in deep)
    kept, peak, held = 0, 3 * h * w * 4 * 3, False  # preprocessing: the picture, flipped, normalised
    previous = 3 * h * w * size
    for layer in VGG19[: last + 1]:
        n = _elements(layer, h, w)
        peak = max(peak, kept + (0 if held else previous) + n * size)
        held = False
        if layer.name in deep:
            kept += n * 4
            held = not bf16  # in float32 the kept feature is the next layer's input itself
        previous = n * size
    return peak, kept


def _grams(layers: tuple[str, ...]) -> int:
    return sum(VGG19[LAYER_INDEX[n]].channels ** 2 * 4 for n in layers if n != PIXELS)


def _resolve_bf16(settings: Settings, device_type: str, bf16: bool | None) -> bool:
    """precision="auto" is bf16 on a GPU; on a CPU it depends on its instructions (backbone.native_bf16, which needs
    torch): unless told, the larger float32."""
    if settings.precision != "auto":
        return settings.precision == "bfloat16"
    return bf16 if bf16 is not None else device_type == "cuda"


def run_bytes(
    settings: Settings, aspect: float = 1.0, device_type: str = "cpu", bf16: bool | None = None, paintings: int = 1
) -> int:
    """Bytes a run with these settings needs above its worker's own (torch and VGG19 loaded), at its peak: the
    largest over its levels of the targets' passes (the painting at settings.style_scale, as a square: the most
    pixels for its side) and of a step (the activations kept for the backward pass, its gradients, the optimiser's
    history and the pictures it keeps). `aspect`: short side / long side. `bf16`: None resolves settings.precision
    for `device_type` (auto: bf16 on a GPU, and on a CPU that has it). Allocator slack (glibc's, cuDNN's workspaces,
    the caching allocator's) is the caller's to add."""
    bf16 = _resolve_bf16(settings, device_type, bf16)
    content, style = settings.content_layers, settings.style_layers
    grow = (2 * settings.lbfgs_history + LBFGS_OWN) if settings.optimizer == "lbfgs" else ADAM_OWN
    peak = before = 0
    for size, _ in schedule(settings):
        h, w = _dims(size, aspect)
        side = settings.style_side(size)
        picture = 3 * h * w * 4
        inputs = picture * 2 + paintings * 3 * side * side * 4
        c_peak, c_kept = target_pass_peak(h, w, content, bf16)
        s_peak, _ = target_pass_peak(side, side, style, bf16)
        targets = c_kept + paintings * _grams(style)
        # The level before's targets are still held while this level's are computed (the new Objective is built
        # before the old one is let go).
        building = before + inputs + max(c_peak, c_kept + s_peak)
        layers = tuple(dict.fromkeys(content + style))
        deepest = max((LAYER_INDEX[n] for n in layers if n != PIXELS), default=-1)
        largest = max((_elements(x, h, w) for x in VGG19[: deepest + 1]), default=0)
        step = (
            targets
            + inputs
            + saved_for_backward(h, w, layers, bf16)
            + sum(_elements(VGG19[LAYER_INDEX[n]], h, w) * 4 for n in content if n != PIXELS)  # content differences
            + 2 * largest * 4  # the backward pass's gradient in and out of the largest layer
            + (PICTURE_COPIES + grow) * picture
        )
        peak = max(peak, building, step)
        before = targets
    return int(peak)


# --- the host's memory -------------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _number(text: str | None) -> int | None:
    """A cgroup file's number; None for 'max', a v1 group's 'no limit' (about 2^63), or nothing to read."""
    if text is None or text == "max":
        return None
    try:
        value = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return None if value >= NO_LIMIT else value


def _groups(root: str) -> list[tuple[str, str, str, str]]:
    """(directory of this process's memory cgroup, its limit file, its usage file, the hierarchy's mount) for each
    hierarchy /proc/self/cgroup names: v2's (at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host) and
    v1's memory controller; the first whose limit file exists is the one."""
    text = _read(os.path.join(root, "proc/self/cgroup")) or ""
    found = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        path = path.lstrip("/")
        if controllers == "":
            for mount in ("sys/fs/cgroup", "sys/fs/cgroup/unified"):
                found.append((os.path.join(root, mount, path), "memory.max", "memory.current", mount))
        elif "memory" in controllers.split(","):
            found.append(
                (
                    os.path.join(root, "sys/fs/cgroup/memory", path),
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                    "sys/fs/cgroup/memory",
                )
            )
    return found


@dataclass(frozen=True)
class HostMemory:
    limit: int | None  # the memory group's limit in bytes (None: no limit)
    used: int | None  # the group's use now, less the page cache it can drop (None: no group's figure)
    available: int | None  # MemAvailable of /proc/meminfo: what the machine can give, whatever the group says

    def room(self) -> int | None:
        """Bytes more that can be used here now (None: unknown)."""
        rooms = [x for x in (self.available,) if x is not None]
        if self.limit is not None and self.used is not None:
            rooms.append(self.limit - self.used)
        return min(rooms) if rooms else None


def host_memory(root: str = "/", limits=None) -> HostMemory:
    """This process's memory group (cgroup v2 memory.max / memory.current, or v1 memory.limit_in_bytes /
    memory.usage_in_bytes; the smallest limit on the way up to the root, as each applies) and MemAvailable.
    Inside a container the group's path may not exist in its own view: then the mount's root is the group.
    `limits.memory_mb` (NST_MEMORY_MB), if set, is a limit too; without a group's figure of use, the use is then
    the resident memory of this process and its children (the workers)."""
    mem = _group_memory(root)
    cap = int(limits.memory_mb * MB) if limits is not None and limits.memory_mb > 0 else None
    if cap is None:
        return mem
    used = mem.used if mem.limit is not None and mem.used is not None else _resident()
    return HostMemory(min(cap, mem.limit or cap), used, mem.available)


def _resident() -> int:
    """Resident bytes of this process and its child processes (Linux; 0 elsewhere)."""
    pids, tasks = [str(os.getpid())], f"/proc/{os.getpid()}/task"
    for tid in os.listdir(tasks) if os.path.isdir(tasks) else ():
        pids += (_read(os.path.join(tasks, tid, "children")) or "").split()
    return sum(_meminfo(f"/proc/{pid}/status", "VmRSS") or 0 for pid in pids)


def _group_memory(root: str) -> HostMemory:
    limit = used = None
    for directory, limit_file, usage_file, mount in _groups(root):
        top = os.path.join(root, mount)
        if not os.path.isdir(directory):
            directory = top
        if not os.path.exists(os.path.join(directory, limit_file)):
            continue
        d = directory
        while True:
            value = _number(_read(os.path.join(d, limit_file)))
            if value is not None and (limit is None or value < limit):
                limit = value
            if os.path.normpath(d) == os.path.normpath(top) or len(d) <= len(top):
                break
            d = os.path.dirname(d)
        usage = _number(_read(os.path.join(directory, usage_file)))
        if usage is not None:
            used = max(0, usage - _inactive_file(os.path.join(directory, "memory.stat")))
        break
    return HostMemory(limit, used, _meminfo(os.path.join(root, "proc/meminfo"), "MemAvailable"))


def host_limit_bytes(root: str = "/") -> int | None:
    """This process's memory limit in bytes (cgroup v2 or v1; None: no limit)."""
    return host_memory(root).limit


def _inactive_file(stat_path: str) -> int:
    """Page cache the group can drop (docker stats leaves it out of a container's use the same way)."""
    values = {}
    for line in (_read(stat_path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values.get("total_inactive_file", values.get("inactive_file", 0))


def _meminfo(path: str, key: str) -> int | None:
    for line in (_read(path) or "").splitlines():
        name, _, rest = line.partition(":")
        if name == key and rest.split():
            return int(rest.split()[0]) * 1024
    return None


# --- what a host can paint ------------------------------------------------------------------------------------------

# Measured peak RSS of real runs over run_bytes (benchmarks/bench_memory.py): the allocator's and oneDNN's own
# buffers on top of the tensors counted.
SLACK = 1.5
# The server's own growth once it serves, with a class's pages polling (bench_load; figures in docs/benchmarks.md).
SERVER_GROWTH = 100 * MB
SMALLEST = 128  # below this a picture shows little of its painting


def margin(limits) -> int:
    """Memory kept free for the server beyond what it uses at start: its growth with sessions, and the finished
    runs it keeps (NST_RESULT_CACHE_MB)."""
    return SERVER_GROWTH + int(limits.result_cache_mb * MB)


def size_cap(mem: HostMemory, limits, slots: int, device_type: str = "cpu") -> dict:
    """The largest output side whose runs fit in this host's memory, `slots` at once, on top of what the server and
    its workers use now (call it once they have started): {"size": px or None (not even SMALLEST fits), "need":
    bytes a run of that size (or of SMALLEST) is planned with, "room": bytes free now (None: unknown), "per_run":
    bytes each run may use (None: no cap), "line": what to tell people (None: nothing to say)}. Planned in float32
    with the default style scale: any precision the page offers fits at that size (a larger style scale is
    run_fits' to check). A GPU's runs keep their activations on the GPU (its lanes plan with run_bytes): the host's
    memory does not cap them."""
    top = limits.max_size(device_type)
    room = mem.room()
    if device_type != "cpu" or room is None:
        return {"size": top, "need": 0, "room": room, "per_run": None, "line": None}
    per_slot = (room - margin(limits)) // max(1, slots)
    sizes = [top] + [s for s in range(top // 64 * 64, SMALLEST - 1, -64) if s < top]
    for size in sizes:
        need = int(SLACK * run_bytes(Settings(size=size, precision="float32"), 1.0, "cpu"))
        if need <= per_slot:
            line = None
            if size < top:
                line = (
                    f"This server has memory for runs up to {size} px (about {room / MB:.0f} MB free for "
                    f"{slots} run{'s' * (slots != 1)} at once)."
                )
            return {"size": size, "need": need, "room": room, "per_run": per_slot, "line": line}
    return {
        "size": None,
        "need": need,
        "room": room,
        "per_run": per_slot,
        "line": (
            f"This server cannot paint: about {room / MB:.0f} MB of memory is free and even a {SMALLEST} px run needs "
            f"about {(need * max(1, slots) + margin(limits)) / MB:.0f} MB (with the server's margin); it needs a host "
            "with more memory."
        ),
    }


def run_fits(settings: Settings, aspect: float, room_per_run: int | None) -> str | None:
    """One line if a run with these settings needs more than `room_per_run` bytes (size_cap's "per_run"), else
    None. precision="auto" counts as float32, the larger: the server does not know without torch."""
    if room_per_run is None:
        return None
    need = SLACK * run_bytes(settings, aspect, "cpu")
    if need <= room_per_run:
        return None
    return (
        f"This run needs about {need / MB:.0f} MB of memory and this server has about {max(0, room_per_run) / MB:.0f}"
        " MB for one: choose a smaller size or style scale."
    )
