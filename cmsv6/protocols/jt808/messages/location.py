"""Location reports: 0x0200, 0x0201, 0x0704, and the additional-information items.

The basic report is 28 bytes; additional items follow as ``id BYTE · length BYTE · value``.
Known items are typed; an item whose value does not fit its type, and any item we do not
know, is kept as raw bytes, so a vendor's item never fails a report. Bytes after the last
whole item are kept in ``rest``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import field, frozen
from construct import (
    Adapter,
    Computed,
    Array,
    Rebuild,
    len_,
    Bytes,
    Construct,
    GreedyBytes,
    GreedyRange,
    If,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32ub,
    Prefixed,
    PrefixedArray,
    Select,
    Struct,
    this,
)

from cmsv6.protocols.jt808.errors import DECODE_ERRORS, CodecError
from cmsv6.protocols.jt808.fields import Ascii, BcdTime, Exact, Tuple
from cmsv6.protocols.jt808.model import message, record

# Status bits used by the codec (JT/T 808 table 24).
STATUS_ACC = 1 << 0
STATUS_FIXED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3

# Alarm bits (JT/T 808 table 25) the platform must acknowledge or clear.
ALARM_EMERGENCY = 1 << 0
ALARM_OVERSPEED = 1 << 1


# -- additional-information items --------------------------------------------------------


@record
@frozen
class AreaAlarm:
    """0x12: entering or leaving an area or route."""

    location_type: int
    area_id: int
    direction: int  # 0 in, 1 out

    FORMAT = Struct("location_type" / Int8ub, "area_id" / Int32ub, "direction" / Int8ub)


@record
@frozen
class OverspeedAlarm:
    """0x11: overspeed; the area id is there unless the location type is 0 (none)."""

    location_type: int
    area_id: int | None = None

    FORMAT = Struct(
        "location_type" / Int8ub,
        "area_id" / If(this.location_type != 0, Int32ub),
    )


@record
@frozen
class RouteTimeAlarm:
    """0x13: section driving time too short or too long."""

    section_id: int
    seconds: int
    result: int  # 0 too short, 1 too long

    FORMAT = Struct("section_id" / Int32ub, "seconds" / Int16ub, "result" / Int8ub)


@record
@frozen
class DrivingBehaviorAlarm:
    """0x18 (JT/T 1078): abnormal driving behaviour bits and fatigue degree."""

    behavior: int
    fatigue: int

    FORMAT = Struct("behavior" / Int16ub, "fatigue" / Int8ub)


def _identification_format(terminal_id: int, reserved: Construct | None) -> Struct:
    fields = [
        "terminal_id" / Ascii(terminal_id),
        "time" / BcdTime,
        "sequence" / Int8ub,
        "attachments" / Int8ub,
    ]
    if reserved is not None:
        fields.append("reserved" / reserved)
    return Struct(*fields)


@record
@frozen
class AlarmIdentification:
    """Active-safety alarm identification, T/JSATL12 (Jiangsu, the national form): terminal
    id BYTE[7], time, sequence, attachment count, a reserved BYTE (16 bytes)."""

    terminal_id: str
    time: datetime | None
    sequence: int
    attachments: int
    reserved: int = 0

    FORMAT = _identification_format(7, Int8ub)


@record
@frozen
class AlarmIdentification30:
    """Sichuan: a 30-byte terminal id and a reserved BYTE (39 bytes)."""

    terminal_id: str
    time: datetime | None
    sequence: int
    attachments: int
    reserved: int = 0

    FORMAT = _identification_format(30, Int8ub)


@record
@frozen
class AlarmIdentificationGD:
    """Guangdong: a 30-byte terminal id and a reserved WORD (40 bytes)."""

    terminal_id: str
    time: datetime | None
    sequence: int
    attachments: int
    reserved: int = 0

    FORMAT = _identification_format(30, Int16ub)


@record
@frozen
class AlarmIdentificationHLJ:
    """Heilongjiang: a 30-byte terminal id, nothing reserved (38 bytes)."""

    terminal_id: str
    time: datetime | None
    sequence: int
    attachments: int

    FORMAT = _identification_format(30, None)


AnyAlarmIdentification = (
    AlarmIdentification | AlarmIdentification30 | AlarmIdentificationGD | AlarmIdentificationHLJ
)
#: Every form, in the order an ambiguous body is tried (their lengths all differ).
IDENTIFICATIONS: tuple[type, ...] = (
    AlarmIdentification,
    AlarmIdentificationGD,
    AlarmIdentificationHLJ,
    AlarmIdentification30,
)

_COMMON_TAIL = (
    "speed" / Int8ub,
    "altitude" / Int16ub,
    "latitude" / Int32ub,
    "longitude" / Int32ub,
    "time" / BcdTime,
    "vehicle_status" / Int16ub,
)


def _each_identification(*head: Any, after: tuple[Any, ...] = ()) -> Construct:
    """One safety-alarm layout per identification form; the one that uses every byte wins
    (building picks the one whose form the value has)."""
    return Select(
        *(
            Exact(Struct(*head, *_COMMON_TAIL, "identification" / ident.CODEC, *after))  # type: ignore[attr-defined]
            for ident in IDENTIFICATIONS
        )
    )


@record
@frozen
class AdasAlarm:
    """0x64: advanced driver assistance alarm (T/JSATL12 table 4-15)."""

    alarm_id: int
    flag: int
    alarm_type: int
    level: int
    front_speed: int
    front_distance: int
    deviation_type: int
    road_sign_type: int
    road_sign_data: int
    speed: int
    altitude: int
    latitude: int
    longitude: int
    time: datetime | None
    vehicle_status: int
    identification: AnyAlarmIdentification

    FORMAT = _each_identification(
        "alarm_id" / Int32ub,
        "flag" / Int8ub,
        "alarm_type" / Int8ub,
        "level" / Int8ub,
        "front_speed" / Int8ub,
        "front_distance" / Int8ub,
        "deviation_type" / Int8ub,
        "road_sign_type" / Int8ub,
        "road_sign_data" / Int8ub,
    )


@record
@frozen
class DsmAlarm:
    """0x65: driver state monitoring alarm (table 4-17)."""

    alarm_id: int
    flag: int
    alarm_type: int
    level: int
    fatigue: int
    reserved: bytes
    speed: int
    altitude: int
    latitude: int
    longitude: int
    time: datetime | None
    vehicle_status: int
    identification: AnyAlarmIdentification

    FORMAT = _each_identification(
        "alarm_id" / Int32ub,
        "flag" / Int8ub,
        "alarm_type" / Int8ub,
        "level" / Int8ub,
        "fatigue" / Int8ub,
        "reserved" / Bytes(4),
    )


@record
@frozen
class TireAlarm:
    position: int
    alarm_type: int
    pressure: int
    temperature: int
    battery: int

    FORMAT = Struct(
        "position" / Int8ub,
        "alarm_type" / Int16ub,
        "pressure" / Int16ub,
        "temperature" / Int16ub,
        "battery" / Int16ub,
    )


@record
@frozen
class TpmsAlarm:
    """0x66: tyre pressure monitoring alarm, one entry per tyre (table 4-18)."""

    alarm_id: int
    flag: int
    speed: int
    altitude: int
    latitude: int
    longitude: int
    time: datetime | None
    vehicle_status: int
    identification: AnyAlarmIdentification
    tires: tuple[TireAlarm, ...] = field(converter=tuple)

    FORMAT = _each_identification(
        "alarm_id" / Int32ub,
        "flag" / Int8ub,
        after=("tires" / Tuple(PrefixedArray(Int8ub, TireAlarm.CODEC)),),  # type: ignore[attr-defined]
    )


@record
@frozen
class BsdAlarm:
    """0x67: blind spot detection alarm (table 4-20)."""

    alarm_id: int
    flag: int
    alarm_type: int
    speed: int
    altitude: int
    latitude: int
    longitude: int
    time: datetime | None
    vehicle_status: int
    identification: AnyAlarmIdentification

    FORMAT = _each_identification(
        "alarm_id" / Int32ub, "flag" / Int8ub, "alarm_type" / Int8ub
    )


#: Typed additional items: id → construct of the value (the whole value must be used).
#: Integer items are in the units of the standard (mileage 1/10 km, fuel 1/10 L,
#: speed 1/10 km/h).
EXTRA_ITEMS: dict[int, Construct] = {
    0x01: Int32ub,  # mileage, 1/10 km
    0x02: Int16ub,  # fuel, 1/10 L
    0x03: Int16ub,  # speed from the recorder, 1/10 km/h
    0x04: Int16ub,  # id of an alarm event to confirm manually
    0x06: Int16sb,  # carriage temperature, °C (2019)
    0x11: OverspeedAlarm.CODEC,  # type: ignore[attr-defined]
    0x12: AreaAlarm.CODEC,  # type: ignore[attr-defined]
    0x13: RouteTimeAlarm.CODEC,  # type: ignore[attr-defined]
    0x14: Int32ub,  # 1078 video alarm bits
    0x15: Int32ub,  # 1078 video signal loss, channel bits
    0x16: Int32ub,  # 1078 video occlusion, channel bits
    0x17: Int16ub,  # 1078 storage fault bits
    0x18: DrivingBehaviorAlarm.CODEC,  # type: ignore[attr-defined]
    0x25: Int32ub,  # extended vehicle signal status
    0x2A: Int16ub,  # IO status
    0x2B: Int32ub,  # analog values (AD0 low word, AD1 high word)
    0x30: Int8ub,  # network signal strength
    0x31: Int8ub,  # GNSS satellites in use
    0x64: AdasAlarm.CODEC,  # type: ignore[attr-defined]
    0x65: DsmAlarm.CODEC,  # type: ignore[attr-defined]
    0x66: TpmsAlarm.CODEC,  # type: ignore[attr-defined]
    0x67: BsdAlarm.CODEC,  # type: ignore[attr-defined]
}

_ITEM_PARSERS = {k: Exact(v) for k, v in EXTRA_ITEMS.items()}


def _split_items(items: list[Any], tail: bytes) -> tuple[dict[int, Any], bytes]:
    """Whole items → ({id: typed value}, rest). An id that comes again ends the typed part:
    it and everything after it stay raw in ``rest``, so nothing is lost."""
    extras: dict[int, Any] = {}
    for n, item in enumerate(items):
        if item.id in extras:
            raw = b"".join(bytes((i.id, len(i.value))) + i.value for i in items[n:])
            return extras, raw + tail
        extras[item.id] = decode_extra(item.id, item.value)
    return extras, tail


def decode_extra(item_id: int, raw: bytes) -> Any:
    """The typed value of one additional item, or its bytes if it has no type or does not fit."""
    parser = _ITEM_PARSERS.get(item_id)
    if parser is None:
        return raw
    try:
        return parser.parse(raw)
    except DECODE_ERRORS:  # it does not fit its type: keep it raw (a bug still propagates)
        return raw


def encode_extra(item_id: int, value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    subcon = EXTRA_ITEMS.get(item_id)
    if subcon is None:
        raise CodecError(f"additional item 0x{item_id:02x} must be given as bytes")
    raw = subcon.build(value)
    if len(raw) > 255:
        raise CodecError(f"additional item 0x{item_id:02x} is longer than 255 bytes")
    return raw


_Item = Struct("id" / Int8ub, "value" / Prefixed(Int8ub, GreedyBytes))


def degrees(raw: int, negative: bool) -> float:
    """A latitude or longitude DWORD (millionths of a degree) as signed degrees.

    The standard writes the magnitude and sets a status bit (``negative``) for south or
    west. Some units write a south/west value as a two's complement DWORD instead, with or
    without the bit; no magnitude reaches 2^31 millionths (2147°), so a DWORD with its top
    bit set is read as signed int32 whatever the bit says (the unit meant south or west).
    """
    if raw & 0x80000000:
        return (raw - (1 << 32)) / 1e6
    return -(raw / 1e6) if negative else raw / 1e6


def degrees_dword(value: float, twos_complement: bool) -> int:
    """The DWORD of signed degrees: the magnitude, or, for a negative value the unit wrote
    in two's complement (``twos_complement``), that form again."""
    raw = round(value * 1e6)
    if twos_complement and raw < 0:
        if raw < -(1 << 31):
            raise CodecError(f"{value} degrees does not fit a signed DWORD")
        return raw & 0xFFFFFFFF
    raw = abs(raw)
    if raw > 0xFFFFFFFF:
        raise CodecError(f"{value} degrees does not fit")
    return raw


