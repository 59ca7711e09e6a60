"""Terminal parameters, control, attributes and upgrade: 0x8103 0x8104 0x8106 0x0104 0x8105
0x8107 0x0107 0x8108 0x0108.

The parameter table of 0x8103 and 0x0104 is ``count BYTE`` then items
``id DWORD · length BYTE · value``. Its Python form is a tuple of ``(id, value)`` pairs in
wire order, because one id may appear more than once (several monitoring-platform numbers
under 0x0040, for one); the body classes take a dict too::

    SetParameters({0x0013: "10.0.0.1", 0x0018: 7611})

Values of the JT/T 808-2013/2019 and JT/T 1078 ids in ``PARAM_TYPES`` are typed (numbers
in the units of the standard, STRING as ``str``, structures as records). An item whose id we
do not know, or whose value does not read back to the very same bytes as its type (a wrong
length, a string that is not GBK), is kept as ``bytes``, so any table re-encodes as it came.

Units disagree on the widths of some fixed fields in 2019 frames (0x0107 and 0x8108: the
standard's 11-byte manufacturer id, or the 5 bytes of 2013 that several peers kept); the
decoder takes the layout that uses the body exactly and records it when it is not the
standard one for the frame's version, so re-encoding gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Self

import attrs
from attrs import field, frozen
from construct import (
    Adapter,
    Array,
    BitsInteger,
    BitStruct,
    Computed,
    Construct,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Optional,
    Prefixed,
    PrefixedArray,
    Rebuild,
    Struct,
    Terminated,
    this,
)
from construct.core import stream_seek, stream_size, stream_tell

from cmsv6.protocols.jt808.errors import DECODE_ERRORS, ENCODE_ERRORS, CodecError
from cmsv6.protocols.jt808.fields import (
    TEXT_ENCODING,
    Bcd,
    Exact,
    PrefixedText,
    Text,
    Tuple,
    text_decode,
    text_encode,
)
from cmsv6.protocols.jt808.model import message, record

# -- text -------------------------------------------------------------------------------
# Text in the bodies (0x8105 parameters, 0x0107 and 0x8108 ids and versions) is
# fields.Text: lossless, so those bodies re-encode exactly. A STRING parameter value is
# strict instead: one that is not GBK leaves the whole item as bytes (see decode_param).


class _StrictText(Adapter):  # type: ignore[misc]
    """A STRING parameter: GBK or nothing (the item is then kept as bytes)."""

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return obj.decode(TEXT_ENCODING)

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise CodecError(f"expected a string, got {type(obj).__name__}")
        try:
            return obj.encode(TEXT_ENCODING)
        except UnicodeEncodeError as e:
            raise CodecError(f"{obj!r} cannot be written as GBK: {e}") from None


STRING = _StrictText(GreedyBytes)
BYTE, WORD, DWORD = Int8ub, Int16ub, Int32ub


# -- structured parameter values ------------------------------------------------------------


@record
@frozen
class IllegalDrivingPeriod:
    """0x0032 (2019): the daily period in which driving is a violation, e.g. 22:50-10:30."""

    start_hour: int
    start_minute: int
    end_hour: int
    end_minute: int

    FORMAT = Struct(
        "start_hour" / Int8ub,
        "start_minute" / Int8ub,
        "end_hour" / Int8ub,
        "end_minute" / Int8ub,
    )


@record
@frozen
class CanIdCollection:
    """0x0110-0x01FF: collection of one CAN bus id. ``interval_ms`` 0 means not collected;
    ``channel`` 0 is CAN1; ``extended_frame`` 1 for extended frames; ``computed`` 1 to
    collect the value computed over the interval instead of raw frames."""

    interval_ms: int
    channel: int
    extended_frame: int
    computed: int
    can_id: int

    FORMAT = BitStruct(
        "interval_ms" / BitsInteger(32),
        "channel" / BitsInteger(1),
        "extended_frame" / BitsInteger(1),
        "computed" / BitsInteger(1),
        "can_id" / BitsInteger(29),
    )


# JT/T 1078 table 2 (0x0075) and table 5 (0x0077): one stream's encoder settings.
_STREAM = (
    "live_encode_mode" / Int8ub,  # 0 CBR, 1 VBR, 2 ABR
    "live_resolution" / Int8ub,  # 0 QCIF, 1 CIF, 2 WCIF, 3 D1, 4 WD1, 5 720P, 6 1080P
    "live_keyframe_interval" / Int16ub,  # frames
    "live_frame_rate" / Int8ub,  # frames/s
    "live_bitrate" / Int32ub,  # kbps
    "store_encode_mode" / Int8ub,
    "store_resolution" / Int8ub,
    "store_keyframe_interval" / Int16ub,
    "store_frame_rate" / Int8ub,
    "store_bitrate" / Int32ub,
    "osd" / Int16ub,  # overlay bits: date/time, plate, channel, position, speeds, driving time
)


@record
@frozen
class AvParams:
    """0x0075 (JT/T 1078): audio/video parameters of the live and the stored stream."""

    live_encode_mode: int
    live_resolution: int
    live_keyframe_interval: int
    live_frame_rate: int
    live_bitrate: int
    store_encode_mode: int
    store_resolution: int
    store_keyframe_interval: int
    store_frame_rate: int
    store_bitrate: int
    osd: int
    audio_output: int

    FORMAT = Struct(*_STREAM, "audio_output" / Int8ub)


@record
@frozen
class AvChannel:
    """One row of the 0x0076 channel table. ``channel_type`` 0 audio/video, 1 audio,
    2 video; ``ptz`` 1 when a pan-tilt head is connected."""

    physical_channel: int
    logical_channel: int
    channel_type: int
    ptz: int

    FORMAT = Struct(
        "physical_channel" / Int8ub,
        "logical_channel" / Int8ub,
        "channel_type" / Int8ub,
        "ptz" / Int8ub,
    )


@record
@frozen
class AvChannels:
    """0x0076 (JT/T 1078): audio/video channel table. The three counts are sent as given
    (the table has their sum of rows), so a unit's inconsistent counts survive."""

    av_count: int
    audio_count: int
    video_count: int
    channels: tuple[AvChannel, ...] = field(converter=tuple)

    FORMAT = Struct(
        "av_count" / Int8ub,
        "audio_count" / Int8ub,
        "video_count" / Int8ub,
        "channels"
        / Tuple(
            Array(
                this.av_count + this.audio_count + this.video_count,
                AvChannel.CODEC,  # type: ignore[attr-defined]
            )
        ),
    )


