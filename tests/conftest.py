"""Shared fixtures: the real offline backbone (loaded once) and small sample images."""

from pathlib import Path

import pytest

from nst_core import load_backbone, load_image
from nst_core.images import fit

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture(scope="session")
def backbone():
    return load_backbone("original", "cpu")


@pytest.fixture(scope="session")
def content():
    return fit(load_image(SAMPLES / "content" / "chelsea.png"), 96)


@pytest.fixture(scope="session")
def style():
    return fit(load_image(SAMPLES / "styles" / "starry_night.jpg"), 96)


@pytest.fixture(scope="session")
def style2():
    return fit(load_image(SAMPLES / "styles" / "the_scream.jpg"), 96)
