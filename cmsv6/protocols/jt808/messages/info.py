"""Information and control messages: tracking, alarm confirmation, text, events, questions,
information menus, calls, phone book, vehicle control, waybill, driver identity, CAN data and
the RSA key exchange.

Several bodies end in fields that units and platforms send or leave out inconsistently (the
0x8202 validity after a zero interval, the card fields of 0x0702, the lists after a "delete
all" in 0x8301/0x8303/0x8401). Those are read when bytes remain and written when they are
not None, so whatever arrived re-encodes to the same bytes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from attrs import field, frozen
from construct import (
    Adapter,
    Array,
    Bytes,
    Computed,
    Construct,
    GreedyBytes,
    GreedyRange,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    Int32ub,
    Prefixed,
    PrefixedArray,
    Rebuild,
    Struct,
    Subconstruct,
    Terminated,
    len_,
    this,
)
from construct.core import SizeofError, stream_tell

from cmsv6.protocols.jt808.errors import DECODE_ERRORS, CodecError
from cmsv6.protocols.jt808.fields import V2019, Bcd, BcdTime, Exact, PrefixedText, Text, Trailing, Tuple
from cmsv6.protocols.jt808.messages.location import Location
from cmsv6.protocols.jt808.model import message, record

# -- private building blocks --------------------------------------------------------------


def _to_end(item: Construct) -> Construct:
    """Items repeated up to the end of the body; a partial last item is an error, not
    silently dropped (plain ``GreedyRange`` would lose it)."""
    return Exact(GreedyRange(item))


class _BcdDate(Adapter):  # type: ignore[misc]
    """BCD[4] YYYYMMDD as a date; zeros and impossible dates read as None (as ``BcdTime``)."""

    def __init__(self) -> None:
        super().__init__(Bytes(4))

    def _decode(self, obj: bytes, context: Any, path: str) -> date | None:
        digits = obj.hex()
        if not digits.isdigit() or digits == "00000000":
            return None
        try:
            return date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
        except ValueError:
            return None

    def _encode(self, obj: date | None, context: Any, path: str) -> bytes:
        if obj is None:
            return bytes(4)
        return bytes.fromhex(f"{obj.year:04d}{obj.month:02d}{obj.day:02d}")


class _OrBytes(Subconstruct):  # type: ignore[misc]
    """A date or time field that keeps its bytes when they are not one (and not zeros,
    which mean "none"), as an additional item that does not fit its type is kept raw: some
    units write the 0x0702 card time and validity in binary, not BCD."""

    def __init__(self, subcon: Construct, size: int) -> None:
        super().__init__(subcon)
        self.size = size

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        start = stream_tell(stream, path)
        value = self.subcon._parsereport(stream, context, path)
        if value is not None:
            return value
        end = stream_tell(stream, path)
        stream.seek(start)
        raw = stream.read(end - start)
        return None if raw == bytes(len(raw)) else raw

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if isinstance(obj, (bytes, bytearray)):
            if len(obj) != self.size:
                raise CodecError(f"{bytes(obj).hex()} is not {self.size} bytes")
            stream.write(bytes(obj))
            return obj
        return self.subcon._build(obj, stream, context, path)

    def _sizeof(self, context: Any, path: str) -> int:
        return self.size


def _optional_tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


# -- 0x8202 / 0x8203 / 0x8204 -------------------------------------------------------------


@message(0x8202)
@frozen
class TemporaryTracking:
    """Temporary location tracking: report every ``interval`` seconds for ``validity``
    seconds. An interval of 0 stops tracking, and the standard then sends no validity."""

    interval: int
    validity: int | None = None

    FORMAT = Struct("interval" / Int16ub, "validity" / Trailing(Int32ub))


@message(0x8203)
@frozen
class AlarmConfirmation:
    """Manual alarm confirmation: the serial of the alarm report (0 = every alarm of these
    types) and the alarm bits confirmed (JT/T 808 table 25)."""

    alarm_serial: int
    alarm_types: int

    FORMAT = Struct("alarm_serial" / Int16ub, "alarm_types" / Int32ub)


@message(0x8204)
@frozen
class LinkCheck:
    """2019: the platform checks the link; the terminal answers with a general response."""

    FORMAT = Struct()


# -- 0x8500 / 0x0500 vehicle control ------------------------------------------------------

CONTROL_DOOR = 0x0001  # 2019 control type: parameter 0 locks, 1 opens the door


@record
@frozen
class ControlItem:
    """2019: one control type and its parameter (a BYTE for every type the standard or
    the peers we know define)."""

    control_id: int
    param: int

    FORMAT = Struct("control_id" / Int16ub, "param" / Int8ub)


@message(0x8500)
@frozen
class VehicleControl:
    """Vehicle control. 2013: one control flag BYTE (bit 0: 1 lock the doors). 2019: a
    count WORD and control items; ``flag`` is None there and ``controls`` empty in 2013."""

    flag: int | None = None
    controls: tuple[ControlItem, ...] = field(default=(), converter=tuple)

    FORMAT = IfThenElse(
        V2019,
        Struct(
            "flag" / Computed(None),
            "count" / Rebuild(Int16ub, len_(this.controls)),
            "controls" / Tuple(Array(this.count, ControlItem.CODEC)),  # type: ignore[attr-defined]
        ),
        Struct("flag" / Int8ub, "controls" / Computed(())),
    )


@message(0x0500)
@frozen
class VehicleControlResponse:
    """The terminal's answer to 0x8500: the request's serial and the location after it."""

    reply_serial: int
    location: Location

    FORMAT = Struct("reply_serial" / Int16ub, "location" / Location.CODEC)  # type: ignore[attr-defined]


# -- 0x8300 text ---------------------------------------------------------------------------

# Text flag bits, 2013 (2019 uses bits 0-1 as a two-bit kind: 1 service, 2 urgent, 3 notice).
TEXT_URGENT = 1 << 0
TEXT_DISPLAY = 1 << 2
TEXT_TTS = 1 << 3
TEXT_ADVERT_SCREEN = 1 << 4
TEXT_CAN_FAULT = 1 << 5
# 2019 text types.
TEXT_TYPE_NOTICE = 1
TEXT_TYPE_SERVICE = 2


@message(0x8300)
@frozen
class TextMessage:
    """Text to show or speak. 2019 adds the text type BYTE after the flag (None in 2013,
    required in 2019)."""

    flag: int
    text: str
    text_type: int | None = None

    FORMAT = IfThenElse(
        V2019,
        Struct("flag" / Int8ub, "text_type" / Int8ub, "text" / Text()),
        Struct("flag" / Int8ub, "text_type" / Computed(None), "text" / Text()),
    )


# -- 0x8301 / 0x0301 events ---------------------------------------------------------------

# Setting kinds of 0x8301, 0x8303 and 0x8401 (0x8401 has no "modify").
SET_DELETE_ALL = 0
SET_UPDATE = 1
SET_APPEND = 2
SET_MODIFY = 3
SET_DELETE = 4  # 0x8301 only: delete the listed events


@record
@frozen
class Event:
    event_id: int
    content: str

    FORMAT = Struct("event_id" / Int8ub, "content" / PrefixedText(Int8ub))


@message(0x8301)
@frozen
class SetEvents:
    """Event set. After "delete all" (kind 0) the standard sends nothing more, so
    ``events`` is None when the body ends after the kind (and nothing is written for None)."""

    kind: int
    events: tuple[Event, ...] | None = field(default=None, converter=_optional_tuple)

    FORMAT = Struct(
        "kind" / Int8ub,
        "events" / Trailing(Tuple(PrefixedArray(Int8ub, Event.CODEC))),  # type: ignore[attr-defined]
    )


@message(0x0301)
@frozen
class EventReport:
    event_id: int

    FORMAT = Struct("event_id" / Int8ub)


# -- 0x8302 / 0x0302 questions ------------------------------------------------------------


@record
@frozen
class Answer:
    answer_id: int
    content: str

    FORMAT = Struct("answer_id" / Int8ub, "content" / PrefixedText(Int16ub))


@message(0x8302)
@frozen
class Question:
    """A question with candidate answers; the answers run to the end of the body (no count)."""

    flag: int
    question: str
    answers: tuple[Answer, ...] = field(default=(), converter=tuple)

    FORMAT = Struct(
        "flag" / Int8ub,
        "question" / PrefixedText(Int8ub),
        "answers" / Tuple(_to_end(Answer.CODEC)),  # type: ignore[attr-defined]
    )


@message(0x0302)
@frozen
class QuestionAnswer:
    reply_serial: int
    answer_id: int

    FORMAT = Struct("reply_serial" / Int16ub, "answer_id" / Int8ub)


# -- 0x8303 / 0x0303 / 0x8304 information service -----------------------------------------


@record
@frozen
class InfoMenuItem:
    info_type: int
    name: str

    FORMAT = Struct("info_type" / Int8ub, "name" / PrefixedText(Int16ub))


@message(0x8303)
@frozen
class SetInfoMenu:
    """Information on-demand menu. As 0x8301, ``items`` is None when the body ends after
    the kind (delete all)."""

    kind: int
    items: tuple[InfoMenuItem, ...] | None = field(default=None, converter=_optional_tuple)

    FORMAT = Struct(
        "kind" / Int8ub,
        "items" / Trailing(Tuple(PrefixedArray(Int8ub, InfoMenuItem.CODEC))),  # type: ignore[attr-defined]
    )


@message(0x0303)
@frozen
class InfoOnDemand:
    """The terminal orders (``flag`` 1) or cancels (0) an information type."""

    info_type: int
    flag: int

    FORMAT = Struct("info_type" / Int8ub, "flag" / Int8ub)


@message(0x8304)
@frozen
class InfoService:
    info_type: int
    content: str

    FORMAT = Struct("info_type" / Int8ub, "content" / PrefixedText(Int16ub))


# -- 0x8400 / 0x8401 calls ----------------------------------------------------------------

CALL_NORMAL = 0
CALL_MONITOR = 1


@message(0x8400)
@frozen
class CallBack:
    """Call back: ``flag`` 0 is a normal call, 1 listening in. The number (at most 20 bytes)
    runs to the end of the body."""

    flag: int
    phone: str

    FORMAT = Struct("flag" / Int8ub, "phone" / Text())


# Contact flags.
CONTACT_CALL_IN = 1
CONTACT_CALL_OUT = 2
CONTACT_CALL_IN_OUT = 3


@record
@frozen
class Contact:
    flag: int
    phone: str
    name: str

    FORMAT = Struct(
        "flag" / Int8ub, "phone" / PrefixedText(Int8ub), "name" / PrefixedText(Int8ub)
    )


@message(0x8401)
@frozen
class SetPhoneBook:
    """Phone book. As 0x8301, ``contacts`` is None when the body ends after the kind."""

    kind: int
    contacts: tuple[Contact, ...] | None = field(default=None, converter=_optional_tuple)

    FORMAT = Struct(
        "kind" / Int8ub,
        "contacts" / Trailing(Tuple(PrefixedArray(Int8ub, Contact.CODEC))),  # type: ignore[attr-defined]
    )


# -- 0x0701 / 0x0702 / 0x0705 -------------------------------------------------------------


@message(0x0701)
@frozen
class ElectronicWaybill:
    """Electronic waybill: a DWORD length and the content, whose format is the unit's own."""

    content: bytes

    FORMAT = Struct("content" / Prefixed(Int32ub, GreedyBytes))