@record
@frozen
class ChannelVideoParams:
    """One entry of 0x0077 (JT/T 1078): a logical channel's own stream settings."""

    channel: int
    live_encode_mode: int
    live_resolution: int
    live_keyframe_interval: int
    live_frame_rate: int
    live_bitrate: int
    store_encode_mode: int
    store_resolution: int
    store_keyframe_interval: int
    store_frame_rate: int
    store_bitrate: int
    osd: int

    FORMAT = Struct("channel" / Int8ub, *_STREAM)


@record
@frozen
class AlarmRecordingParams:
    """0x0079 (JT/T 1078): special alarm recording: storage threshold (% of the disk),
    duration (min), and how long before the alarm the marked footage starts (min)."""

    storage_threshold: int
    duration: int
    start_time: int

    FORMAT = Struct("storage_threshold" / Int8ub, "duration" / Int8ub, "start_time" / Int8ub)


@record
@frozen
class ImageAnalysisParams:
    """0x007B (JT/T 1078): rated passenger count and fatigue threshold."""

    passenger_limit: int
    fatigue_threshold: int

    FORMAT = Struct("passenger_limit" / Int8ub, "fatigue_threshold" / Int8ub)


@record
@frozen
class WakePeriod:
    """One timed-wake period of 0x007C: wake and sleep times as BCD ``"HHMM"``."""

    wake: str
    sleep: str

    FORMAT = Struct("wake" / Bcd(2), "sleep" / Bcd(2))


@record
@frozen
class WakeupParams:
    """0x007C (JT/T 1078): sleep wake-up. ``mode`` bits: conditional, timed, manual;
    ``conditions`` bits: emergency alarm, collision/rollover, door open; ``weekdays`` bit0 is
    Monday; ``periods_enabled`` bit n enables period n+1 of the four."""

    mode: int
    conditions: int
    weekdays: int
    periods_enabled: int
    periods: tuple[WakePeriod, ...] = field(converter=tuple)

    FORMAT = Struct(
        "mode" / Int8ub,
        "conditions" / Int8ub,
        "weekdays" / Int8ub,
        "periods_enabled" / Int8ub,
        "periods" / Tuple(Array(4, WakePeriod.CODEC)),  # type: ignore[attr-defined]
    )


