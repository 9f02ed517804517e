"""The README's Python example runs as written (on its samples, in a scratch directory) and saves a picture."""

import re

from PIL import Image

from tests.conftest import ROOT


def test_the_readme_python_example_runs_and_saves_the_picture(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^## From Python\n\n```python\n(.*?)^```", text, re.M | re.S)
    assert len(blocks) == 1, "the README has one 'From Python' example"
    code = blocks[0]
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    with Image.open(tmp_path / "out.png") as im:
        assert max(im.size) == 256