CARD_INSERTED = 0x01
CARD_REMOVED = 0x02
CARD_READ_OK = 0x00


def _driver_layout(layout: int) -> Struct:
    if layout == 2011:
        return Struct(
            "layout" / Computed(2011),
            "status" / Computed(None),
            "time" / Computed(None),
            "ic_result" / Computed(None),
            "driver_name" / PrefixedText(Int8ub),
            "id_card" / Text(20),
            "qualification" / Text(40),
            "issuer" / PrefixedText(Int8ub),
            "validity" / Computed(None),
            "rest" / GreedyBytes,
        )
    # 2013 and 2019 differ only by the ID card number at the end, which some units send
    # under a 2013 header too. The read result, the card fields (name to validity, which
    # come as a group) and the ID card are each read when bytes remain.
    has_card = this.driver_name != None  # noqa: E711 - a construct expression, not a test
    return Struct(
        "layout" / Computed(layout),
        "status" / Int8ub,
        "time" / _OrBytes(BcdTime, 6),
        "ic_result" / Trailing(Int8ub),
        "driver_name" / Trailing(PrefixedText(Int8ub)),
        "qualification" / If(has_card, Text(20)),
        "issuer" / If(has_card, PrefixedText(Int8ub)),
        "validity" / If(has_card, _OrBytes(_BcdDate(), 4)),
        "id_card" / Trailing(Text(20)),
        "rest" / GreedyBytes,
    )


