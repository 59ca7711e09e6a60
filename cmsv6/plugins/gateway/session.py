"""One device's JT/T 808 session on the gateway: what it does once authenticated.

The terminal layer (``cmsv6.terminal``) does the connection's common part: the thin
protocol, serials, general responses, registration and authentication, the error policy.
Here: an authenticated device is attached to the gateway (one session per phone), its
reports are acknowledged only after their rows are committed, sub-packaged uploads are
reassembled (missing packets asked for as soon as the last one is in, and again on the
gateway's tick), and the device's replies to downlink commands are handed back, as the raw
body bytes they came in, to whoever sent the command.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from struct import Struct
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from cmsv6.db.devices import Device
from cmsv6.db.positions import Position, prepare
from cmsv6.plugins.gateway import alarms
from cmsv6.protocols.jt808.codec import Message, decode_frame
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fast import ResponseTemplate
from cmsv6.protocols.jt808.framing import Frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.protocols.jt808.messages.core import (
    RESULT_BAD_MESSAGE,
    RESULT_FAILED,
    RESULT_OK,
    RESULT_UNSUPPORTED,
    ResendRequest,
)
from cmsv6.protocols.jt808.messages.location import BATCH_BLIND_AREA, Location, LocationBatch
from cmsv6.protocols.jt808.messages.multimedia import MultimediaUploadResponse
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.protocols.jt808.subpackage import Missing, Reassembler
from cmsv6.terminal.session import Link, TerminalSession, first_line

if TYPE_CHECKING:
    from cmsv6.plugins.gateway.gateway import Gateway

_log = Logger()

#: Seconds without a new packet before missing ones are asked for again (the fallback
#: for an upload whose last packet never comes).
RESEND_AFTER = 10.0


#: Replies that carry no serial of the command they answer, and the command they answer
#: (JT/T 1078 5.3.3: 0x1003 answers 0x9003).
UNNUMBERED_REPLIES = {0x1003: 0x9003}


class DeviceSession(TerminalSession):
    def __init__(self, gateway: Gateway, link: Link) -> None:
        super().__init__(gateway, link)
        self.gateway = gateway
        self.session_id: int | None = None
        self._alarm_word: tuple[int, int] | None = None
        self.reassembler = Reassembler()
        #: Downlink commands awaiting the device's reply, by our serial.
        self.pending: dict[int, Any] = {}
        self._ack: ResponseTemplate | None = None

    # -- the terminal layer's hooks -------------------------------------------------------

    def authenticated_as(self, h: Header, device: Device) -> None:
        # The session row is bookkeeping: it is written in the background, and the
        # device does not wait for it (in a reconnect storm those inserts queue up).
        self.gateway.attach(self)
        self.respond(h, RESULT_OK)

    def lost(self, reason: str) -> None:
        self.gateway.detach(self, reason)

    def packet_received(self, frame: Frame) -> None:
        h = frame.header
        now = self.clock.seconds()
        try:
            whole = self.reassembler.add(frame, now)
        except CodecError as e:
            self.gateway.count("bad_packet")
            self.bad_frame(f"packet of 0x{h.msg_id:04x} refused: {first_line(e)}", frame.body)
            self.respond(h, RESULT_BAD_MESSAGE)
            return
        # Every packet gets its answer; the whole message gets its own when it is handled.
        self.respond(h, RESULT_OK)
        if whole is None:
            missing = self.reassembler.ask_now(frame, now)
            if missing is not None:  # the last packet is in, others are not: ask at once
                self.ask_again(missing)
            return
        try:
            message = decode_frame(Frame(whole.header, whole.body))
        except CodecError as e:
            self.gateway.count("bad_body")
            self.bad_frame(f"reassembled 0x{h.msg_id:04x} does not decode: {first_line(e)}",
                           whole.body)
            self._undecodable_reply(whole.header, whole.body)
            return
        self.message_received(Message(whole.header, message.body), whole.body, reassembled=True)

    def ask_again(self, missing: Missing) -> None:
        """Ask for missing packets: a photo's (0x0801) with 0x8800 and its retransmit list
        (JT/T 808 §8.58) when its first packet, which holds the media id, is in; anything
        else with 0x8003."""
        self.gateway.count("packets_requested")
        if missing.msg_id == 0x0801 and missing.first is not None and len(missing.first) >= 4:
            media_id = int.from_bytes(missing.first[:4], "big")
            self.send(0x8800, MultimediaUploadResponse(media_id, missing.indexes))
        else:
            self.send(0x8003, ResendRequest(missing.first_serial, missing.indexes))

    def respond(self, h: Header, result: int) -> None:
        """The general response (0x8001) to ``h``, from a template of this terminal's
        header (one per report: the hot path)."""
        header = self.header
        assert header is not None
        ack = self._ack
        if (ack is None or ack.phone != header.phone or ack.version != header.version
                or ack.protocol_version != header.protocol_version):  # fmt: skip
            ack = self._ack = ResponseTemplate(header)
        serial = self._serial  # next_serial, inline
        self._serial = (serial + 1) & 0xFFFF
        self.link.send(ack.frame(serial, h.serial, h.msg_id, result))

    def message_received(self, message: Message, raw: bytes, reassembled: bool = False) -> None:
        h = message.header
        if h.msg_id == 0x0200 and type(message.body) is Location:
            # The hot path: a position report answers no command.
            self._on_location(h, message.body)
            return
        reply_serial = getattr(message.body, "reply_serial", None)
        asked = UNNUMBERED_REPLIES.get(h.msg_id)
        if asked is not None and reply_serial is None:
            # It names no command: it answers the oldest one it can answer.
            reply_serial = next((s for s, c in self.pending.items() if c.msg_id == asked), None)
        if h.msg_id < 0x8000 and isinstance(reply_serial, int) and reply_serial in self.pending:
            self.gateway.command_replied(self, reply_serial, h, raw)
            if h.msg_id not in self.HANDLERS:
                if h.msg_id != 0x0001:
                    self.respond(h, RESULT_OK)
                return
        super().message_received(message, raw, reassembled)

    def undecodable(self, h: Header, body: bytes) -> None:
        self.respond(h, RESULT_BAD_MESSAGE)
        self._undecodable_reply(h, body)

    def _undecodable_reply(self, h: Header, body: bytes) -> None:
        """A device's reply that does not decode still answers its command: the caller
        gets the bytes (and the error when it decodes them), not a timeout."""
        if h.msg_id < 0x8000 and len(body) >= 2:
            serial = int.from_bytes(body[:2], "big")
            if serial in self.pending:
                self.gateway.command_replied(self, serial, h, body)

    def unhandled(self, message: Message, raw: bytes, reassembled: bool) -> None:
        if not reassembled:
            body = message.body
            self.respond(message.header, RESULT_UNSUPPORTED if isinstance(body, RawBody) else RESULT_OK)

    def tick(self, now: float) -> None:
        """Periodic work: ask again for packets of uploads that stalled, give up on stale
        ones."""
        for missing in self.reassembler.overdue(now, after=RESEND_AFTER):
            self.ask_again(missing)
        for dropped in self.reassembler.expire(now, max_age=120.0):
            self.gateway.count("packets_dropped")
            _log.info("{peer}: gave up on 0x{msg_id:04x}: {reason}", peer=self.link.peer,
                      msg_id=dropped.msg_id, reason=dropped.reason)

    # -- handlers ------------------------------------------------------------------------

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
        self._store([body.location], blind=False, then=lambda error: self._stored(h, error))

    def _on_batch(self, h: Header, body: LocationBatch) -> None:
        blind = body.kind == BATCH_BLIND_AREA
        self._store(list(body.locations), blind, then=lambda error: self._stored(h, error))

    def _on_terminal_response(self, h: Header, body: Any) -> None:
        """A 0x0001 to nothing we wait for (a late one): not answered."""

    def _on_multimedia(self, h: Header, body: Any) -> None:
        d = self.gateway.store_media(self, body)
        d.addCallback(lambda _: self.send(0x8800, self.gateway.media_ack(body)))
        d.addErrback(self._db_failed, h, "multimedia upload")

    # -- storing reports -----------------------------------------------------------------

    def _store(self, locations: list[Location], blind: bool, then: Any) -> None:
        """Queue reports for writing; ``then(None)`` once committed, ``then(error)`` if they
        cannot be stored.

        The hot path: each report becomes its prepared row (``positions.prepare``: the
        batch's JSON element, times as epoch seconds) without a ``Position`` or a
        ``datetime`` of its own; alarm changes are worked out only when the alarm words
        change or the report carries an active-safety item."""
        assert self.device is not None
        device_id = self.device.id
        received = self.clock.seconds()
        rows = []
        changes: list[Any] = []
        for loc in locations:
            t = loc.time
            if t is None:
                epoch = received
            else:
                epoch = _EPOCHS.get(t)
                if epoch is None:
                    epoch = _epoch(t)
            extras = loc.extras
            alarm, status, lat, lon = loc.alarm, loc.status, loc.latitude, loc.longitude
            altitude, speed, direction = loc.altitude, loc.speed, loc.direction
            digest = _md5(_DIGEST.pack(alarm, status, lat, lon, altitude, speed, direction,
                                       epoch), usedforsecurity=False).digest()  # _digest
            rows.append(prepare(
                device_id, epoch, received, lat, lon, altitude, speed, direction, alarm,
                status, extras_json(extras) if extras else None, blind, digest,
            ))  # fmt: skip
            if not blind:  # a backfill replays the past; alarms follow live reports
                video = extras.get(0x14)  # alarms.alarm_word, inline
                word = (alarm, video if isinstance(video, int) else 0)
                if word != self._alarm_word or not _SAFETY_ITEMS.isdisjoint(extras):
                    time = t if t is not None else datetime.fromtimestamp(received, timezone.utc)
                    changes += alarms.changes(device_id, self._alarm_word, loc, time)
                self._alarm_word = word
        self.gateway.writer.submit_then(rows, changes, then)

    @staticmethod
    def row(device_id: int, loc: Location, time: datetime, received: datetime, blind: bool) -> Position:
        """A report as a ``Position`` (what ``_store`` prepares, in the reading model)."""
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


#: Epoch seconds of report times, by time: the reports of one second share it (the fast
#: decoder gives them one ``datetime``, whose hash it then keeps).
_EPOCHS: dict[datetime, float] = {}
#: At this many the cache starts again.
EPOCHS_KEPT = 64


def _epoch(t: datetime) -> float:
    """``t.timestamp()``, kept for the next report of the same time when ``t`` has a fixed
    offset (as decoded reports do): equal such times are one instant. A naive time, or one
    in a zone with folds, is not kept (equal ones can be different instants)."""
    epoch = t.timestamp()
    if type(t.tzinfo) is not timezone:
        return epoch
    if len(_EPOCHS) >= EPOCHS_KEPT:
        _EPOCHS.clear()
    _EPOCHS[t] = epoch
    return epoch


_DIGEST = Struct(">IIddhdHd")
_SAFETY_ITEMS = alarms.SAFETY_ITEMS


def report_digest(loc: Location, time: datetime) -> bytes:
    """Identifies a report by its basic fields and time, whichever way it arrives (a unit
    re-sends an unacknowledged 0x0200 inside a 0x0704), so it is stored once."""
    return _digest(loc, time.timestamp())


def _digest(loc: Location, epoch: float) -> bytes:
    raw = _DIGEST.pack(
        loc.alarm, loc.status, loc.latitude, loc.longitude, loc.altitude, loc.speed,
        loc.direction, epoch,
    )  # fmt: skip
    return _md5(raw, usedforsecurity=False).digest()


_md5 = hashlib.md5


def extras_json(extras: dict[int, Any]) -> str:
    """The additional items as JSON (keys "0x01"…), as PostgreSQL's jsonb takes them."""
    parts = []
    for k, v in extras.items():
        t = type(v)
        if t is int:
            parts.append(f"{_KEYS[k]}{v}")  # an exact int formats as its repr
        elif t is bytes:
            parts.append(f'{_KEYS[k]}"{v.hex()}"')
        else:
            return _extras_json(extras)  # typed items: the general way
    return "{" + ",".join(parts) + "}"


#: '"0x01":' and the like, by item id.
_KEYS = [f'"0x{k:02x}":' for k in range(256)]


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


DeviceSession.HANDLERS = {
    **TerminalSession.HANDLERS,
    0x0001: DeviceSession._on_terminal_response,
    0x0200: DeviceSession._on_location,
    0x0201: DeviceSession._on_location_reply,
    0x0704: DeviceSession._on_batch,
    0x0801: DeviceSession._on_multimedia,
}
