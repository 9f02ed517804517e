"""The classroom's part of the server process: its one Wall (in NST_DATA_DIR), rid of expired rooms by a thread of
its own every 10 minutes, and its one Door (the quotas on room codes, teacher passwords and rooms opened).

Both are made on first use from config(), never on import: a bad NST_* value is a ConfigError (a ValueError) where
they are first used, one line on the page, not a module that fails to import.
"""

from __future__ import annotations

from nst_core.serve import config as configs
from nst_core.serve.kept import Kept

from .door import Door
from .wall import Wall

_wall: Kept[Wall] = Kept(Wall, Wall.expire, "nst-wall-expiry")
_door: Kept[Door] = Kept(Door)


def open_wall() -> Wall:
    """The server's one Wall. Raises WallError if the data directory is unusable (the next call tries again), or
    ConfigError for a bad NST_* value."""
    config = configs.config()
    return _wall.get(config.data_dir, config.limits)


def door() -> Door:
    """The server's one Door, its quotas sized from the server's limits."""
    return _door.get(configs.config().limits)


def forget_wall() -> None:
    """As a restarted server would: the environment read again (a changed NST_DATA_DIR) and the wall opened anew on
    the next open_wall() (tests). The door, and what it has counted, stay."""
    configs.reset()
    _wall.forget()