def twos_complement_bits(raw_latitude: int, raw_longitude: int) -> int:
    """STATUS_SOUTH / STATUS_WEST for the coordinates written as two's complement."""
    return (STATUS_SOUTH if raw_latitude & 0x80000000 else 0) | (
        STATUS_WEST if raw_longitude & 0x80000000 else 0
    )


class _Tenths(Adapter):  # type: ignore[misc]
    def _decode(self, obj: int, context: Any, path: str) -> float:
        return obj / 10

    def _encode(self, obj: float, context: Any, path: str) -> int:
        return round(obj * 10)


def signed_status(status: int, latitude: float, longitude: float, twos_complement: int = 0) -> int:
    """``status`` with the south/west bits set for negative degrees, except for those the
    unit wrote in two's complement (``twos_complement`` bits): their bit stays as it came."""
    if latitude < 0 and not twos_complement & STATUS_SOUTH:
        status |= STATUS_SOUTH
    if longitude < 0 and not twos_complement & STATUS_WEST:
        status |= STATUS_WEST
    return status


class _Status(Adapter):  # type: ignore[misc]
    """The status word; building sets the south/west bits from the signs of the degrees."""

    def _decode(self, obj: int, context: Any, path: str) -> int:
        return obj

    def _encode(self, obj: int, context: Any, path: str) -> int:
        return signed_status(obj, context.latitude, context.longitude, context.twos_complement)


