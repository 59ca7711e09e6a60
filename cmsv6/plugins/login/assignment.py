"""Device assignment on login's ``jt808`` endpoint (the seed's tracking flow).

A device configured with the login server's address connects, registers (0x0100 → 0x8100,
against the database, as on a gateway) and authenticates (0x0102). Login then picks a
gateway (``Directory.choose``: the one it is on or was sent to while that one is alive,
else the least loaded) and points the device at it with 0x8103 in the device's protocol
version: main server = the gateway, backup server = login itself, so a device whose
gateway dies comes back here and is reassigned. Login waits (bounded) for the device's
0x0001 and closes; the device reconnects to the gateway and authenticates there with the
same code.

The authentication is not answered with success: a device told "authenticated" here
would consider its session up and, when the gateway turns out to be its configured main
server already, stay on the backup address (login) in a loop; without that answer a
device that does not move counts a failed session and falls back to its main server.
With no live gateway (or none with room) the authentication is answered with 0x8001
result 1 and the connection closed; the device retries later.

Every connection is bounded: frames, time, one request in flight.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any, Protocol

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.db import devices as device_store
from cmsv6.db.devices import Device
from cmsv6.db.service import Database
from cmsv6.protocols.jt808.codec import decode_frame, encode
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Deframer, Frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import (
    RESULT_BAD_MESSAGE,
    RESULT_FAILED,
    RESULT_OK,
    Authenticate,
    PlatformResponse,
    Register,
    RegisterResponse,
)
from cmsv6.protocols.jt808.messages.params import SetParameters
from cmsv6.plugins.login.directory import Directory, GatewayEntry, join_address, split_address
from cmsv6.phone import canonical_phone

_log = Logger()

#: Frames one connection may send before it is closed (a device needs about three).
MAX_FRAMES = 50
#: Authentication failures before the connection is closed.
MAX_AUTH_FAILURES = 3
#: Consecutive undecodable pieces of input after which a connection is closed.
MAX_FRAME_ERRORS = 20


class Link(Protocol):
    peer: str

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


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
    ) -> None:
        split_address(public_jt808)  # ValueError early, not on the first device
        self.db = db
        self.directory = directory
        self.clock = clock
        self.public_jt808 = public_jt808
        self.open_registration = open_registration
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


class AssignmentSession:
    """One device's visit to login: register, authenticate, be pointed at a gateway."""

    def __init__(self, assigner: Assigner, link: Link) -> None:
        self.assigner = assigner
        self.link = link
        self.clock = assigner.clock
        self.phone: str | None = None
        self.header: Header | None = None
        self.closed = False
        self.busy = False  # a database request or an assignment is under way
        self.frames = 0
        self.auth_failures = 0
        self.gateway: GatewayEntry | None = None
        self._serial = 0
        self._assign_serial: int | None = None
        self._timer: IDelayedCall | None = self.clock.callLater(
            assigner.session_timeout, self._expired, "no assignment in time"
        )

    # -- from the protocol ---------------------------------------------------------------

    def frame_received(self, frame: Frame) -> None:
        """One frame from the device. Never raises: a bug in handling it closes this
        connection (one bad device, not login), after logging the frame."""
        try:
            self._frame_received(frame)
        except Exception:  # noqa: BLE001 - the boundary: log with the frame, count, close
            self.assigner.count("errors")
            h = frame.header
            _log.failure("assignment {peer} (phone {phone}): failed on 0x{msg_id:04x}; closing."
                         " Header {header!r}, body {body}", Failure(), peer=self.link.peer,
                         phone=h.phone, msg_id=h.msg_id, header=h, body=frame.body.hex())
            self.close()  # this connection only

    def connection_lost(self) -> None:
        self.closed = True
        self._cancel_timer()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            self.link.close()

    # -- logic ---------------------------------------------------------------------------

    def _frame_received(self, frame: Frame) -> None:
        if self.closed:
            return
        h = frame.header
        self.frames += 1
        if self.frames > MAX_FRAMES:
            self.assigner.count("too_many_frames")
            _log.info("{peer}: {n} frames without an assignment; closing", peer=self.link.peer,
                      n=MAX_FRAMES)
            self.close()
            return
        phone = canonical_phone(h.phone)
        if self.phone is None:
            self.phone = phone
        elif phone != self.phone:
            _log.info("{peer}: phone changed from {old} to {new}; closing", peer=self.link.peer,
                      old=self.phone, new=phone)
            self.close()
            return
        self.header = h
        if not frame.checksum_ok:
            self.assigner.count("bad_checksum")
            self.respond(h, RESULT_BAD_MESSAGE)
            return
        if h.packet is not None and h.packet.total > 1:
            self.respond(h, RESULT_FAILED)  # nothing sub-packaged belongs here
            return
        try:
            message = decode_frame(frame)
        except CodecError as e:
            self.assigner.count("bad_body")
            _log.info("{peer}: 0x{msg_id:04x} body does not decode: {error}",
                      peer=self.link.peer, msg_id=h.msg_id, error=str(e).splitlines()[0])
            self.respond(h, RESULT_BAD_MESSAGE)
            return
        body = message.body
        if h.msg_id == 0x0100 and isinstance(body, Register):
            self._on_register(h, body)
        elif h.msg_id == 0x0102 and isinstance(body, Authenticate):
            self._on_authenticate(h, body)
        elif h.msg_id == 0x0001:
            self._on_terminal_response(h, body)
        elif h.msg_id == 0x0002:
            self.respond(h, RESULT_OK)
        elif h.msg_id == 0x0003:
            self.respond(h, RESULT_OK)
            self.close()
        else:
            # Not authenticated here, and login keeps nothing: the device keeps its data.
            self.respond(h, RESULT_FAILED)

    def _on_register(self, h: Header, body: Register) -> None:
        if self.busy:
            return  # a retransmission while the first is being answered
        self.busy = True
        a = self.assigner
        d = device_store.register(
            a.db, h.phone, manufacturer=body.manufacturer, model=body.model,
            terminal_id=body.terminal_id, plate_color=body.plate_color, plate=body.plate,
            protocol=h.version, open_registration=a.open_registration, now=a.now(),
        )  # fmt: skip

        def answer(result: tuple[int, str | None]) -> None:
            self.busy = False
            code, auth = result
            if code != device_store.REGISTERED:
                a.count("register_refused")
                _log.info("{peer}: registration of {phone} refused ({code})",
                          peer=self.link.peer, phone=h.phone, code=code)
            else:
                a.count("registered")
            if not self.closed:
                self.send(0x8100, RegisterResponse(h.serial, code, auth))

        d.addCallback(answer)
        d.addErrback(self._db_failed, "registration")

    def _on_authenticate(self, h: Header, body: Authenticate) -> None:
        if self.busy or self._assign_serial is not None:
            return
        self.busy = True
        a = self.assigner
        d = device_store.authenticate(a.db, h.phone, body.auth_code)

        def answer(device: Device | None) -> None:
            self.busy = False
            if self.closed:
                return
            if device is None:
                self.auth_failures += 1
                a.count("auth_failed")
                _log.info("{peer}: authentication of {phone} failed", peer=self.link.peer,
                          phone=h.phone)
                self.respond(h, RESULT_FAILED)
                if self.auth_failures >= MAX_AUTH_FAILURES:
                    self.close()
                return
            self._assign(h)

        d.addCallback(answer)
        d.addErrback(self._db_failed, "authentication")

    def _assign(self, h: Header) -> None:
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

    def _db_failed(self, failure: Failure, what: str) -> None:
        """The database could not answer: no reply (the device will retry)."""
        self.busy = False
        self.assigner.count("db_errors")
        _log.warn("{peer}: {what} of {phone} not answered: {error}", peer=self.link.peer,
                  what=what, phone=self.phone, error=failure.getErrorMessage())

    # -- to the device ---------------------------------------------------------------------

    def send(self, msg_id: int, body: Any) -> int:
        """A platform message in the device's own version; the serial used."""
        assert self.header is not None
        serial = self._serial
        self._serial = (serial + 1) & 0xFFFF
        self.link.send(encode(self.header.reply_header(msg_id, serial), body))
        return serial

    def respond(self, h: Header, result: int) -> None:
        self.send(0x8001, PlatformResponse(h.serial, h.msg_id, result))