# -- the parameter ids -------------------------------------------------------------------

#: Typed parameters: id → construct of the value. Integers are in the units of the standard
#: (seconds, metres, 1/10 km, 1/10 km/h...). JT/T 808-2019 table 14 and JT/T 1078 table 1.
PARAM_TYPES: dict[int, Construct] = {
    0x0001: DWORD,  # heartbeat interval, s
    0x0002: DWORD,  # TCP reply timeout, s
    0x0003: DWORD,  # TCP retransmissions
    0x0004: DWORD,  # UDP reply timeout, s
    0x0005: DWORD,  # UDP retransmissions
    0x0006: DWORD,  # SMS reply timeout, s
    0x0007: DWORD,  # SMS retransmissions
    0x0010: STRING,  # main server APN (CDMA: PPP number)
    0x0011: STRING,  # main server dial-up user
    0x0012: STRING,  # main server dial-up password
    0x0013: STRING,  # main server address; 2019: host:port, several separated by ';'
    0x0014: STRING,  # backup server APN
    0x0015: STRING,  # backup server dial-up user
    0x0016: STRING,  # backup server dial-up password
    0x0017: STRING,  # backup server address
    0x0018: DWORD,  # server TCP port (2013)
    0x0019: DWORD,  # server UDP port (2013)
    0x001A: STRING,  # IC card authentication main server address
    0x001B: DWORD,  # IC card authentication main server TCP port
    0x001C: DWORD,  # IC card authentication main server UDP port
    0x001D: STRING,  # IC card authentication backup server address
    0x0020: DWORD,  # reporting strategy: 0 time, 1 distance, 2 both
    0x0021: DWORD,  # reporting scheme: 0 by ACC, 1 by login then ACC
    0x0022: DWORD,  # report interval with no driver logged in, s
    0x0023: STRING,  # slave server APN (2019)
    0x0024: STRING,  # slave server dial-up user (2019)
    0x0025: STRING,  # slave server dial-up password (2019)
    0x0026: STRING,  # slave server backup address (2019)
    0x0027: DWORD,  # report interval when sleeping, s
    0x0028: DWORD,  # report interval in emergency alarm, s
    0x0029: DWORD,  # default report interval, s
    0x002C: DWORD,  # default report distance, m
    0x002D: DWORD,  # report distance with no driver logged in, m
    0x002E: DWORD,  # report distance when sleeping, m
    0x002F: DWORD,  # report distance in emergency alarm, m
    0x0030: DWORD,  # corner re-send angle, degrees (< 180)
    0x0031: WORD,  # electronic fence radius (illegal displacement threshold), m
    0x0032: IllegalDrivingPeriod.CODEC,  # type: ignore[attr-defined]  # (2019)
    0x0040: STRING,  # monitoring platform phone number
    0x0041: STRING,  # reset phone number
    0x0042: STRING,  # factory-reset phone number
    0x0043: STRING,  # monitoring platform SMS number
    0x0044: STRING,  # number receiving SMS text alarms
    0x0045: DWORD,  # answering strategy: 0 automatic, 1 automatic with ACC on
    0x0046: DWORD,  # longest call, s (0 none, 0xFFFFFFFF unlimited)
    0x0047: DWORD,  # longest calls per month, s
    0x0048: STRING,  # monitoring (listen-in) number
    0x0049: STRING,  # supervision platform privileged SMS number
    0x0050: DWORD,  # alarm mask (bits of the 0x0200 alarm word)
    0x0051: DWORD,  # alarms that send an SMS
    0x0052: DWORD,  # alarms that take photos
    0x0053: DWORD,  # alarms whose photos are stored rather than uploaded
    0x0054: DWORD,  # key alarms
    0x0055: DWORD,  # top speed, km/h
    0x0056: DWORD,  # overspeed duration, s
    0x0057: DWORD,  # continuous driving limit, s
    0x0058: DWORD,  # driving time per day limit, s
    0x0059: DWORD,  # minimum rest, s
    0x005A: DWORD,  # longest stop, s
    0x005B: WORD,  # overspeed warning margin, 1/10 km/h
    0x005C: WORD,  # fatigue warning margin, s
    0x005D: WORD,  # collision: b7-b0 time (4 ms), b15-b8 acceleration (0.1 g)
    0x005E: WORD,  # rollover angle, degrees
    0x0064: DWORD,  # timed photo control
    0x0065: DWORD,  # distance photo control
    0x0070: DWORD,  # image/video quality, 1 (best) to 10
    0x0071: DWORD,  # brightness, 0-255
    0x0072: DWORD,  # contrast, 0-127
    0x0073: DWORD,  # saturation, 0-127
    0x0074: DWORD,  # chroma, 0-255
    0x0075: AvParams.CODEC,  # type: ignore[attr-defined]
    0x0076: AvChannels.CODEC,  # type: ignore[attr-defined]
    0x0077: Tuple(PrefixedArray(Int8ub, ChannelVideoParams.CODEC)),  # type: ignore[attr-defined]
    0x0079: AlarmRecordingParams.CODEC,  # type: ignore[attr-defined]
    0x007A: DWORD,  # video alarm mask (bits of the 0x14 video alarm item)
    0x007B: ImageAnalysisParams.CODEC,  # type: ignore[attr-defined]
    0x007C: WakeupParams.CODEC,  # type: ignore[attr-defined]
    0x0080: DWORD,  # odometer, 1/10 km
    0x0081: WORD,  # province id
    0x0082: WORD,  # city id
    0x0083: STRING,  # plate (GBK)
    0x0084: BYTE,  # plate colour (JT/T 415 / 697.7)
    0x0090: BYTE,  # GNSS mode bits: GPS, BeiDou, GLONASS, Galileo
    0x0091: BYTE,  # GNSS baud rate code (0 4800 ... 5 115200)
    0x0092: BYTE,  # GNSS detailed output frequency code (0 500 ms ... 4 4000 ms)
    0x0093: DWORD,  # GNSS detailed collection frequency, s
    0x0094: BYTE,  # GNSS detailed upload mode
    0x0095: DWORD,  # GNSS detailed upload setting (unit depends on 0x0094)
    0x0100: DWORD,  # CAN channel 1 collection interval, ms
    0x0101: WORD,  # CAN channel 1 upload interval, s
    0x0102: DWORD,  # CAN channel 2 collection interval, ms
    0x0103: WORD,  # CAN channel 2 upload interval, s
}
# 0x0110: the CAN id collection setting; 0x0111-0x01FF: more of the same.
PARAM_TYPES.update(
    dict.fromkeys(range(0x0110, 0x0200), CanIdCollection.CODEC)  # type: ignore[attr-defined]
)

