"""The login server's "memory data": live gateways and which gateway each device is on.

Nothing here is read from the database: gateways announce themselves over their AMP link
(``AnnounceGateway``), report their load and their devices coming and going, and after a
reconnect (or a standby login server taking over) announce every device again, so this is
rebuilt from the gateways alone. A gateway whose link drops, or that stops reporting, is
dead and its devices are forgotten.

``Directory`` is also the ``Cluster`` the web front end (``cmsv6.web``) uses: where a
device is, sending it a command through its gateway, the media server to use.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Protocol

from attrs import define, field
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.address import split_address
from cmsv6.phone import canonical_phone
from cmsv6.protocols.jt808.retransmit import waits
from cmsv6.rpc.commands import (
    MAX_CAPACITY,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    SendMessage,
    Unavailable,
)

_log = Logger()


class GatewayLink(Protocol):
    """The AMP link a gateway announced itself on."""

    def callRemote(self, command: type[amp.Command], **kw: Any) -> defer.Deferred[Any]: ...  # noqa: N802

    def close(self) -> None: ...


@define(eq=False)
class GatewayEntry:
    """A live gateway as login knows it."""

    id: str
    public_jt808: str
    cluster: str
    capacity: int
    link: GatewayLink
    announced: float
    last_report: float
    reported_online: int = 0
    connections: int = 0
    #: Phones online on it (from its DevicesChanged).
    devices: set[str] = field(factory=set)
    #: Phones login sent here that have not come online yet, with when to stop counting them.
    pending: dict[str, float] = field(factory=dict)

    @property
    def load(self) -> int:
        """Devices on it, and on their way to it."""
        return len(self.devices) + len(self.pending)

    @property
    def has_room(self) -> bool:
        return self.load < self.capacity


class Directory:
    """Live gateways, online devices, assignments. See the module docstring."""

    #: Seconds an assignment counts towards a gateway's load before the device shows up.
    PENDING_FOR = 30.0
    #: Seconds without a load report after which a gateway is taken for dead.
    STALE_AFTER = 15.0
    #: Previous assignments remembered (for stickiness) at most; the oldest go first.
    MAX_REMEMBERED = 1_000_000
    #: Retransmissions a gateway makes of a command (its default).
    COMMAND_RETRIES = 3

    def __init__(
        self,
        clock: IReactorTime,
        login_id: str = "login",
    ) -> None:
        self.clock = clock
        self.login_id = login_id
        self.gateways: dict[str, GatewayEntry] = {}
        #: phone → id of the gateway it is online on.
        self.devices: dict[str, str] = {}
        #: phone → id of the gateway it was last on or sent to (stickiness).
        self.previous: OrderedDict[str, str] = OrderedDict()
        #: Called with the chosen gateway's id on every assignment (metrics, tests).
        self.on_assigned: list[Callable[[str, str], None]] = []

    # -- from the gateways' links ----------------------------------------------------------

    def announce(
        self, link: GatewayLink, gateway_id: str, public_jt808: str, cluster: str, capacity: int
    ) -> GatewayEntry:
        """A gateway announced itself on ``link``; replaces an older entry under that id."""
        if not gateway_id or not 0 <= capacity <= MAX_CAPACITY:
            raise BadRequest(f"a gateway needs an id and a capacity of 0 to {MAX_CAPACITY}")
        try:
            split_address(public_jt808)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        current = self.entry_of(link)
        if current is not None and current.id != gateway_id:
            raise BadRequest(f"this link announced {current.id} already")
        old = self.gateways.get(gateway_id)
        if old is not None:
            _log.info("gateway {id} announced again; the previous link is dropped", id=gateway_id)
            self._drop(old, "announced again")
            if old.link is not link:
                old.link.close()
        now = self.clock.seconds()
        entry = GatewayEntry(gateway_id, public_jt808, cluster, capacity, link, now, now)
        self.gateways[gateway_id] = entry
        link.gateway = entry  # type: ignore[attr-defined]
        _log.info("gateway {id} is live: devices to {public}, capacity {capacity}",
                  id=gateway_id, public=public_jt808, capacity=capacity)
        return entry

    def entry_of(self, link: GatewayLink) -> GatewayEntry | None:
        """The live entry announced on ``link``, if any."""
        entry: GatewayEntry | None = getattr(link, "gateway", None)
        if entry is None or self.gateways.get(entry.id) is not entry:
            return None
        return entry

    def link_lost(self, link: GatewayLink) -> None:
        """The gateway's link dropped: it is dead."""
        entry = self.entry_of(link)
        if entry is not None:
            self._drop(entry, "link lost")

    def report_load(self, link: GatewayLink, online: int, connections: int) -> None:
        entry = self._require(link)
        entry.reported_online = online
        entry.connections = connections
        entry.last_report = self.clock.seconds()

    def devices_changed(self, link: GatewayLink, online: list[str], offline: list[str]) -> None:
        entry = self._require(link)
        entry.last_report = self.clock.seconds()
        for raw in offline:
            phone = canonical_phone(raw)
            entry.devices.discard(phone)
            if self.devices.get(phone) == entry.id:
                del self.devices[phone]
        for raw in online:
            phone = canonical_phone(raw)
            other = self.devices.get(phone)
            if other is not None and other != entry.id:
                # It moved (and its old gateway has not said so yet): the newer one wins.
                old = self.gateways.get(other)
                if old is not None:
                    old.devices.discard(phone)
            self.devices[phone] = entry.id
            entry.devices.add(phone)
            entry.pending.pop(phone, None)
            self._remember(phone, entry.id)

    def _require(self, link: GatewayLink) -> GatewayEntry:
        entry = self.entry_of(link)
        if entry is None:
            raise BadRequest("announce the gateway first")
        return entry

    def _drop(self, entry: GatewayEntry, reason: str) -> None:
        if self.gateways.get(entry.id) is not entry:
            return
        del self.gateways[entry.id]
        for phone in entry.devices:
            if self.devices.get(phone) == entry.id:
                del self.devices[phone]
        _log.info("gateway {id} is dead ({reason}); {n} devices forgotten", id=entry.id,
                  reason=reason, n=len(entry.devices))

    def tick(self) -> None:
        """Periodic housekeeping: stale assignments and gateways that stopped reporting."""
        now = self.clock.seconds()
        for entry in list(self.gateways.values()):
            if now - entry.last_report > self.STALE_AFTER:
                self._drop(entry, f"no report for {now - entry.last_report:.0f} s")
                entry.link.close()
                continue
            if entry.pending:
                for phone in [p for p, until in entry.pending.items() if until <= now]:
                    del entry.pending[phone]

    def clear(self) -> None:
        """Forget every gateway (login is stepping down; the links are being closed)."""
        for entry in list(self.gateways.values()):
            self._drop(entry, "login stepped down")

    # -- assignment --------------------------------------------------------------------------

    def choose(self, phone: str) -> GatewayEntry | None:
        """The gateway for a device: the one it is on or was last sent to while that one is
        alive and has room, else the least loaded (relative to capacity); None if no live
        gateway has room."""
        phone = canonical_phone(phone)
        for gateway_id in (self.devices.get(phone), self.previous.get(phone)):
            entry = self.gateways.get(gateway_id) if gateway_id is not None else None
            if entry is not None and (entry.has_room or phone in entry.devices):
                return entry
        best: GatewayEntry | None = None
        best_key: tuple[float, int, str] | None = None
        for entry in self.gateways.values():
            if not entry.has_room:
                continue
            key = (entry.load / entry.capacity, entry.load, entry.id)
            if best_key is None or key < best_key:
                best, best_key = entry, key
        return best

    def assigned(self, phone: str, entry: GatewayEntry) -> None:
        """The device was told to go to ``entry``: count it there until it shows up."""
        phone = canonical_phone(phone)
        if phone not in entry.devices:
            entry.pending[phone] = self.clock.seconds() + self.PENDING_FOR
        self._remember(phone, entry.id)
        for callback in self.on_assigned:
            callback(phone, entry.id)

    def _remember(self, phone: str, gateway_id: str) -> None:
        previous = self.previous
        previous[phone] = gateway_id
        previous.move_to_end(phone)
        while len(previous) > self.MAX_REMEMBERED:
            previous.popitem(last=False)

    # -- Cluster: for the web front end --------------------------------------------------------

    def device_gateway(self, phone: str) -> str | None:
        return self.devices.get(canonical_phone(phone))

    def online(self) -> dict[str, str]:
        return dict(self.devices)

    def media_server(self) -> str | None:
        return None  # media servers do not announce themselves yet

    def send_to_device(
        self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
        body_2019: bytes | None = None, by: str | None = None, command: int | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """``SendMessage`` through the device's gateway (``body`` for a 2013 session,
        ``body_2019`` for a 2019 one); fires with ``{"msg_id", "version", "body"}``, the
        reply's body as the device sent it; errbacks DeviceOffline, CommandTimeout,
        BadRequest or Unavailable. ``by`` (who asked) and ``command`` (the ``commands`` row
        recorded for it) go to the gateway's own record of the command."""
        phone = canonical_phone(phone)
        gateway_id = self.devices.get(phone)
        entry = self.gateways.get(gateway_id) if gateway_id is not None else None
        if entry is None:
            return defer.fail(DeviceOffline(f"{phone} is not online"))
        # The gateway retransmits (JT/T 808 §6.1); bound the wait anyway.
        bound = sum(waits(timeout, self.COMMAND_RETRIES)) + 10.0
        arguments: dict[str, Any] = {"phone": phone, "msg_id": msg_id, "body": body,
                                     "timeout": timeout}  # fmt: skip
        for name, value in (("body_2019", body_2019), ("by", by), ("command", command)):
            if value is not None:
                arguments[name] = value
        # Over the link the gateway announced itself on (and proved its id on): login never
        # connects to an address a gateway gives it.
        d = entry.link.callRemote(SendMessage, **arguments).addTimeout(bound, self.clock)
        return d.addErrback(_command_failed, phone, entry.id)


def _command_failed(failure: Failure, phone: str, gateway_id: str) -> Failure:
    """The declared errors pass as they are; a gateway that cannot be reached or does not
    answer is Unavailable, and anything else (a bug) is logged and Unavailable too."""
    if failure.check(DeviceOffline, CommandTimeout, BadRequest, Unavailable):
        return failure
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return Failure(Unavailable(f"gateway {gateway_id} did not answer for {phone}"))
    if failure.check(error.ConnectError, error.ConnectionLost, error.ConnectionDone):
        return Failure(Unavailable(f"gateway {gateway_id} unreachable: {failure.getErrorMessage()}"))
    _log.failure("command to {phone} through {gateway} failed", failure, phone=phone,
                 gateway=gateway_id)
    return Failure(Unavailable(failure.getErrorMessage()))
