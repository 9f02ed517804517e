"""What the server keeps of a client's address on disk (the class wall's counts, the results' owners): a keyed
hash, enough to count by and to group by, never the address itself. Keyed with the data directory's own secret: an
IPv4 address could otherwise be found again by hashing all 2^32 of them."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "client.key"


def client_key(directory: Path) -> bytes:
    """The data directory's secret, made once (written whole and linked into place, so that two servers starting at
    once read the same one; readable by the server's user only). OSError if the directory cannot be used."""
    path = directory / KEY_FILE
    if not path.exists():
        tmp = directory / f"{KEY_FILE}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


def client_hash(key: bytes, client: str) -> str:
    """`client` (an address, or its network's prefix) as the server keeps it: 24 hex digits."""
    return hmac.new(key, client.encode(), hashlib.sha256).hexdigest()[:24]