_PARAM_PARSERS = {k: Exact(v) for k, v in PARAM_TYPES.items()}


def decode_param(param_id: int, raw: bytes) -> Any:
    """The typed value of one parameter, or ``raw`` if we have no type for the id or the
    bytes do not read back exactly as that type."""
    parser = _PARAM_PARSERS.get(param_id)
    if parser is None:
        return raw
    try:
        value = parser.parse(raw)
        if PARAM_TYPES[param_id].build(value) == raw:
            return value
    except ENCODE_ERRORS:  # it does not read back as its type: keep it raw (a bug propagates)
        pass
    return raw


def encode_param(param_id: int, value: Any) -> bytes:
    """The value bytes of one parameter (``bytes`` are written as they are)."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        fmt = PARAM_TYPES.get(param_id)
        if fmt is None:
            raise CodecError(f"parameter 0x{param_id:04x} has no type: give it as bytes")
        try:
            raw = fmt.build(value)
        except CodecError:
            raise
        except ENCODE_ERRORS as e:
            raise CodecError(f"parameter 0x{param_id:04x}: {e}") from None
    if len(raw) > 255:
        raise CodecError(f"parameter 0x{param_id:04x} is longer than 255 bytes")
    return raw


# -- the parameter table ----------------------------------------------------------------

ParamItems = tuple[tuple[int, Any], ...]


def param_items(table: Mapping[int, Any] | Iterable[tuple[int, Any]]) -> ParamItems:
    """A parameter table as ``((id, value), ...)`` from a dict or from pairs."""
    pairs = table.items() if isinstance(table, Mapping) else table
    return tuple((int(k), v) for k, v in pairs)


class _ItemsAdapter(Adapter):  # type: ignore[misc]
    def _decode(self, obj: Any, context: Any, path: str) -> ParamItems:
        return tuple((item.id, decode_param(item.id, item.value)) for item in obj)

    def _encode(self, obj: Any, context: Any, path: str) -> list[dict[str, Any]]:
        return [{"id": k, "value": encode_param(k, v)} for k, v in param_items(obj)]


_Item = Struct("id" / Int32ub, "value" / Prefixed(Int8ub, GreedyBytes))


def _declared_count(ctx: Any) -> int:
    count = len(ctx.params) if ctx.count is None else ctx.count
    if not 0 <= count <= 255:
        raise CodecError(f"{count} parameters do not fit a BYTE count")
    return count


#: ``count BYTE`` + items to the end of the body (a piece of an item is an error). ``count``
#: reads as None when it agrees with the items, else as the number the unit sent.
_PARAM_TABLE = (
    "declared_count" / Rebuild(Int8ub, _declared_count),
    "params" / _ItemsAdapter(GreedyRange(_Item)),
    Terminated,
    "count"
    / Computed(lambda ctx: None if ctx.declared_count == len(ctx.params) else ctx.declared_count),
)


class _ParamTable:
    """Dict-style access to a body's ``params``."""

    __slots__ = ()
    params: ParamItems

    def as_dict(self) -> dict[int, Any]:
        """id → value; of repeated ids the last wins, as for a terminal applying them."""
        return dict(self.params)

    def get(self, param_id: int, default: Any = None) -> Any:
        return self.as_dict().get(param_id, default)


