"""One device's JT/T 808 session on the gateway: the logic behind the thin protocol.

The session sees whole frames (``frame_received``) and talks back through a small link
interface (``send``, ``close``, ``pause``, ``resume``, ``peer``), so it can sit behind TCP or
anything else, and tests drive it with a fake link and a task.Clock.

Policy at this boundary: a frame with a wrong check code or a body that does not decode
(``CodecError``) is answered with 0x8001 result 2 (message error) and dropped; any other
exception while handling a frame is a bug: it is logged with the frame and the device, and
that one connection is closed. Before authentication only registration and authentication
are accepted; reports are acknowledged only after their rows are committed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from struct import Struct
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.db import devices as device_store
from cmsv6.db.devices import Device
from cmsv6.db.positions import Position
from cmsv6.plugins.gateway import alarms
from cmsv6.protocols.jt808.codec import Message, decode_frame, encode_packets
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.protocols.jt808.messages.core import (
    RESULT_BAD_MESSAGE,
    RESULT_FAILED,
    RESULT_OK,
    RESULT_UNSUPPORTED,
    Authenticate,
    PlatformResponse,
    Register,
    RegisterResponse,
    ResendRequest,
    ServerTime,
    TerminalResendRequest,
)
from cmsv6.protocols.jt808.messages.location import BATCH_BLIND_AREA, Location, LocationBatch
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.protocols.jt808.subpackage import Reassembler
from cmsv6.phone import canonical_phone

if TYPE_CHECKING:
    from cmsv6.plugins.gateway.gateway import Gateway

_log = Logger()

#: Messages accepted before authentication.
_BEFORE_AUTH = {0x0100, 0x0102, 0x0003}
#: Authentication failures before the connection is closed.
MAX_AUTH_FAILURES = 3


class Link(Protocol):
    peer: str

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class DeviceSession:
    def __init__(self, gateway: Gateway, link: Link) -> None:
        self.gateway = gateway
        self.link = link
        self.clock = gateway.clock
        self.connected = gateway.now()
        self.last_seen = self.clock.seconds()
        self.phone: str | None = None  # canonical
        self.header: Header | None = None  # the device's last header (version, phone form)
        self.device: Device | None = None
        self.session_id: int | None = None
        self.closed = False
        #: A frame made our code fail: the connection is closing, nothing more is handled.
        self.failed = False
        self.auth_failures = 0
        self._serial = 0
        self._alarm_word: tuple[int, int] | None = None
        self.reassembler = Reassembler()
        #: Downlink commands awaiting the device's reply, by our serial.
        self.pending: dict[int, Any] = {}
        #: Our last split downlinks, by first serial, for a 0x0005 re-send request.
        self._sent_packets: dict[int, list[bytes]] = {}

    # -- from the protocol ---------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        return self.device is not None and not self.closed

    def frame_received(self, frame: Frame) -> None:
        """One frame from the device. Never raises: a bug in handling it closes this
        connection (one bad device, not the gateway), after logging the frame."""
        if self.failed:
            return
        try:
            self._frame_received(frame)
        except Exception:  # noqa: BLE001 - the boundary: log with the frame, count, close
            self.failed = True
            self.gateway.count("errors")
            h = frame.header
            _log.failure("session {peer} (phone {phone}): failed on 0x{msg_id:04x}; closing."
                         " Header {header!r}, body {body}", Failure(), peer=self.link.peer,
                         phone=h.phone, msg_id=h.msg_id, header=h, body=frame.body.hex())
            self.link.close()  # this connection only

    def _frame_received(self, frame: Frame) -> None:
        h = frame.header
        self.last_seen = self.clock.seconds()
        self.header = h
        self.gateway.count("frames")
        if not frame.checksum_ok:
            self.gateway.count("bad_checksum")
            _log.debug("{peer}: bad check code on 0x{msg_id:04x}", peer=self.link.peer, msg_id=h.msg_id)
            self.respond(h, RESULT_BAD_MESSAGE)
            return
        if self.phone is None:
            self.phone = canonical_phone(h.phone)
        elif canonical_phone(h.phone) != self.phone:
            self.gateway.count("phone_changed")
            _log.warn("{peer}: phone changed from {old} to {new}; closing", peer=self.link.peer,
                      old=self.phone, new=h.phone)
            self.link.close()
            return
        if h.msg_id not in _BEFORE_AUTH and not self.authenticated:
            self.gateway.count("unauthenticated")
            self.respond(h, RESULT_FAILED)
            return
        if h.packet is not None and h.packet.total > 1:
            self._packet_received(frame)
            return
        try:
            message = decode_frame(frame)
        except CodecError as e:
            self.gateway.count("bad_body")
            _log.info("{peer}: 0x{msg_id:04x} body does not decode: {error}",
                      peer=self.link.peer, msg_id=h.msg_id, error=str(e).splitlines()[0])
            self.respond(h, RESULT_BAD_MESSAGE)
            return
        self.message_received(message)

    def _packet_received(self, frame: Frame) -> None:
        h = frame.header
        try:
            whole = self.reassembler.add(frame, self.clock.seconds())
        except CodecError as e:
            self.gateway.count("bad_packet")
            _log.info("{peer}: packet refused: {error}", peer=self.link.peer, error=e)
            self.respond(h, RESULT_BAD_MESSAGE)
            return
        # Every packet gets its answer; the whole message gets its own when it is handled.
        self.respond(h, RESULT_OK)
        if whole is not None:
            try:
                body = decode_frame(Frame(whole.header, whole.body)).body
            except CodecError as e:
                self.gateway.count("bad_body")
                _log.info("{peer}: reassembled 0x{msg_id:04x} does not decode: {error}",
                          peer=self.link.peer, msg_id=h.msg_id, error=str(e).splitlines()[0])
                return
            self.message_received(Message(whole.header, body), reassembled=True)

    def message_received(self, message: Message, reassembled: bool = False) -> None:
        h = message.header
        body = message.body
        handler = _HANDLERS.get(h.msg_id)
        if handler is not None:
            handler(self, h, body)
            return
        reply_serial = getattr(body, "reply_serial", None)
        if isinstance(reply_serial, int) and reply_serial in self.pending:
            self.gateway.command_replied(self, reply_serial, h.msg_id, message)
            if h.msg_id not in (0x0001,):
                self.respond(h, RESULT_OK)
            return
        if not reassembled:
            self.respond(h, RESULT_UNSUPPORTED if isinstance(body, RawBody) else RESULT_OK)

    def tick(self, now: float) -> None:
        """Periodic work: re-request missing sub-packages, give up on stale ones."""
        for missing in self.reassembler.overdue(now, after=10.0):
            self.send(0x8003, ResendRequest(missing.first_serial, missing.indexes))
        for dropped in self.reassembler.expire(now, max_age=120.0):
            self.gateway.count("packets_dropped")
            _log.info("{peer}: gave up on 0x{msg_id:04x}: {reason}", peer=self.link.peer,
                      msg_id=dropped.msg_id, reason=dropped.reason)

    def connection_lost(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.gateway.detach(self, reason)

    # -- to the device -------------------------------------------------------------------

    def next_serial(self) -> int:
        serial = self._serial
        self._serial = (self._serial + 1) & 0xFFFF
        return serial

    def _header(self, msg_id: int, serial: int) -> Header:
        h = self.header
        assert h is not None
        return Header(msg_id, h.phone, serial, h.version, h.protocol_version)

    def send(self, msg_id: int, body: Any) -> int:
        """Send a platform message in the device's own version; the serial used."""
        return self._send(msg_id, body)[0]

    def send_raw(self, msg_id: int, body: bytes) -> tuple[int, list[bytes]]:
        """Send a body given as bytes (from the cluster); (serial, frames)."""
        return self._send(msg_id, RawBody(body))

    def _send(self, msg_id: int, body: Any) -> tuple[int, list[bytes]]:
        serial = self.next_serial()
        frames = encode_packets(self._header(msg_id, serial), body)
        if len(frames) > 1:
            self._serial = (serial + len(frames)) & 0xFFFF
            # Kept for a 0x0005 re-send request; only the last few.
            self._sent_packets[serial] = frames
            while len(self._sent_packets) > 4:
                del self._sent_packets[next(iter(self._sent_packets))]
        for f in frames:
            self.link.send(f)
        return serial, frames

    def respond(self, h: Header, result: int) -> None:
        self.send(0x8001, PlatformResponse(h.serial, h.msg_id, result))

    # -- handlers ------------------------------------------------------------------------

    def _on_register(self, h: Header, body: Register) -> None:
        d = device_store.register(
            self.gateway.db,
            h.phone,
            manufacturer=body.manufacturer,
            model=body.model,
            terminal_id=body.terminal_id,
            plate_color=body.plate_color,
            plate=body.plate,
            protocol=h.version,
            open_registration=self.gateway.open_registration,
            now=self.gateway.now(),
        )

        def answer(result: tuple[int, str | None]) -> None:
            code, auth = result
            if code != device_store.REGISTERED:
                self.gateway.count("register_refused")
                _log.info("{peer}: registration of {phone} refused ({code})", peer=self.link.peer,
                          phone=h.phone, code=code)
            self.send(0x8100, RegisterResponse(h.serial, code, auth))

        d.addCallback(answer)
        d.addErrback(self._db_failed, h, "registration")

    def _on_authenticate(self, h: Header, body: Authenticate) -> None:
        d = device_store.authenticate(self.gateway.db, h.phone, body.auth_code)

        def answer(device: Device | None) -> Any:
            if self.closed:
                return None
            if device is None:
                self.auth_failures += 1
                self.gateway.count("auth_failed")
                _log.info("{peer}: authentication of {phone} failed", peer=self.link.peer,
                          phone=h.phone)
                self.respond(h, RESULT_FAILED)
                if self.auth_failures >= MAX_AUTH_FAILURES:
                    self.link.close()
                return None
            self.device = device
            # The session row is bookkeeping: it is written in the background, and the
            # device does not wait for it (in a reconnect storm those inserts queue up).
            self.gateway.attach(self)
            self.respond(h, RESULT_OK)
            return None

        d.addCallback(answer)
        d.addErrback(self._db_failed, h, "authentication")

    def _db_failed(self, failure: Failure, h: Header, what: str) -> None:
        """The database could not answer: no reply (the device will retry)."""
        self.gateway.count("db_errors")
        _log.warn("{peer}: {what} of {phone} not answered: {error}", peer=self.link.peer,
                  what=what, phone=h.phone, error=failure.getErrorMessage())

    def _on_heartbeat(self, h: Header, body: Any) -> None:
        self.respond(h, RESULT_OK)

    def _on_logout(self, h: Header, body: Any) -> None:
        self.respond(h, RESULT_OK)
        self.link.close()

    def _on_time(self, h: Header, body: Any) -> None:
        self.send(0x8004, ServerTime(datetime.now(timezone.utc).replace(microsecond=0)))

    def _on_resend(self, h: Header, body: TerminalResendRequest) -> None:
        frames = self._sent_packets.get(body.first_serial, [])
        for index in body.indexes:
            if 1 <= index <= len(frames):
                self.link.send(frames[index - 1])

    def _on_location(self, h: Header, body: Location) -> None:
        self._store([body], blind=False, then=lambda error: self._stored(h, error))

    def _stored(self, h: Header, error: Exception | None) -> None:
        """The answer to a report once the writer is done with it."""
        if error is None:
            self.respond(h, RESULT_OK)
        else:
            self.gateway.count("refused_reports")
            self.respond(h, RESULT_FAILED)

    def _on_location_reply(self, h: Header, body: Any) -> None:
        if body.reply_serial in self.pending:
            self.gateway.command_replied(self, body.reply_serial, h.msg_id, Message(h, body))
        self._store([body.location], blind=False, then=lambda error: self._stored(h, error))

    def _on_batch(self, h: Header, body: LocationBatch) -> None:
        blind = body.kind == BATCH_BLIND_AREA
        self._store(list(body.locations), blind, then=lambda error: self._stored(h, error))

    def _on_terminal_response(self, h: Header, body: Any) -> None:
        if body.reply_serial in self.pending:
            self.gateway.command_replied(self, body.reply_serial, h.msg_id, Message(h, body))

    def _on_multimedia(self, h: Header, body: Any) -> None:
        d = self.gateway.store_media(self, body)
        d.addCallback(lambda _: self.send(0x8800, self.gateway.media_ack(body)))
        d.addErrback(self._db_failed, h, "multimedia upload")

    # -- storing reports -----------------------------------------------------------------

    def _store(self, locations: list[Location], blind: bool, then: Any) -> None:
        """Queue reports for writing; ``then(None)`` once committed, ``then(error)`` if they
        cannot be stored."""
        assert self.device is not None
        received = self.gateway.now()
        rows = []
        changes: list[Any] = []
        for loc in locations:
            time = loc.time or received
            rows.append(self.row(self.device.id, loc, time, received, blind))
            if not blind:  # a backfill replays the past; alarms follow live reports
                changes += alarms.changes(self.device.id, self._alarm_word, loc, time)
                self._alarm_word = alarms.alarm_word(loc)
        self.gateway.writer.submit_then(rows, changes, then)

    @staticmethod
    def row(device_id: int, loc: Location, time: datetime, received: datetime, blind: bool) -> Position:
        return Position(
            device_id,
            time,
            received,
            loc.latitude,
            loc.longitude,
            loc.altitude,
            loc.speed,
            loc.direction,
            loc.alarm,
            loc.status,
            extras_json(loc.extras) if loc.extras else None,
            blind,
            report_digest(loc, time),
        )


