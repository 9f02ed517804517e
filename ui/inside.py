"""The bound on the Lab's look inside VGG19 (feature maps and Gram matrices of one picture, three passes at 224 px
in the server process): one look at a time on the whole server, and a budget of new looks per client address."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from nst_core.serve.limits import Limits, Quota

T = TypeVar("T")
WINDOW = 600.0  # seconds: the per-client budget (Limits.looks_per_client) renews over 10 minutes
# A look waits this long for those before it (about a second each on a 2-core CPU), then is refused: a class of 30
# opening the panel at once waits about half a minute for the last.
WAIT_SECONDS = 120.0


class Refused(Exception):
    """A look not made now, with the one line to show."""


# Module-level, not st.cache_resource: any websocket client can clear Streamlit's caches.
_gate = threading.BoundedSemaphore(1)
_lock = threading.Lock()
_quota: tuple[int, Quota] | None = None


def _quota_for(limits: Limits) -> Quota:
    global _quota
    with _lock:
        if _quota is None or _quota[0] != limits.looks_per_client:
            _quota = (limits.looks_per_client, Quota(limits.looks_per_client, WINDOW))
        return _quota[1]


def look(limits: Limits, client: str, compute: Callable[[], T]) -> T:
    """compute() if `client` has a look left in its budget (spent in one step with the check) and the server is
    not looking for others for longer than WAIT_SECONDS; else Refused. A look refused, or whose compute() fails,
    is given back."""
    quota = _quota_for(limits)
    if not quota.take(client):
        n = limits.looks_per_client
        raise Refused(
            f"this address has looked inside the network {n} time{'s' if n != 1 else ''} in 10 minutes; "
            f"the next look is possible in {max(1, round(quota.wait(client)))} s (looks already made stay)"
        )
    if not _gate.acquire(timeout=WAIT_SECONDS):
        quota.give_back(client)
        raise Refused("the server is looking inside the network for someone else: try again in a moment")
    try:
        return compute()
    except BaseException:
        quota.give_back(client)
        raise
    finally:
        _gate.release()