@message(0x8103)
@frozen
class SetParameters(_ParamTable):
    """Set terminal parameters. ``params`` takes a dict or ``(id, value)`` pairs; ``count``
    is only set when a unit's count disagreed with its items."""

    params: ParamItems = field(converter=param_items)
    count: int | None = None

    FORMAT = Struct(*_PARAM_TABLE)


@message(0x8104)
@frozen
class QueryParameters:
    """Query all terminal parameters (answered by 0x0104)."""

    FORMAT = Struct()


@message(0x8106)
@frozen
class QuerySpecifiedParameters:
    """Query the parameters with these ids (answered by 0x0104)."""

    ids: tuple[int, ...] = field(converter=tuple)

    FORMAT = Struct("ids" / Tuple(PrefixedArray(Int8ub, Int32ub)))


@message(0x0104)
@frozen
class ParametersResponse(_ParamTable):
    """The terminal's parameters, in answer to 0x8104 or 0x8106 (``reply_serial``)."""

    reply_serial: int
    params: ParamItems = field(converter=param_items)
    count: int | None = None

    FORMAT = Struct("reply_serial" / Int16ub, *_PARAM_TABLE)


# -- terminal control -------------------------------------------------------------------

CONTROL_UPGRADE = 1
CONTROL_CONNECT_SERVER = 2
CONTROL_POWER_OFF = 3
CONTROL_RESET = 4
CONTROL_FACTORY_RESET = 5
CONTROL_CLOSE_DATA = 6
CONTROL_CLOSE_WIRELESS = 7


@message(0x8105)
@frozen
class TerminalControl:
    """Terminal control: a command word and its ';'-separated parameters (words 1 and 2;
    build them with ``UpgradeParameters`` / ``ConnectParameters``).

    The parameters stay a string because peers disagree on their fields; WORD fields are
    binary, so bytes that are not GBK are kept as lone surrogates (``surrogateescape``).
    """

    command: int
    parameters: str = ""

    FORMAT = Struct("command" / Int8ub, "parameters" / Text())


# Command parameter fields (JT/T 808 table 20): STRING until ';', WORD binary, BYTE[5].
_S, _W, _B, _M = "string", "word", "byte", "maker"


def _split_command(raw: bytes, kinds: tuple[str, ...]) -> list[Any] | None:
    """Read ``kinds`` fields from ';'-separated ``raw``; empty and missing fields are None."""
    out: list[Any] = []
    pos = 0
    for i, kind in enumerate(kinds):
        if pos >= len(raw):
            out.append(None)
            continue
        if i:
            if raw[pos : pos + 1] != b";":
                return None
            pos += 1
        width = {_W: 2, _B: 1, _M: 5}.get(kind)
        if width is None:
            end = raw.find(b";", pos)
            end = len(raw) if end < 0 else end
            out.append(text_decode(raw[pos:end]) if end > pos else None)
            pos = end
        elif pos + width <= len(raw) and raw[pos + width : pos + width + 1] in (b";", b""):
            chunk = raw[pos : pos + width]
            if kind == _M:
                out.append(text_decode(chunk.rstrip(b"\x00")))
            else:
                out.append(int.from_bytes(chunk, "big"))
            pos += width
        elif raw[pos : pos + 1] in (b";", b""):
            out.append(None)  # an empty field
        else:
            return None
    if raw[pos:] not in (b"", b";"):
        return None
    return out


