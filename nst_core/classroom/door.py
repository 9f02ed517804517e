"""The class wall's door: who may look up a room code, try a teacher password or open a room.

Rooms opened are counted per client address and hour; wrong room codes per 10 minutes, per address (a class's budget:
a school is one address) and per tab (a small one); wrong teacher passwords per address and 10 minutes. Only what is
suspicious counts: a right code, or the code of a room that was deleted or has expired, never does. The server keeps
one Door (nst_core.classroom.server), so no client message can reset its counts; a page hands it the tab (Tab) a
request comes from.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nst_core.serve.limits import Limits, Quota

from .wall import NoRoom, Room, RoomGone, Wall, WallError, normalise_code


@dataclass
class Tab:
    """A browser tab at the door: its session, its client address (an IPv6 client stands for its /64), and the codes
    it has looked up, kept in its session: those a room had, open or gone, and those no room had."""

    session: str
    client: str
    known: set[str] = field(default_factory=set)
    wrong: set[str] = field(default_factory=set)


def site(client: str) -> str:
    """The /48 an IPv6 client's /64 is in; any other client is its own site."""
    if client.endswith("/64"):
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_network(client).supernet(new_prefix=48))
    return client


def remember(codes: set, code: str) -> None:
    """A code a tab has looked up, among its first hundred (a script's tab could otherwise grow the set forever)."""
    if len(codes) < 100:
        codes.add(code)


class Door:
    """The quotas of one server, sized from its limits, and the lookups, passwords and openings they count."""

    def __init__(self, limits: Limits, sleep: Callable[[float], object] = time.sleep):
        self.limits = limits
        self.rooms_opened = Quota(limits.rooms_per_client, 3600)
        self.wrong_codes = Quota(limits.codes_per_client, 600)
        self.wrong_codes_tab = Quota(limits.codes_per_session, 600)
        # An IPv6 client counts as its /64, but a site may be given a /48 or a /56 and use any /64 in it: its /48
        # gets ten addresses' budget of wrong codes, on top of each /64's.
        self.wrong_codes_site = Quota(10 * limits.codes_per_client, 600)
        self.wrong_passwords = Quota(limits.passwords_per_client, 600)
        # Past its budget of wrong codes, an address's lookups of codes new to their tab wait NST_CODES_DELAY seconds
        # each, one at a time per address (a lock per address, striped): a right code still joins, but codes can no
        # longer be tried at the server's speed. A code the tab has looked up before (a Studio tab reruns on every
        # slider move) is not held up.
        self.slow = [threading.Lock() for _ in range(64)]
        self.sleep = sleep

    def wrong_code(self, tab: Tab) -> None:
        """Count one wrong room code against the tab and its client address (and an IPv6 client's /48); raises
        WallError, saying how long to wait, once one has used its budget (NST_CODES_PER_SESSION,
        NST_CODES_PER_CLIENT, ten times that for a /48)."""
        for quota, who, where in (
            (self.wrong_codes_tab, tab.session, "this tab"),
            (self.wrong_codes, tab.client, "your network"),
            (self.wrong_codes_site, site(tab.client), "your network"),
        ):
            if not quota.take(who):
                wait = max(1, round(quota.wait(who) / 60))
                raise WallError(f"too many wrong room codes from {where}: try again in {wait} min")

    def find_room(self, wall: Wall, code: str, tab: Tab) -> Room:
        """wall.room(code). A right code always works, and a deleted or expired room is said as such; only a code
        that no room had counts, against the tab and its address. Past the address's budget every lookup of a code
        new to the tab waits its turn (see self.slow). Raises WallError with the reason, or with how long to wait."""
        norm, client = normalise_code(code), tab.client
        if norm not in tab.known and norm not in tab.wrong:
            if self.wrong_codes.wait(client) > 0 or self.wrong_codes_site.wait(site(client)) > 0:
                with self.slow[hash(site(client)) % len(self.slow)]:  # (one turn for all the /64s of a /48)
                    self.sleep(self.limits.codes_delay)
        try:
            room = wall.room(code)
        except NoRoom:
            # Once per code and tab, refused or not: a Studio tab whose link has a wrong code looks it up again on
            # every rerun, and would otherwise spend its own budget on each while its address's is used up.
            if norm not in tab.wrong:
                try:
                    self.wrong_code(tab)
                finally:
                    remember(tab.wrong, norm)
            raise
        except RoomGone:
            remember(tab.known, norm)
            raise
        remember(tab.known, norm)
        return room

    def open_room(
        self, wall: Wall, title: str, password: str | None, given: str | None, client: str
    ) -> tuple[Room, str]:
        """wall.open_room, for a teacher at `client`. With the server's NST_TEACHER_PASSWORD (`password`), if it has
        one, the right password (`given`) opens a room (up to NST_MAX_ROOMS); wrong ones count against the address,
        or an IPv6 client's /48 (NST_PASSWORDS_PER_CLIENT), and once they are spent every try waits, the right one
        too: past the budget a guess learns nothing. Without a password, opening is open to all but bounded per
        client address: rooms_opened per hour, and a fifth of the server's rooms open at once."""
        if password is not None:
            who = site(client)  # (an IPv6 /48, whose /64s a guesser may take in turn)
            wait = self.wrong_passwords.wait(who)
            right = hmac.compare_digest((given or "").encode(), password.encode())
            if wait > 0 or (not right and not self.wrong_passwords.take(who)):
                wait = max(1, round(max(wait, self.wrong_passwords.wait(who)) / 60))
                raise WallError(f"too many wrong teacher passwords from your network: try again in {wait} min")
            if not right:
                raise WallError("that is not the teacher password of this server")
            return wall.open_room(title)
        if not self.rooms_opened.take(client):
            wait = max(1, round(self.rooms_opened.wait(client) / 60))
            raise WallError(
                f"your network has opened {self.rooms_opened.count} rooms in the last hour, the limit "
                f"(NST_ROOMS_PER_CLIENT): try again in {wait} min, or use a room you have opened"
            )
        try:
            return wall.open_room(title, client=client)
        except WallError:
            self.rooms_opened.give_back(client)  # no room was opened: it does not count
            raise