class _DriverIdentityFormat(Construct):  # type: ignore[misc]
    """2019 from the header. 2011 and 2013 share a header: a body that is exactly a 2011
    one (name, 20 + 40 bytes, issuer, nothing after) is read as 2011, any other as 2013.
    The status byte cannot tell them apart: a 2011 name of 1 or 2 bytes starts the same."""

    LAYOUTS = {v: _driver_layout(v) for v in (2011, 2013, 2019)}
    _EXACT_2011 = Struct(
        PrefixedText(Int8ub), Text(20), Text(40), PrefixedText(Int8ub), Terminated
    )

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        if context._params.version == 2019:
            return self.LAYOUTS[2019]._parsereport(stream, context, path)
        start = stream_tell(stream, path)
        try:
            self._EXACT_2011._parsereport(stream, context, path)
            layout = 2011
        except DECODE_ERRORS:  # does not read as 2011
            layout = 2013
        stream.seek(start)
        return self.LAYOUTS[layout]._parsereport(stream, context, path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        layout = obj.get("layout") or (2019 if context._params.version == 2019 else 2013)
        if layout not in self.LAYOUTS:
            raise CodecError(f"0x0702 has no layout {layout!r}")
        return self.LAYOUTS[layout]._build(obj, stream, context, path)

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError("0x0702 has no fixed size", path=path)


@message(0x0702)
@frozen
class DriverIdentity:
    """Driver identity report.

    2011: name, ID card number STRING[20], qualification certificate STRING[40], issuer.
    2013: card ``status`` (1 inserted, 2 removed), ``time``, then the read result and (on a
    good read) name, qualification STRING[20], issuer and ``validity`` date; 2019 adds the
    ``id_card`` STRING[20]. The standard sends the read result only on insertion, but some
    units send every field whatever the status, so each field after the time is there when
    bytes remain. A ``time`` or ``validity`` that is not BCD (some units write binary) is
    kept as its bytes. ``rest`` keeps vendor bytes after the last known field. ``layout`` says
    which form was read or is to be written (2011 and 2013 share a header).
    """

    status: int | None = None
    time: datetime | bytes | None = None
    ic_result: int | None = None
    driver_name: str | None = None
    qualification: str | None = None
    issuer: str | None = None
    validity: date | bytes | None = None
    id_card: str | None = None
    rest: bytes = b""
    layout: int | None = None

    FORMAT = _DriverIdentityFormat()


@record
@frozen
class CanItem:
    """One CAN frame: the id DWORD (bit 31 channel, bit 30 frame type, bit 29 collection
    method, bits 0-28 the bus id) and its 8 data bytes."""

    can_id: int
    data: bytes

    FORMAT = Struct("can_id" / Int32ub, "data" / Bytes(8))


@message(0x0705)
@frozen
class CanBusData:
    """CAN bus data upload. ``receive_time`` is the BCD[5] hhmmss + milliseconds of the first
    frame, kept as its digits because units disagree on the sub-second part."""

    receive_time: str
    items: tuple[CanItem, ...] = field(converter=tuple)

    FORMAT = Struct(
        "count" / Rebuild(Int16ub, len_(this.items)),
        "receive_time" / Bcd(5),
        "items" / Tuple(Array(this.count, CanItem.CODEC)),  # type: ignore[attr-defined]
    )


# -- 0x8A00 / 0x0A00 RSA keys -------------------------------------------------------------

_RsaKey = Struct("e" / Int32ub, "n" / Bytes(128))


@message(0x8A00)
@frozen
class PlatformRsaKey:
    """The platform's RSA public key {e, n}: e DWORD, n BYTE[128]."""

    e: int
    n: bytes

    FORMAT = _RsaKey


@message(0x0A00)
@frozen
class TerminalRsaKey:
    """The terminal's RSA public key {e, n}: e DWORD, n BYTE[128]."""

    e: int
    n: bytes

    FORMAT = _RsaKey