def _join_command(values: list[Any], kinds: tuple[str, ...]) -> str:
    parts = []
    for value, kind in zip(values, kinds):
        if value is None:
            parts.append(b"")
        elif kind in (_W, _B):
            size = 2 if kind == _W else 1
            try:
                parts.append(int(value).to_bytes(size, "big"))
            except OverflowError:
                raise CodecError(f"{value} does not fit {size} byte(s)") from None
        elif kind == _M:
            raw = text_encode(value)
            if len(raw) > 5:
                raise CodecError(f"manufacturer id {value!r} is longer than 5 bytes")
            parts.append(raw.ljust(5, b"\x00"))
        else:
            parts.append(text_encode(value))
    return text_decode(b";".join(parts))


class _CommandParameters:
    """Shared reading and writing of the 0x8105 parameter strings."""

    __slots__ = ()
    KINDS: tuple[str, ...] = ()

    def to_text(self) -> str:
        """The ``TerminalControl.parameters`` string (None fields are left empty)."""
        return _join_command([getattr(self, a.name) for a in attrs.fields(type(self))], self.KINDS)

    @classmethod
    def from_text(cls, text: str) -> Self | None:
        """The fields of a parameters string in the standard's layout, or None if it is not."""
        values = _split_command(text_encode(text), cls.KINDS)
        return None if values is None else cls(*values)


@frozen
class UpgradeParameters(_CommandParameters):
    """Command word 1 (wireless upgrade), in the order of JT/T 808 table 20."""

    url: str | None = None
    apn: str | None = None
    user: str | None = None
    password: str | None = None
    address: str | None = None
    tcp_port: int | None = None
    udp_port: int | None = None
    manufacturer: str | None = None
    hardware_version: str | None = None
    firmware_version: str | None = None
    time_limit: int | None = None  # minutes connected to the upgrade server

    KINDS = (_S, _S, _S, _S, _S, _W, _W, _M, _S, _S, _W)


@frozen
class ConnectParameters(_CommandParameters):
    """Command word 2 (connect to a server). ``control`` 0 switches to this server, 1 back
    to the original one."""

    control: int | None = None
    auth_code: str | None = None
    apn: str | None = None
    user: str | None = None
    password: str | None = None
    address: str | None = None
    tcp_port: int | None = None
    udp_port: int | None = None
    time_limit: int | None = None  # minutes before returning to the original server

    KINDS = (_B, _S, _S, _S, _S, _S, _W, _W, _W)


# -- terminal attributes ----------------------------------------------------------------


@message(0x8107)
@frozen
class QueryAttributes:
    """Query terminal attributes (answered by 0x0107)."""

    FORMAT = Struct()


class _Layouts(Construct):  # type: ignore[misc]
    """One of several fixed-width layouts: the first of ``candidates[version]`` that uses the
    body exactly, else the standard one (the first) if it reads at all, trailing bytes then
    being the layout's to keep or drop. ``widths`` reads as None for the standard layout.
    """

    def __init__(self, make: Any, candidates: dict[int, tuple[Any, ...]]) -> None:
        super().__init__()
        self.make = make
        self.candidates = candidates
        self.formats = {w: make(w) for ws in candidates.values() for w in ws}

    def _version(self, context: Any) -> int:
        params = getattr(context, "_params", None) or {}
        return 2019 if params.get("version") == 2019 else 2013

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        version = self._version(context)
        start = stream_tell(stream, path)
        size = stream_size(stream)
        standard = self.candidates[version][0]
        chosen = None
        for widths in self.candidates[version]:
            stream_seek(stream, start, 0, path)
            try:
                obj = self.formats[widths]._parsereport(stream, context, path)
            except DECODE_ERRORS:  # not this layout: try the next
                continue
            end = stream_tell(stream, path)
            if not obj.get("extra") and end == size:
                chosen = (widths, obj, end)
                break
            if widths == standard:
                chosen = (widths, obj, end)
        if chosen is None:
            raise CodecError(f"no layout fits {size - start} bytes")
        widths, obj, end = chosen
        stream_seek(stream, end, 0, path)
        obj["widths"] = None if widths == standard else widths
        return obj

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        widths = obj.get("widths") or self.candidates[self._version(context)][0]
        fmt = self.formats.get(widths) or self.make(widths)  # a caller's own widths
        return fmt._build(obj, stream, context, path)


