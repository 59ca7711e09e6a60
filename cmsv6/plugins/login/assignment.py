"""Device assignment on login's ``jt808`` endpoint (the seed's tracking flow).

A device configured with the login server's address connects, registers (0x0100 → 0x8100)
and authenticates (0x0102 → 0x8001), in the terminal layer (``cmsv6.terminal``) exactly
as on a gateway. Login then picks a gateway (``Directory.choose``: the one it is on or was
sent to while that one is alive, else the least loaded) and points the device at it with
0x8103 in the device's protocol version: main server = the gateway, backup server = login
itself, so a device whose gateway dies comes back here and is reassigned. Login waits
(bounded) for the device's 0x0001 and closes; the device reconnects to the gateway and
authenticates there with the same code. With no live gateway (or none with room) the
authentication is answered with 0x8001 result 1 and the connection closed; the device
retries later.

The authentication is answered with 0x8001 result 0 before the 0x8103, as the standard
says. An earlier version left it unanswered, for fear that a device on its backup address
(login) told "authenticated" would count that session a success and, when 0x8103 named
the main server it already had, stay on login in a loop. No unit was seen to do that, and
leaving 0x0102 unanswered has its own risk: units retransmit it and may refuse platform
commands (the 0x8103) before they are authenticated. A unit that reconnects where its
last session succeeded still leaves: login closes the session after the 0x8103, whose
main server is a gateway, and treats a 0x8103 naming the main server as the order to go
there (as the simulator, ``cmsv6.sim``, does).

Every connection is bounded: frames, time, one request in flight.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from cmsv6.address import join_address, split_address
from cmsv6.db.devices import Device
from cmsv6.db.service import Database
from cmsv6.phone import canonical_phone
from cmsv6.plugins.login.directory import Directory, GatewayEntry
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import RESULT_FAILED, RESULT_OK, Authenticate
from cmsv6.protocols.jt808.messages.params import SetParameters
from cmsv6.terminal.limits import Limits
from cmsv6.terminal.protocol import TerminalFactory, TerminalProtocol
from cmsv6.terminal.registration import Registrar, RegistrationPolicy
from cmsv6.terminal.session import Link, TerminalSession

_log = Logger()

#: Frames one connection may send before it is closed (a device needs about four).
MAX_FRAMES = 50


def server_parameters(gateway: str, login: str, version: int) -> dict[int, Any]:
    """The 0x8103 items that point a device at ``gateway`` with ``login`` as the backup
    (both ``host:port``). 2013 has one TCP port (0x0018) and bare hosts; 2019 writes
    ``host:port`` in 0x0013 and 0x0017 (0x0018 is kept for units that still read it)."""
    gw_host, gw_port = split_address(gateway)
    login_host, login_port = split_address(login)
    if version == 2019:
        return {
            0x0013: join_address(gw_host, gw_port),
            0x0017: join_address(login_host, login_port),
            0x0018: gw_port,
        }
    return {0x0013: gw_host, 0x0017: login_host, 0x0018: gw_port}


class Assigner:
    """What the assignment sessions share: the database, the directory, settings, counters."""

    def __init__(
        self,
        db: Database,
        directory: Directory,
        clock: IReactorTime,
        public_jt808: str,
        open_registration: bool = False,
        reply_timeout: float = 10.0,
        session_timeout: float = 60.0,
        registration: RegistrationPolicy | None = None,
        limits: Limits | None = None,
    ) -> None:
        split_address(public_jt808)  # ValueError early, not on the first device
        #: Connections, and what a device gets before it authenticates.
        self.limits = limits or Limits()
        self.db = db
        self.directory = directory
        self.clock = clock
        self.public_jt808 = public_jt808
        self.open_registration = open_registration
        #: Who may register and how often (rate tables shared by its sessions).
        self.registrar = Registrar(registration or RegistrationPolicy(), clock)
        self.reply_timeout = reply_timeout
        self.session_timeout = session_timeout
        self.counters: Counter[str] = Counter()
        self._refused_reported = 0
        self._refusing = False

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def refused(self, phone: str, peer: str) -> None:
        """No live gateway for a device: the first of a run is logged at once, the rest
        are counted and logged by ``tick`` (devices retry; a log line each would flood)."""
        self.count("refused_no_gateway")
        if not self._refusing:
            self._refusing = True
            self._refused_reported = self.counters["refused_no_gateway"]
            _log.warn("{peer}: no live gateway for {phone}; refused (the device will retry)",
                      peer=peer, phone=phone)

    def tick(self) -> None:
        refused = self.counters["refused_no_gateway"] - self._refused_reported
        if refused:
            _log.warn("{n} more devices refused: no live gateway", n=refused)
            self._refused_reported = self.counters["refused_no_gateway"]
        else:
            self._refusing = False


class AssignmentSession(TerminalSession):
    """One device's visit to login: register, authenticate, be pointed at a gateway."""

    #: Login keeps nothing, but answers a heartbeat and reads the 0x8103's answer.
    BEFORE_AUTH = TerminalSession.BEFORE_AUTH | {0x0002, 0x0001}
    MAX_FRAMES = MAX_FRAMES
    KIND = "assignment"

    def __init__(self, assigner: Assigner, link: Link) -> None:
        super().__init__(assigner, link)
        self.assigner = assigner
        self.gateway: GatewayEntry | None = None
        self._assign_serial: int | None = None
        self._timer: IDelayedCall | None = self.clock.callLater(
            assigner.session_timeout, self._expired, "no assignment in time"
        )

    def close(self) -> None:
        self._cancel_timer()
        super().close()

    def lost(self, reason: str) -> None:
        self._cancel_timer()

    # -- logic ---------------------------------------------------------------------------

    def _on_authenticate(self, h: Header, body: Authenticate) -> None:
        if self._assign_serial is None:  # once assigned, a retransmission changes nothing
            super()._on_authenticate(h, body)

    def authenticated_as(self, h: Header, device: Device) -> None:
        a = self.assigner
        phone = canonical_phone(h.phone)
        entry = a.directory.choose(phone)
        if entry is None:
            a.refused(phone, self.link.peer)
            self.respond(h, RESULT_FAILED)
            self.close()
            return
        try:
            params = server_parameters(entry.public_jt808, a.public_jt808, h.version)
        except ValueError as e:  # announce checks it; a bad address must not kill the session
            _log.warn("gateway {id}: {error}", id=entry.id, error=str(e))
            self.respond(h, RESULT_FAILED)
            self.close()
            return
        self.respond(h, RESULT_OK)
        self.gateway = entry
        self._assign_serial = self.send(0x8103, SetParameters(params))
        a.directory.assigned(phone, entry)
        a.count("assigned")
        self._cancel_timer()
        self._timer = self.clock.callLater(a.reply_timeout, self._expired, "no reply to 0x8103")

    def _on_terminal_response(self, h: Header, body: Any) -> None:
        if (
            self._assign_serial is None
            or getattr(body, "reply_serial", None) != self._assign_serial
            or getattr(body, "reply_id", None) != 0x8103
        ):
            return
        assert self.gateway is not None
        if body.result == RESULT_OK:
            self.assigner.count("acknowledged")
            _log.info("{phone} ({peer}) assigned to gateway {gateway} at {address}",
                      phone=self.phone, peer=self.link.peer, gateway=self.gateway.id,
                      address=self.gateway.public_jt808)
        else:
            self.assigner.count("assignment_refused")
            _log.info("{phone} ({peer}) answered the assignment with result {result}",
                      phone=self.phone, peer=self.link.peer, result=body.result)
        self.close()

    def _expired(self, why: str) -> None:
        self._timer = None
        if not self.closed:
            self.assigner.count("timeouts")
            _log.info("{peer} ({phone}): {why}; closing", peer=self.link.peer, phone=self.phone,
                      why=why)
            self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


AssignmentSession.HANDLERS = {
    **TerminalSession.HANDLERS,
    0x0001: AssignmentSession._on_terminal_response,
    0x0102: AssignmentSession._on_authenticate,
}


class AssignmentProtocol(TerminalProtocol):
    """One device's connection to login's assignment port."""

    def __init__(self, assigner: Assigner) -> None:
        super().__init__(assigner, lambda link: AssignmentSession(assigner, link))
        self.assigner = assigner


class AssignmentFactory(TerminalFactory):
    """Builds assignment connections, bounded by the assigner's ``limits``."""

    def __init__(self, assigner: Assigner, max_connections: int | None = None) -> None:
        super().__init__(assigner, lambda link: AssignmentSession(assigner, link),
                         max_connections)  # fmt: skip
        self.assigner = assigner