LocationStruct = Struct(
    "alarm" / Int32ub,
    "status" / _Status(Int32ub),
    "_latitude"
    / Rebuild(
        Int32ub, lambda ctx: degrees_dword(ctx.latitude, bool(ctx.twos_complement & STATUS_SOUTH))
    ),
    "_longitude"
    / Rebuild(
        Int32ub, lambda ctx: degrees_dword(ctx.longitude, bool(ctx.twos_complement & STATUS_WEST))
    ),
    "latitude" / Computed(lambda ctx: degrees(ctx._latitude, bool(ctx.status & STATUS_SOUTH))),
    "longitude" / Computed(lambda ctx: degrees(ctx._longitude, bool(ctx.status & STATUS_WEST))),
    "twos_complement" / Computed(lambda ctx: twos_complement_bits(ctx._latitude, ctx._longitude)),
    "altitude" / Int16sb,
    "speed" / _Tenths(Int16ub),
    "direction" / Int16ub,
    "time" / BcdTime,
    "_items"
    / Rebuild(
        GreedyRange(_Item),
        lambda ctx: [dict(id=k, value=encode_extra(k, v)) for k, v in ctx.extras.items()],
    ),
    "_tail" / Rebuild(GreedyBytes, this.rest),
    "_split" / Computed(lambda ctx: _split_items(ctx._items, ctx._tail)),
    "extras" / Computed(this._split[0]),
    "rest" / Computed(this._split[1]),
)