_DIGEST = Struct(">IIddhdHd")


def report_digest(loc: Location, time: datetime) -> bytes:
    """Identifies a report by its basic fields and time, whichever way it arrives (a unit
    re-sends an unacknowledged 0x0200 inside a 0x0704), so it is stored once."""
    raw = _DIGEST.pack(
        loc.alarm, loc.status, loc.latitude, loc.longitude, loc.altitude, loc.speed,
        loc.direction, time.timestamp(),
    )  # fmt: skip
    return hashlib.md5(raw, usedforsecurity=False).digest()


def extras_json(extras: dict[int, Any]) -> str:
    """The additional items as JSON (keys "0x01"…), as PostgreSQL's jsonb takes them."""
    parts = []
    for k, v in extras.items():
        t = type(v)
        if t is int:
            parts.append(f'"0x{k:02x}":{v}')
        elif t is bytes:
            parts.append(f'"0x{k:02x}":"{v.hex()}"')
        else:
            return _extras_json(extras)  # typed items: the general way
    return "{" + ",".join(parts) + "}"


def _extras_json(extras: dict[int, Any]) -> str:
    out: dict[str, Any] = {}
    for k, v in extras.items():
        if type(v) is int:
            out[f"0x{k:02x}"] = v
        elif isinstance(v, bytes):
            out[f"0x{k:02x}"] = v.hex()
        else:
            out[f"0x{k:02x}"] = jsonable(v)
    text = json.dumps(out, ensure_ascii=False)
    if "\\u0000" in text:  # jsonb refuses NUL characters, which a unit's text can hold
        text = json.dumps(_without_nul(out), ensure_ascii=False)
    return text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


_HANDLERS = {
    0x0100: DeviceSession._on_register,
    0x0102: DeviceSession._on_authenticate,
    0x0002: DeviceSession._on_heartbeat,
    0x0003: DeviceSession._on_logout,
    0x0004: DeviceSession._on_time,
    0x0005: DeviceSession._on_resend,
    0x0001: DeviceSession._on_terminal_response,
    0x0200: DeviceSession._on_location,
    0x0201: DeviceSession._on_location_reply,
    0x0704: DeviceSession._on_batch,
    0x0801: DeviceSession._on_multimedia,
}

