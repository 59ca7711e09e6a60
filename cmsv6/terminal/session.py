"""A JT/T 808 terminal session: the logic behind the thin protocol, shared by the servers.

The session sees whole frames (``frame_received``) and talks back through a small
``Link`` (``send``, ``close``, ``pause``, ``resume``, ``peer``), so it can sit behind TCP or
anything else; tests drive it with a fake link and a task.Clock.

Policy at this boundary, the same on every server: a frame with a wrong check code or a
body that does not decode (``CodecError``) is answered with 0x8001 result 2 (message
error) and dropped; any other exception while handling a frame is a bug: it is logged with
the frame and the terminal, and that one connection is closed. A frame with another phone
than the connection's first closes it; before authentication only ``BEFORE_AUTH`` messages
are taken (the rest is answered with result 1, so the terminal keeps its data); the
connection is closed after ``MAX_AUTH_FAILURES`` failed authentications. A peer that has not
authenticated is bounded by the host's ``limits`` (``cmsv6.terminal.limits``): no
sub-packaged messages, a few frames, a deadline; only an authenticated terminal's frames
move ``last_seen`` (the idle timeout's clock). A host with ``handshakes`` paces its
ports: a session is one of them from its start until it authenticates or ends.

Registration (0x0100 → 0x8100) and authentication (0x0102 → 0x8001) go to the database
(its lookup threads, or for a device known to this server its auth cache: ``check_auth_code``),
one request at a time (who may register, and how often: ``cmsv6.terminal.registration``);
a database that cannot answer gets no reply (the terminal retransmits). Authentication
is answered with 0x8001 as the standard says, on every server; a subclass says what
follows in ``authenticated``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.db import devices as device_store
from cmsv6.db.devices import Device
from cmsv6.phone import canonical_phone
from cmsv6.protocols.jt808.codec import Message, decode_frame, encode, encode_packets
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import (
    REGISTER_NO_TERMINAL,
    REGISTER_NO_VEHICLE,
    REGISTER_TERMINAL_TAKEN,
    REGISTER_VEHICLE_TAKEN,
    RESULT_BAD_MESSAGE,
    RESULT_FAILED,
    RESULT_OK,
    Authenticate,
    PlatformResponse,
    Register,
    RegisterResponse,
    ServerTime,
    TerminalResendRequest,
)
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.terminal.limits import Handshakes, Limits
from cmsv6.terminal.registration import Registrar

_log = Logger()

#: Authentication failures before the connection is closed.
MAX_AUTH_FAILURES = 3

#: ``host.count`` names of failed logins start with this, then the reason: one of
#: ``LOGIN_FAILURES`` (a bounded set: the metrics' ``reason`` label).
LOGIN_FAILED = "login_failed:"
#: Why a terminal did not get in: an 0x8100 refusal (by its result), a wrong or unknown
#: auth code, too many registrations, no authentication within the deadline.
LOGIN_FAILURES = (
    "unknown_device", "terminal_registered", "vehicle_registered", "unknown_vehicle",
    "refused_other", "bad_auth_code", "not_registered", "disabled", "rate_limited",
    "auth_timeout",
)  # fmt: skip
_REGISTER_REFUSALS = {
    REGISTER_NO_TERMINAL: "unknown_device",
    REGISTER_TERMINAL_TAKEN: "terminal_registered",
    REGISTER_VEHICLE_TAKEN: "vehicle_registered",
    REGISTER_NO_VEHICLE: "unknown_vehicle",
}

#: Seconds between two bad-frame log lines of one connection: the first is logged at once,
#: the ones within this time after it are counted, and the count goes with the next line.
BAD_FRAME_LOG_EVERY = 60.0


class Link(Protocol):
    """The session's way out: a TCP connection (``TerminalProtocol``) or a test's fake."""

    peer: str

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class Host(Protocol):
    """What a session needs from its server."""

    db: Any
    clock: IReactorTime
    open_registration: bool
    registrar: Registrar
    #: Bounds before authentication (a host without them gets ``Limits()``).
    limits: Limits
    #: Optional: the handshakes in flight on its ports (a host without it is not paced).
    handshakes: Handshakes | None

    def count(self, name: str, n: int = 1) -> None: ...

    def now(self) -> datetime: ...


Handler = Callable[["TerminalSession", Header, Any], None]


class TerminalSession:
    """One terminal's connection. Subclasses add handlers (``HANDLERS``) and say what an
    authenticated terminal gets (``authenticated``)."""

    #: Messages taken before authentication.
    BEFORE_AUTH: ClassVar[frozenset[int]] = frozenset({0x0100, 0x0102, 0x0003})
    #: Frames a connection may send before it is closed; None: no bound.
    MAX_FRAMES: ClassVar[int | None] = None
    #: What the log calls a session of this kind.
    KIND: ClassVar[str] = "session"
    #: Handlers by message id (subclasses extend the table).
    HANDLERS: ClassVar[dict[int, Handler]] = {}

    def __init__(self, host: Host, link: Link) -> None:
        self.host = host
        self.link = link
        self.clock = host.clock
        self.last_seen = self.clock.seconds()
        self.phone: str | None = None  # canonical
        #: The header's phone field as it came in the last frame that matched ``phone``.
        self._phone_field: str | None = None
        self.header: Header | None = None  # the terminal's last header (version, phone form)
        self.device: Device | None = None
        #: We closed the connection (or a frame made our code fail), or it is gone: nothing
        #: more is handled.
        self.closed = False
        #: The connection is gone.
        self.disconnected = False
        self.busy = False  # a registration or authentication is with the database
        self.frames = 0
        self.frames_before_auth = 0
        self.auth_failures = 0
        self.limits: Limits = getattr(host, "limits", None) or Limits()
        self._auth_deadline: Any = self.clock.callLater(self.limits.auth_deadline, self._auth_late)
        self._handshakes: Handshakes | None = getattr(host, "handshakes", None)
        if self._handshakes is not None:
            self._handshakes.begin(self)
        self._serial = 0
        #: Our last split downlinks, by first serial, for a 0x0005 re-send request.
        self._sent_packets: dict[int, list[bytes]] = {}
        #: When the last bad-frame line was logged, and bad frames not logged since.
        self._bad_logged_at: float | None = None
        self._bad_unlogged = 0

    @property
    def authenticated(self) -> bool:
        return self.device is not None and not self.closed

    # -- from the protocol ---------------------------------------------------------------

    def frame_received(self, frame: Frame) -> None:
        """One frame from the terminal. Never raises: a bug in handling it closes this
        connection (one bad terminal, not the server), after logging the frame."""
        if self.closed:
            return
        try:
            self._frame_received(frame)
        except Exception:  # noqa: BLE001 - the boundary: log with the frame, count, close
            self.host.count("errors")
            h = frame.header
            _log.failure("{kind} {peer} (phone {phone}): failed on 0x{msg_id:04x}; closing."
                         " Header {header!r}, body {body}", Failure(), kind=self.KIND,
                         peer=self.link.peer, phone=h.phone, msg_id=h.msg_id, header=h,
                         body=frame.body.hex())
            self.close()  # this connection only

    def _frame_received(self, frame: Frame) -> None:
        h = frame.header
        # ``authenticated`` once: nothing below changes it before the frame is handed on.
        authenticated = self.device is not None and not self.closed
        if authenticated:
            self.last_seen = self.clock.seconds()
        elif not self.input_before_auth():
            return
        self.frames += 1
        self.host.count("frames")
        if self.MAX_FRAMES is not None and self.frames > self.MAX_FRAMES:
            self.host.count("too_many_frames")
            _log.info("{peer}: {n} frames on one connection; closing", peer=self.link.peer,
                      n=self.MAX_FRAMES)
            self.close()
            return
        if not frame.checksum_ok:
            # Answered in its own header's terms; nothing else of it is trusted.
            self.host.count("bad_checksum")
            self.bad_frame(f"bad check code on 0x{h.msg_id:04x}", frame.body)
            self.link.send(encode(h.reply_header(0x8001, self.next_serial()),
                                  PlatformResponse(h.serial, h.msg_id, RESULT_BAD_MESSAGE)))
            return
        if h.phone != self._phone_field:
            # Canonicalised only when the field differs from the last one that passed (a
            # unit sends one form): the same field is the same phone.
            phone = canonical_phone(h.phone)
            if self.phone is None:
                self.phone = phone
            elif phone != self.phone:
                self.host.count("phone_changed")
                _log.warn("{peer}: phone changed from {old} to {new}; closing",
                          peer=self.link.peer, old=self.phone, new=h.phone)
                self.close()
                return
            self._phone_field = h.phone
        self.header = h
        if not authenticated and h.msg_id not in self.BEFORE_AUTH:
            self.host.count("unauthenticated")
            self.respond(h, RESULT_FAILED)
            return
        if h.packet is not None and h.packet.total > 1:
            if not authenticated:
                # Nothing is kept for a peer that has not proved who it is.
                self.host.count("packets_before_auth")
                self.respond(h, RESULT_FAILED)
                return
            self.packet_received(frame)
            return
        try:
            message = decode_frame(frame)
        except CodecError as e:
            self.host.count("bad_body")
            self.bad_frame(f"0x{h.msg_id:04x} body does not decode: {first_line(e)}", frame.body)
            self.undecodable(h, frame.body)
            return
        self.message_received(message, frame.body)

    def input_before_auth(self) -> bool:
        """A frame or an undecodable piece of input from a peer not yet authenticated:
        False (and the connection closed) once it is past ``max_frames_before_auth``."""
        self.frames_before_auth += 1
        if self.frames_before_auth <= self.limits.max_frames_before_auth:
            return True
        self.host.count("too_many_frames_before_auth")
        _log.info("{peer}: {n} frames without authenticating; closing", peer=self.link.peer,
                  n=self.limits.max_frames_before_auth)
        self.close()
        return False

    def bad_frame(self, what: str, data: bytes = b"") -> None:
        """Log a bad frame of this connection in one debug line saying ``what``: the first at
        once, then at most one per ``BAD_FRAME_LOG_EVERY`` seconds (of the host's clock),
        with how many were not logged since. A unit that sends garbage all day costs a line
        a minute. Its bytes (the first 64) go in the event as ``data``, for an observer that
        wants them, not in the line."""
        now = self.clock.seconds()
        if self._bad_logged_at is not None and now - self._bad_logged_at < BAD_FRAME_LOG_EVERY:
            self._bad_unlogged += 1
            return
        more, self._bad_unlogged = self._bad_unlogged, 0
        self._bad_logged_at = now
        _log.debug("{peer}: {what}{more}", peer=self.link.peer, what=what,
                   more=f" ({more} more suppressed)" if more else "", data=data[:64].hex())

    def login_failed(self, reason: str) -> None:
        """Count a failed login by its reason (one of ``LOGIN_FAILURES``)."""
        self.host.count(LOGIN_FAILED + reason)

    def _auth_late(self) -> None:
        self._auth_deadline = None
        if self.closed or self.authenticated:
            return
        self.host.count("auth_deadline")
        self.login_failed("auth_timeout")
        _log.info("{peer}: not authenticated within {s:g} s; closing", peer=self.link.peer,
                  s=self.limits.auth_deadline)
        self.close()

    def _cancel_auth_deadline(self) -> None:
        call, self._auth_deadline = self._auth_deadline, None
        if call is not None and call.active():
            call.cancel()
        handshakes, self._handshakes = self._handshakes, None
        if handshakes is not None:
            handshakes.end(self)  # its place goes to the next connection waiting

    def undecodable(self, h: Header, body: bytes) -> None:
        """A body that does not decode: the terminal's bad message."""
        self.respond(h, RESULT_BAD_MESSAGE)

    def packet_received(self, frame: Frame) -> None:
        """One packet of a sub-packaged message: refused unless a subclass takes them."""
        self.respond(frame.header, RESULT_FAILED)

    def message_received(self, message: Message, raw: bytes, reassembled: bool = False) -> None:
        """A decoded message (``raw``: its body as it came)."""
        handler = self.HANDLERS.get(message.header.msg_id)
        if handler is not None:
            handler(self, message.header, message.body)
        else:
            self.unhandled(message, raw, reassembled)

    def unhandled(self, message: Message, raw: bytes, reassembled: bool) -> None:
        """A message without a handler: refused, so the terminal keeps its data."""
        self.respond(message.header, RESULT_FAILED)

    def close(self) -> None:
        """Close this connection; frames still buffered are not handled."""
        self._cancel_auth_deadline()
        if not self.closed:
            self.closed = True
            self.link.close()

    def connection_lost(self, reason: str) -> None:
        self._cancel_auth_deadline()
        if self.disconnected:
            return
        self.disconnected = self.closed = True
        if self._bad_unlogged:
            _log.debug("{peer}: {n} more bad frames suppressed before the connection closed",
                       peer=self.link.peer, n=self._bad_unlogged)
            self._bad_unlogged = 0
        self.lost(reason)

    def lost(self, reason: str) -> None:
        """The connection is gone (subclasses let their server know)."""

    # -- to the terminal -----------------------------------------------------------------

    def next_serial(self) -> int:
        serial = self._serial
        self._serial = (self._serial + 1) & 0xFFFF
        return serial

    def reply_header(self, msg_id: int, serial: int) -> Header:
        """A platform header in the terminal's live version and phone form."""
        assert self.header is not None
        return self.header.reply_header(msg_id, serial)

    def send(self, msg_id: int, body: Any) -> int:
        """Send a platform message in the terminal's own version; the serial used."""
        return self.send_frames(msg_id, body)[0]

    def send_frames(self, msg_id: int, body: Any) -> tuple[int, list[bytes]]:
        """Send a platform message (``RawBody`` for bytes), split if it does not fit one
        frame; (first serial, frames)."""
        serial = self.next_serial()
        frames = encode_packets(self.reply_header(msg_id, serial), body)
        if len(frames) > 1:
            self._serial = (serial + len(frames)) & 0xFFFF
            # Kept for a 0x0005 re-send request; only the last few.
            self._sent_packets[serial] = frames
            while len(self._sent_packets) > 4:
                del self._sent_packets[next(iter(self._sent_packets))]
        for f in frames:
            self.link.send(f)
        return serial, frames

    def send_raw(self, msg_id: int, body: bytes) -> tuple[int, list[bytes]]:
        """Send a body given as bytes; (serial, frames)."""
        return self.send_frames(msg_id, RawBody(body))

    def respond(self, h: Header, result: int) -> None:
        """The general response (0x8001) to the terminal's message ``h``."""
        self.send(0x8001, PlatformResponse(h.serial, h.msg_id, result))

    # -- registration and authentication -------------------------------------------------

    def _on_register(self, h: Header, body: Register) -> None:
        if self.busy:
            return  # a retransmission while the first is being answered
        host = self.host
        refused = host.registrar.admit(self.link.peer, canonical_phone(h.phone))
        if refused is not None:
            # No answer: the terminal tries again later, on a new connection.
            host.count("register_limited")
            self.login_failed("rate_limited")
            _log.warn("{peer}: registration of {phone} refused: {reason}; closing",
                      peer=self.link.peer, phone=h.phone, reason=refused)
            self.close()
            return
        self.busy = True
        policy = host.registrar.policy
        d = device_store.register(
            host.db, h.phone, manufacturer=body.manufacturer, model=body.model,
            terminal_id=body.terminal_id, plate_color=body.plate_color, plate=body.plate,
            protocol=h.version, open_registration=host.open_registration, now=host.now(),
            reregister=policy.reregister, open_per_hour=policy.open_per_hour,
            open_total=policy.open_total,
        )  # fmt: skip

        def answer(result: device_store.Registration) -> None:
            self.busy = False
            if result.result != device_store.REGISTERED:
                host.count("register_refused")
                self.login_failed(_REGISTER_REFUSALS.get(result.result, "refused_other"))
                _log.info("{peer}: registration of {phone} refused ({code}: {reason})",
                          peer=self.link.peer, phone=h.phone, code=result.result,
                          reason=result.reason)
            else:
                host.count("registered")
                _log.info("{peer}: {phone} {reason}", peer=self.link.peer, phone=h.phone,
                          reason=result.reason)
            if not self.closed:
                self.send(0x8100, RegisterResponse(h.serial, result.result, result.auth_code))

        d.addCallback(answer)
        d.addErrback(self._db_failed, h, "registration")

    def _on_authenticate(self, h: Header, body: Authenticate) -> None:
        if self.busy:
            return
        self.busy = True
        d = device_store.check_auth_code(self.host.db, h.phone, body.auth_code)

        def answer(device: Device | str) -> None:
            self.busy = False
            if self.closed:
                return
            if not isinstance(device, Device):
                self.auth_failures += 1
                self.host.count("auth_failed")
                self.login_failed(device)
                _log.info("{peer}: authentication of {phone} failed ({why})",
                          peer=self.link.peer, phone=h.phone, why=device)
                self.respond(h, RESULT_FAILED)
                if self.auth_failures >= MAX_AUTH_FAILURES:
                    self.close()
                return
            self.device = device
            self._cancel_auth_deadline()
            self.last_seen = self.clock.seconds()  # the idle timeout counts from here
            self.authenticated_as(h, device)

        d.addCallback(answer)
        d.addErrback(self._db_failed, h, "authentication")

    def authenticated_as(self, h: Header, device: Device) -> None:
        """The terminal of ``h`` proved to be ``device``: answer it (0x8001 result 0)."""
        self.respond(h, RESULT_OK)

    def _db_failed(self, failure: Failure, h: Header, what: str) -> None:
        """The database could not answer: no reply (the terminal will retry)."""
        self.busy = False
        self.host.count("db_errors")
        _log.warn("{peer}: {what} of {phone} not answered: {error}", peer=self.link.peer,
                  what=what, phone=h.phone, error=failure.getErrorMessage())

    # -- the other general messages ------------------------------------------------------

    def _on_heartbeat(self, h: Header, body: Any) -> None:
        self.respond(h, RESULT_OK)

    def _on_logout(self, h: Header, body: Any) -> None:
        self.respond(h, RESULT_OK)
        self.close()

    def _on_time(self, h: Header, body: Any) -> None:
        self.send(0x8004, ServerTime(datetime.now(timezone.utc).replace(microsecond=0)))

    def _on_resend(self, h: Header, body: TerminalResendRequest) -> None:
        frames = self._sent_packets.get(body.first_serial, [])
        for index in body.indexes:
            if 1 <= index <= len(frames):
                self.link.send(frames[index - 1])


TerminalSession.HANDLERS = {
    0x0100: TerminalSession._on_register,
    0x0102: TerminalSession._on_authenticate,
    0x0002: TerminalSession._on_heartbeat,
    0x0003: TerminalSession._on_logout,
    0x0004: TerminalSession._on_time,
    0x0005: TerminalSession._on_resend,
}


def first_line(error: BaseException) -> str:
    """An error's message, first line only (construct's errors add the path below)."""
    return (str(error).splitlines() or [type(error).__name__])[0]