@message(0x0200)
@frozen
class Location:
    """A position report. Degrees are signed (south and west negative), speed in km/h,
    altitude in metres, time in Beijing time (None when the unit sent none).

    ``twos_complement`` has the STATUS_SOUTH / STATUS_WEST bit of each coordinate the unit
    wrote as a two's complement DWORD rather than a magnitude (see ``degrees``), so that
    it is written back the same way; 0 (the standard form) for every report we make.
    """

    alarm: int
    status: int
    latitude: float
    longitude: float
    altitude: int
    speed: float
    direction: int
    time: datetime | None
    extras: dict[int, Any] = field(factory=dict)
    rest: bytes = b""
    twos_complement: int = 0

    FORMAT = LocationStruct


@message(0x8201)
@frozen
class QueryLocation:
    FORMAT = Struct()


@message(0x0201)
@frozen
class LocationQueryResponse:
    reply_serial: int
    location: Location

    FORMAT = Struct("reply_serial" / Int16ub, "location" / Location.CODEC)  # type: ignore[attr-defined]


BATCH_NORMAL = 0
BATCH_BLIND_AREA = 1


@message(0x0704)
@frozen
class LocationBatch:
    """Batch upload: ``kind`` 0 is a normal batch, 1 a blind-area (backfill) upload."""

    kind: int
    locations: tuple[Location, ...] = field(converter=tuple)

    FORMAT = Struct(
        "count" / Rebuild(Int16ub, len_(this.locations)),
        "kind" / Int8ub,
        "locations"
        / Tuple(Array(this.count, Prefixed(Int16ub, Location.CODEC))),  # type: ignore[attr-defined]
    )