def _attributes_format(widths: tuple[int, int, int]) -> Struct:
    manufacturer, model, terminal_id = widths
    return Struct(
        "terminal_type" / Int16ub,
        "manufacturer" / Text(manufacturer),
        "model" / Text(model),
        "terminal_id" / Text(terminal_id),
        "iccid" / Bcd(10),
        "hardware_version" / PrefixedText(),
        "firmware_version" / PrefixedText(),
        # hylexus/xtream-codec's 2013 encoder leaves both out; a unit may too.
        "gnss" / Optional(Int8ub),
        "network" / Optional(Int8ub),
        "extra" / GreedyBytes,
    )


# Manufacturer, model and terminal id widths. The standard's first; several peers kept the
# 5-byte manufacturer of 2013 in 2019 frames; 2013 frames may carry the 2019 layout.
_ATTRIBUTE_WIDTHS = {
    2013: ((5, 20, 7), (11, 30, 30), (5, 30, 30)),
    2019: ((11, 30, 30), (5, 30, 30), (5, 20, 7)),
}


@message(0x0107)
@frozen
class TerminalAttributes:
    """The terminal's attributes. ``terminal_type`` bits: passenger, dangerous goods,
    freight, taxi, (bit 6) hard-disk recording, (bit 7) split unit, (2019 bit 8) trailer;
    ``gnss`` bits: GPS, BeiDou, GLONASS, Galileo; ``network`` bits: GPRS, CDMA, TD-SCDMA,
    WCDMA, CDMA2000, TD-LTE, (bit 7) other.

    ``widths`` (manufacturer, model, terminal id) is None for the standard layout of the
    frame's version (2013: 5/20/7; 2019: 11/30/30) and records any other a unit used.
    ``gnss`` and ``network`` are None when the body ends before them; ``extra`` keeps bytes
    a unit appended.
    """

    terminal_type: int
    manufacturer: str
    model: str
    terminal_id: str
    iccid: str
    hardware_version: str
    firmware_version: str
    gnss: int | None
    network: int | None
    widths: tuple[int, int, int] | None = field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    extra: bytes = b""

    FORMAT = _Layouts(_attributes_format, _ATTRIBUTE_WIDTHS)


# -- upgrade ----------------------------------------------------------------------------

UPGRADE_TERMINAL = 0
UPGRADE_IC_CARD_READER = 12
UPGRADE_GNSS_MODULE = 52


def _upgrade_format(manufacturer_size: int) -> Struct:
    return Struct(
        "type" / Int8ub,
        "manufacturer" / Text(manufacturer_size),
        "version" / PrefixedText(),
        "data" / Prefixed(Int32ub, GreedyBytes),
    )


class _UpgradeFormat(_Layouts):
    """``_Layouts`` over the manufacturer width, named ``manufacturer_size``."""

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        obj = super()._parse(stream, context, path)
        obj["manufacturer_size"] = obj.pop("widths")
        return obj

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        obj = {**obj, "widths": obj.get("manufacturer_size")}
        return super()._build(obj, stream, context, path)


@message(0x8108)
@frozen
class UpgradePackage:
    """Upgrade package for the terminal (``type`` 0), its IC card reader (12) or its GNSS
    module (52). ``manufacturer_size`` is None for the standard width of the frame's version
    (2013: 5; 2019: 11) and records the 5 bytes several peers also use in 2019."""

    type: int
    manufacturer: str
    version: str
    data: bytes
    manufacturer_size: int | None = None

    FORMAT = _UpgradeFormat(_upgrade_format, {2013: (5, 11), 2019: (11, 5)})


UPGRADE_OK = 0
UPGRADE_FAILED = 1
UPGRADE_CANCELLED = 2


@message(0x0108)
@frozen
class UpgradeResult:
    """The terminal's upgrade result: 0 success, 1 failure, 2 cancelled."""

    type: int
    result: int

    FORMAT = Struct("type" / Int8ub, "result" / Int8ub)
