"""The server's configuration (nst_core.serve.config): read from the environment once, and a bad value is one line
that names the variable, on every page, never a traceback."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from nst_core.serve import config as configuration
from nst_core.serve.config import ROOT, Config, ConfigError, config, limits_from_env
from nst_core.serve.limits import Limits
from tests.conftest import plain


def test_an_empty_environment_gives_the_defaults():
    c = Config.from_env({})
    assert c == Config()
    assert (c.weights, c.device, c.runner) == ("original", "auto", "process")
    assert c.data_dir == ROOT / "data" and c.teacher_password is None
    assert (c.ray_address, c.ray_token_auth, c.cuda_visible_devices) == (None, False, None)
    assert c.limits == Limits()


def test_each_variable_sets_its_field():
    env = {
        "NST_WEIGHTS": "random",
        "NST_DEVICE": "cuda:1",
        "NST_RUNNER": "thread",
        "NST_DATA_DIR": "/srv/nst",
        "NST_TEACHER_PASSWORD": "correct horse",
        "RAY_ADDRESS": "10.0.0.1:6379",
        "RAY_AUTH_MODE": "token",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "NST_MAX_QUEUE": "7",
        "NST_MAX_SECONDS": "12.5",
        "NST_CLIENT_HEADER": "X-Real-IP",
    }
    c = Config.from_env(env)
    assert (c.weights, c.device, c.runner, str(c.data_dir)) == ("random", "cuda:1", "thread", "/srv/nst")
    assert (c.teacher_password, c.ray_address, c.ray_token_auth) == ("correct horse", "10.0.0.1:6379", True)
    assert c.cuda_visible_devices == "2,3"
    assert (c.limits.max_queue, c.limits.max_seconds, c.limits.client_header) == (7, 12.5, "X-Real-IP")
    assert c.limits == limits_from_env(env)
    # Every field that names a variable is set by it (none is left at its default by the variables above).
    for f in dataclasses.fields(Config):
        if "env" in f.metadata:
            assert getattr(c, f.name) != f.default, f.metadata["env"]


def test_an_empty_value_is_the_default_and_another_ray_auth_mode_is_no_token():
    c = Config.from_env({"NST_WEIGHTS": "", "NST_DEVICE": "", "NST_RUNNER": "", "RAY_AUTH_MODE": "password"})
    assert (c.weights, c.device, c.runner, c.ray_token_auth) == ("original", "auto", "process", False)


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("NST_MAX_QUEUE", "lots", "is not a number"),
        ("NST_MAX_QUEUE", "2.5", "is not a number"),  # a count is a whole number
        ("NST_MAX_SECONDS", "nan", "is not a number"),
        ("NST_UPLOAD_MB", "-1", "must be 0 or more"),
        ("NST_ROOM_HOURS", "-0.5", "must be 0 or more"),
        ("NST_RUNNER", "gpu", "is not one of process, ray, thread"),
        ("NST_DEVICE", "gpu", "is not one of auto, cpu, cuda, cuda:N, mps"),
        ("NST_DEVICE", "cuda:x", "is not one of auto, cpu, cuda, cuda:N, mps"),
    ],
)
def test_a_bad_value_is_one_line_that_names_its_variable(name, value, says):
    with pytest.raises(ConfigError) as e:
        Config.from_env({name: value})
    assert str(e.value) == f"{name}={value!r} {says}"


def test_config_reads_the_environment_once_and_again_after_reset(monkeypatch):
    monkeypatch.setenv("NST_MAX_QUEUE", "3")
    first = config()
    assert first.limits.max_queue == 3
    monkeypatch.setenv("NST_MAX_QUEUE", "4")
    assert config() is first  # read once per process
    configuration.reset()
    assert config().limits.max_queue == 4
    monkeypatch.setenv("NST_MAX_QUEUE", "lots")
    configuration.reset()
    for _ in range(2):  # a bad value is not kept: every call says so
        with pytest.raises(ConfigError, match="^NST_MAX_QUEUE='lots' is not a number$"):
            config()
    given = Config(runner="thread")
    configuration.reset(given)
    assert config() is given


# Each page, in a server process of its own started with a bad value (as an operator would start it): the page
# shows one error that names the variable, and no exception (no traceback on the page, none at import).
PAGE = """
import json
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({path!r}, default_timeout=120)
at.run()
print(json.dumps({{"exception": [e.message for e in at.exception], "error": [e.value for e in at.error]}}))
"""


@pytest.mark.parametrize(
    "page, name, value",
    [
        ("app.py", "NST_MAX_QUEUE", "lots"),
        ("ui/pages/studio.py", "NST_MAX_QUEUE", "lots"),
        ("ui/pages/lab.py", "NST_MAX_QUEUE", "lots"),
        ("ui/pages/classroom.py", "NST_MAX_QUEUE", "lots"),
        ("app.py", "NST_RUNNER", "gpu"),
    ],
)
def test_every_page_says_a_bad_value_in_one_line(page, name, value):
    env = {**os.environ, name: value}
    code = PAGE.format(path=str(ROOT / page))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout.strip().splitlines()[-1])
    assert shown["exception"] == []
    [error] = [plain(e) for e in shown["error"]]
    assert f"{name}={value!r}" in error and len(error.splitlines()) == 1
    assert error.startswith("The server's configuration is wrong:")  # the same words on every page
