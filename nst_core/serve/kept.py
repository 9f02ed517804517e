"""One object per server process (the result store, the class wall), with a thread that tidies it.

Such an object is kept in a module, not in a session: no client message can clear it, and every page shares it. It is
made on first use, from what it is made of (a data directory, the limits), never on import: importing reads no
configuration. It is made again when what it is made of changes (a reconfigured server, a test's data directory).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    """make(*of) on the first get(*of), and again when `of` changes; while it is the one kept, a daemon thread calls
    tidy(it) every `every` seconds (expired rooms and results go even when no page is open). If make raises, what was
    kept stays kept and the next get tries again."""

    def __init__(
        self, make: Callable[..., T], tidy: Callable[[T], object] | None = None, name: str = "nst-tidy", every=600.0
    ):
        self._make, self._tidy, self._name, self._every = make, tidy, name, every
        self._lock = threading.Lock()
        self._value: T | None = None
        self._of: tuple | None = None

    def get(self, *of) -> T:
        with self._lock:
            if self._value is None or self._of != of:
                value = self._make(*of)
                self._value, self._of = value, of
                if self._tidy is not None:
                    threading.Thread(target=self._tidy_while_kept, args=(value,), name=self._name, daemon=True).start()
            return self._value

    def forget(self) -> None:
        """The next get makes a new one (as a restarted server would); the old one's thread ends."""
        with self._lock:
            self._value = self._of = None

    def _tidy_while_kept(self, value: T) -> None:
        while self._value is value:  # ends once another has taken its place or it was forgotten: no thread piles up
            with contextlib.suppress(Exception):  # (a failed tidy-up is tried again next time)
                self._tidy(value)
            time.sleep(self._every)