class AssignmentProtocol(protocol.Protocol):
    """The thin protocol: bytes in, frames to the session; the session's link out."""

    def __init__(self, assigner: Assigner) -> None:
        self.assigner = assigner
        self.deframer = Deframer()
        self.peer = "?"
        self.session: AssignmentSession | None = None
        self._errors = 0

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        self.session = AssignmentSession(self.assigner, self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Never raises: the session answers bad frames, and a bug closes this connection."""
        try:
            self._data_received(data)
        except Exception:  # noqa: BLE001 - the boundary: log with the input, count, close
            self.assigner.count("errors")
            _log.failure("{peer}: failed on input {data}; closing", Failure(), peer=self.peer,
                         data=data[:2048].hex())
            if self.session is not None:
                self.session.close()
            else:
                self.close()

    def _data_received(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        for item in self.deframer.feed(data):
            if session.closed:
                return
            if isinstance(item, Frame):
                self._errors = 0
                session.frame_received(item)
            else:
                self._errors += 1
                self.assigner.count("frame_errors")
                if self._errors >= MAX_FRAME_ERRORS:
                    _log.info("{peer}: {n} bad frames in a row; closing", peer=self.peer,
                              n=self._errors)
                    session.close()
                    return

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if self.session is not None:
            self.session.connection_lost()
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.connections.discard(self)

    # -- the session's link --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class AssignmentFactory(protocol.Factory):
    """Builds assignment connections, at most ``max_connections`` at a time."""

    def __init__(self, assigner: Assigner, max_connections: int = 10_000) -> None:
        self.assigner = assigner
        self.max_connections = max_connections
        self.connections: set[AssignmentProtocol] = set()

    def buildProtocol(self, addr: object) -> AssignmentProtocol | None:  # noqa: N802
        if len(self.connections) >= self.max_connections:
            self.assigner.count("connections_refused")
            return None
        p = AssignmentProtocol(self.assigner)
        p.factory = self
        self.connections.add(p)
        return p

    def close_all(self) -> None:
        for p in list(self.connections):
            p.close()
