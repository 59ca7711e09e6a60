"""Who may register (0x0100) and how often: the policy a server's sessions share.

A registration hands out the code that makes a connection *be* a device, so it is guarded
like a login:

- A phone that already has an auth code is refused with 0x8100 result 3 ("terminal already
  registered"), unless an operator cleared the code (``cmsv6 device reset-auth PHONE``) or
  ``reregister = "terminal_id"`` and the registration carries the terminal id on record
  for the device (``cmsv6 device add --terminal-id``, or the one its last accepted
  registration gave). The database decides that (``cmsv6.db.devices.register``).
- Registrations are counted per source address and per phone over a window; one over the
  bound is not answered and the connection is closed (the terminal tries again later).
  The tables are capped: past ``MAX_ENTRIES`` keys the oldest window is forgotten, so a
  flood of addresses costs bounded memory (and weakens only the counts it evicts).
- ``registration = "open"`` adds at most ``open_per_hour`` devices an hour and
  ``open_total`` devices in all (counted in the database, so across servers and
  restarts); past either, unknown terminals get result 4 as with ``"known"``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from attrs import frozen
from twisted.internet.interfaces import IReactorTime

#: Keys each rate table holds at most.
MAX_ENTRIES = 10_000


@frozen
class RegistrationPolicy:
    """A server's registration settings (``[gateway]`` or ``[login]``)."""

    open: bool = False
    #: "never": an already-registered phone is refused until an operator resets it;
    #: "terminal_id": also accepted when its terminal id matches the one on record.
    reregister: str = "never"
    window: float = 60.0
    per_address: int = 20
    per_phone: int = 3
    open_per_hour: int = 60
    open_total: int = 1000

    @classmethod
    def from_config(cls, conf: Any) -> "RegistrationPolicy":
        """From a ``LoginConfig`` or ``GatewayConfig`` (they have the same keys)."""
        return cls(
            open=conf.registration == "open", reregister=conf.reregister,
            window=conf.register_window, per_address=conf.register_per_address,
            per_phone=conf.register_per_phone, open_per_hour=conf.open_per_hour,
            open_total=conf.open_total,
        )  # fmt: skip


class RateTable:
    """Events per key in fixed windows, in at most ``max_entries`` keys."""

    def __init__(self, clock: IReactorTime, limit: int, window: float,
                 max_entries: int = MAX_ENTRIES) -> None:  # fmt: skip
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_entries = max_entries
        #: key -> [window start, count]; ordered by window start (oldest first).
        self._counts: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def hit(self, key: str) -> bool:
        """Count one event for ``key``; False if it is over the limit."""
        now = self.clock.seconds()
        self._expire(now)
        entry = self._counts.get(key)
        if entry is None:
            entry = self._counts[key] = [now, 0]
            while len(self._counts) > self.max_entries:
                self._counts.popitem(last=False)
        entry[1] += 1
        return entry[1] <= self.limit

    def _expire(self, now: float) -> None:
        while self._counts:
            key, (start, _) = next(iter(self._counts.items()))
            if now - start < self.window:
                return
            del self._counts[key]


def peer_host(peer: str) -> str:
    """The address part of a link's ``host:port``."""
    return peer.rsplit(":", 1)[0] if ":" in peer else peer


class Registrar:
    """The rate tables of one server, and its policy."""

    def __init__(self, policy: RegistrationPolicy, clock: IReactorTime) -> None:
        self.policy = policy
        self.by_address = RateTable(clock, policy.per_address, policy.window)
        self.by_phone = RateTable(clock, policy.per_phone, policy.window)

    def admit(self, peer: str, phone: str) -> str | None:
        """Count a registration of ``phone`` from ``peer``; None if it may go on, else
        why it may not."""
        p = self.policy
        if not self.by_address.hit(peer_host(peer)):
            return f"more than {p.per_address} registrations from this address in {p.window:g} s"
        if not self.by_phone.hit(phone):
            return f"more than {p.per_phone} registrations of this phone in {p.window:g} s"
        return None
