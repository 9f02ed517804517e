"""The command line, end to end in a subprocess."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from nst_core.images import png_metadata
from tests.conftest import ROOT, SAMPLES

C, S = str(SAMPLES / "content" / "coffee.png"), str(SAMPLES / "styles" / "wave_crop.jpg")
pytestmark = pytest.mark.process


def cli(*args):
    return python("-m", "nst_core", *args)


def in_process(capsys, *args) -> tuple[int, str]:
    """`python -m nst_core ARGS` as main() in this process (an exception that escaped main() fails the test):
    its exit code and what it wrote to stderr."""
    from nst_core.__main__ import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def python(*args):
    """A fresh Python process in the project root (`python("-c", code)`, `python("-m", module, ...)`)."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_end_to_end(tmp_path):
    out, gif, metrics = tmp_path / "o.png", tmp_path / "o.gif", tmp_path / "m.json"
    r = cli(
        C,
        S,
        S,
        "-o",
        str(out),
        "--gif",
        str(gif),
        "--metrics",
        str(metrics),
        "--size",
        "64",
        "--iterations",
        "6",
        "--preview-every",
        "2",
        "--style-blend",
        "2,1",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--precision",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    assert "step 6/6" in r.stderr
    assert Image.open(out).size == (64, 43)
    assert png_metadata(out.read_bytes())["settings"]["style_blend"] == [2.0, 1.0]
    with Image.open(gif) as g:
        assert g.n_frames == 3 and g.info["loop"] == 0
    m = json.loads(metrics.read_text())
    assert m["evaluations"] == 6 and [x["step"] for x in m["losses"]] == list(range(1, 7))
    assert set(m["losses"][0]) == {"step", "size", "elapsed", "content", "style", "tv", "total"}
    assert all(x["size"] == [64, 43] for x in m["losses"])  # one level: none is smaller than 64 px
    assert m["settings"]["precision"] == "float32"
    assert m["device"].startswith("CPU") and not m["device"].endswith("bf16")  # what the run used, not the CPU
    assert "original" in m["weights"] and m["settings"]["size"] == 64
    assert m["seconds"] > 0


def test_cli_writes_mp4_and_webp_animations_with_an_intro(tmp_path):
    import av

    mp4, webp = tmp_path / "o.mp4", tmp_path / "o.webp"
    r = cli(
        C,
        S,
        "-o",
        str(tmp_path / "o.png"),
        "--animation",
        str(mp4),
        "--animation",
        str(webp),
        "--intro",
        "--size",
        "64",
        "--iterations",
        "4",
        "--preview-every",
        "2",
        "--device",
        "cpu",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    with av.open(str(mp4)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    with Image.open(webp) as w:
        assert w.n_frames == 3 and w.size == (64, 43)  # the intro card and the two saved steps


def test_cli_bad_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    r = cli(C, str(bad), "-o", str(tmp_path / "o.png"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "bad.jpg is not an image" in r.stderr
    assert not (tmp_path / "o.png").exists()


def test_cli_bad_options_are_one_line_exit_2(tmp_path, capsys):
    """In this process (test_cli_bad_file_is_one_line_exit_2 runs the real process)."""
    for args in (
        ["--size", "3"],
        ["--style-layers", "relu9_1"],
        ["--optimizer", "sgd"],
        ["--weights", "nowhere.pth"],
        ["--style-layer-weights", "a,b"],
        ["--animation", "out.avi"],
    ):
        code, err = in_process(capsys, C, S, "-o", str(tmp_path / "o.png"), "-q", *args)
        assert code == 2, args
        assert err.strip().count("\n") == 0 and err.startswith(("error: ", "python -m nst_core: error: ")), err
    assert not (tmp_path / "o.png").exists()


def test_help_and_the_server_side_modules_do_not_load_torch():
    """--help answers without importing torch (about 2 s), and the web server's modules (the runner, the
    worker's and Ray's server side, images, settings, the Lab's plans, the class wall, the ui, and what the pages do
    with a clip on every rerun) keep torch out of the Streamlit process."""
    code = (
        "import sys, runpy\n"
        "import nst_core.serve.queue, nst_core.serve.backends.process, nst_core.serve.service, nst_core.serve.cost\n"
        "import nst_core.images, nst_core.settings, nst_core.schedule, nst_core.animation\n"
        "import nst_core.classroom.wall, nst_core.serve.backends.ray, nst_core.serve.backends.slots\n"
        "import nst_core.tasks.lab, nst_core.tasks.still, nst_core.tasks.clip, nst_core.serve.backends.thread\n"
        "import nst_core.classroom.pace, nst_core.classroom.door, nst_core.classroom.server, nst_core.clips\n"
        "import ui.common, ui.fields, ui.job_panel, ui.results, ui.classroom, ui.clip, ui.experiments\n"
        "from nst_core import Settings, load_image, png_bytes\n"
        # What the pages do on every rerun with a clip: probe it and size its task (the estimate, the Lab's plan).
        f"clip = open({str(ROOT / 'samples' / 'clips' / 'chelsea_pan.mp4')!r}, 'rb').read()\n"
        "nst_core.tasks.clip.ClipTask.of(clip, [], Settings(size=64), 3).work()\n"
        "from PIL import Image\nnst_core.tasks.lab.why_videos_flicker(clip, Image.new('RGB', (64, 64)), 64).work()\n"
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules, 'server side'\n"
        "sys.argv = ['nst_core', '--help']\n"
        "try:\n    runpy.run_module('nst_core', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, '--help'\n"
        "import nst_core.backbone\n"
        "assert 'torchvision' not in sys.modules, 'the backbone builds VGG19 itself'\n"
    )
    r = python("-c", code)
    assert r.returncode == 0, r.stderr
    assert "--iterations" in r.stdout


def test_a_run_does_not_import_torch_dynamo():
    """torch.optim imports torch._dynamo (about 1 s of a CLI run's start-up) on an optimiser's first use unless
    nst_core.transfer pre-fills its cache; this checks that the L-BFGS run stays clear of it."""
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from nst_core import Settings\nfrom nst_core.transfer import run\n"
        "im = Image.new('RGB', (32, 32), 'red')\n"
        "run(im, [Image.new('RGB', (32, 32), 'blue')], Settings(size=32, iterations=3, weights='random'))\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    r = python("-c", code)
    assert r.returncode == 0, r.stderr


def test_cli_masks_one_per_painting_and_their_errors(tmp_path, capsys):
    """A mask of another size with the photo's shape, in a real process; the bad masks in this process."""
    from nst_core.images import decode_mask

    photo = Image.open(C)
    w, h = photo.size
    mask = Image.new("L", (w * 2, h * 2), 0)  # any size, the photo's shape
    mask.paste(255, (w, 0, 2 * w, 2 * h))
    good = tmp_path / "mask.png"
    mask.save(good)
    out = tmp_path / "o.png"
    r = cli(C, S, "-o", str(out), "--mask", str(good), "--size", "48", "--iterations", "3", "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    [text] = png_metadata(out.read_bytes())["settings"]["masks"]
    assert (
        decode_mask(text).getpixel((5, 5)) == 0 and decode_mask(text).getpixel((decode_mask(text).width - 5, 5)) == 255
    )
    square, empty, junk = tmp_path / "square.png", tmp_path / "empty.png", tmp_path / "junk.png"
    Image.new("L", (100, 100), 255).save(square)
    Image.new("L", (w, h), 0).save(empty)
    junk.write_bytes(b"this is not a picture")
    for args, says in (
        (["--mask", str(square)], "square.png is 100x100"),
        (["--mask", str(empty)], "empty.png is empty"),
        (["--mask", str(junk)], "junk.png is not an image"),
        (["--mask", str(good), "--mask", str(good)], "2 --mask for 1 paintings"),
        (["--mask", str(tmp_path / "nowhere.png")], "cannot read"),
    ):
        code, err = in_process(
            capsys, C, S, "-o", str(tmp_path / "x.png"), "--size", "48", "--iterations", "2", "-q", *args
        )
        assert code == 2 and err.strip().count("\n") == 0 and says in err, (args, err)
    assert not (tmp_path / "x.png").exists()
