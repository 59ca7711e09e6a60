"""Hand-written hot paths: 0x0200, 0x0704, 0x0002, 0x0001/0x8001, and the whole 0x8001 frame
from a template (``ResponseTemplate``; deframing and the header are in framing.py and
header.py).

Each function here gives exactly what the construct reference (the ``FORMAT`` of the body
class) gives, for every input: tests/protocols/jt808/test_fast.py proves it on generated messages and
random bytes. Keep them in step: change the reference first.
"""

from __future__ import annotations

from datetime import datetime
from struct import Struct
from typing import Any

from cmsv6.protocols.jt808.codec import FAST_DECODERS, FAST_ENCODERS
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import BEIJING, bcd_time_encode
from cmsv6.protocols.jt808.framing import checksum, escape
from cmsv6.protocols.jt808.header import Header, build_header
from cmsv6.protocols.jt808.messages.core import Heartbeat, PlatformResponse, TerminalResponse
from cmsv6.protocols.jt808.messages.location import (
    Location,
    LocationBatch,
    decode_extra,
    degrees_dword,
    encode_extra,
    signed_status,
)

_BASIC = Struct(">IIIIhHH6s")
_BASIC_OUT = Struct(">IIIIhHH")
_RESPONSE = Struct(">HHB")
_BATCH_HEAD = Struct(">HB")
_WORD = Struct(">H")

#: Items whose value is one integer: id → unpacker of exactly that many bytes.
_SCALARS: dict[int, Struct] = {
    0x01: Struct(">I"),
    0x02: Struct(">H"),
    0x03: Struct(">H"),
    0x04: Struct(">H"),
    0x06: Struct(">h"),
    0x14: Struct(">I"),
    0x15: Struct(">I"),
    0x16: Struct(">I"),
    0x17: Struct(">H"),
    0x25: Struct(">I"),
    0x2A: Struct(">H"),
    0x2B: Struct(">I"),
    0x30: Struct(">B"),
    0x31: Struct(">B"),
}
_SCALAR_SIZE = {k: v.size for k, v in _SCALARS.items()}

#: BCD byte → its two-digit value; bytes with a nibble over 9 are absent.
_BCD = {(hi << 4) | lo: hi * 10 + lo for hi in range(10) for lo in range(10)}


#: Report times already made, by their BCD bytes: the reports of one second, from every
#: unit, share one ``datetime`` (immutable), and most reports are of the last second or two.
_TIMES: dict[bytes, datetime] = {}
#: At this many the cache starts again (a bound, not a tuning: a second has one entry).
TIMES_KEPT = 64


def _time(raw: bytes) -> datetime | None:
    t = _TIMES.get(raw)
    if t is not None:
        return t
    t = _bcd_time(raw)
    if t is not None:
        if len(_TIMES) >= TIMES_KEPT:
            _TIMES.clear()
        _TIMES[raw] = t
    return t


def _bcd_time(raw: bytes) -> datetime | None:
    try:
        return datetime(
            2000 + _BCD[raw[0]],
            _BCD[raw[1]],
            _BCD[raw[2]],
            _BCD[raw[3]],
            _BCD[raw[4]],
            _BCD[raw[5]],
            tzinfo=BEIJING,
        )
    except (KeyError, ValueError):
        return None


def _extras(data: bytes, pos: int) -> tuple[dict[int, Any], bytes]:
    extras: dict[int, Any] = {}
    n = len(data)
    while pos + 2 <= n:
        item_id = data[pos]
        end = pos + 2 + data[pos + 1]
        if end > n or item_id in extras:
            break
        if _SCALAR_SIZE.get(item_id) == end - pos - 2:
            extras[item_id] = _SCALARS[item_id].unpack_from(data, pos + 2)[0]
        else:
            extras[item_id] = decode_extra(item_id, data[pos + 2 : end])
        pos = end
    return extras, data[pos:]


def decode_location(data: bytes, version: int = 2013) -> Location:
    if len(data) < 28:
        raise CodecError(f"0x0200 body of {len(data)} bytes is shorter than 28")
    alarm, status, lat, lon, alt, speed, direction, t = _BASIC.unpack_from(data)
    twos = 0
    if lat & 0x80000000:  # two's complement (see location.degrees)
        latitude = (lat - (1 << 32)) / 1e6
        twos = 4
    elif status & 4:
        latitude = -(lat / 1e6)
    else:
        latitude = lat / 1e6
    if lon & 0x80000000:
        longitude = (lon - (1 << 32)) / 1e6
        twos |= 8
    elif status & 8:
        longitude = -(lon / 1e6)
    else:
        longitude = lon / 1e6
    extras, rest = _extras(data, 28)
    return Location(
        alarm, status, latitude, longitude, alt, speed / 10, direction, _time(t), extras, rest, twos
    )


def encode_location(loc: Location, version: int = 2013) -> bytes:
    twos = loc.twos_complement
    if twos:
        lat = degrees_dword(loc.latitude, bool(twos & 4))
        lon = degrees_dword(loc.longitude, bool(twos & 8))
    else:
        lat = abs(round(loc.latitude * 1e6))
        lon = abs(round(loc.longitude * 1e6))
        if lat > 0xFFFFFFFF or lon > 0xFFFFFFFF:
            raise CodecError(f"{loc.latitude}, {loc.longitude} degrees do not fit")
    parts = [
        _BASIC_OUT.pack(
            loc.alarm,
            signed_status(loc.status, loc.latitude, loc.longitude, twos),
            lat,
            lon,
            loc.altitude,
            round(loc.speed * 10),
            loc.direction,
        ),
        bcd_time_encode(loc.time),
    ]
    for item_id, value in loc.extras.items():
        size = _SCALAR_SIZE.get(item_id)
        if size is not None and isinstance(value, int):
            raw = _SCALARS[item_id].pack(value)
        else:
            raw = encode_extra(item_id, value)
        parts.append(bytes((item_id, len(raw))))
        parts.append(raw)
    parts.append(loc.rest)
    return b"".join(parts)


def decode_batch(data: bytes, version: int = 2013) -> LocationBatch:
    count, kind = _BATCH_HEAD.unpack_from(data)
    pos = 3
    locations = []
    for _ in range(count):
        (length,) = _WORD.unpack_from(data, pos)
        pos += 2
        if pos + length > len(data):
            raise CodecError(f"0x0704 item of {length} bytes runs past the body")
        locations.append(decode_location(data[pos : pos + length]))
        pos += length
    return LocationBatch(kind, locations)


def encode_batch(batch: LocationBatch, version: int = 2013) -> bytes:
    parts = [_BATCH_HEAD.pack(len(batch.locations), batch.kind)]
    for loc in batch.locations:
        raw = encode_location(loc)
        parts.append(_WORD.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


_HEARTBEAT = Heartbeat()


def decode_heartbeat(data: bytes, version: int = 2013) -> Heartbeat:
    return _HEARTBEAT


def decode_terminal_response(data: bytes, version: int = 2013) -> TerminalResponse:
    return TerminalResponse(*_RESPONSE.unpack_from(data), data[5:])


def decode_platform_response(data: bytes, version: int = 2013) -> PlatformResponse:
    return PlatformResponse(*_RESPONSE.unpack_from(data), data[5:])


def encode_response(body: TerminalResponse | PlatformResponse, version: int = 2013) -> bytes:
    return _RESPONSE.pack(body.reply_serial, body.reply_id, body.result) + body.rest


_ACK_TAIL = Struct(">HHHBB")


class ResponseTemplate:
    """The 0x8001 frames to one terminal, made from its header's fixed part: what
    ``encode(header.reply_header(0x8001, serial), PlatformResponse(...))`` makes, for the
    gateway's one reply per report (test_fast.py proves them equal)."""

    __slots__ = ("phone", "version", "protocol_version", "_head", "_check")

    def __init__(self, header: Header) -> None:
        #: What the template depends on: the terminal's phone form and header version.
        self.phone = header.phone
        self.version = header.version
        self.protocol_version = header.protocol_version
        head = build_header(header.reply_header(0x8001, 0), _RESPONSE.size)
        prefix = head[:-2]  # all but the serial
        # Escaping maps each byte on its own, so the fixed part is escaped once, here.
        self._head = b"\x7e" + escape(prefix)
        self._check = checksum(prefix)

    @property
    def key(self) -> tuple[str, int, int | None]:
        return self.phone, self.version, self.protocol_version

    def frame(self, serial: int, reply_serial: int, reply_id: int, result: int) -> bytes:
        words = serial ^ reply_serial ^ reply_id  # the XOR of the tail's bytes, folded
        check = self._check ^ ((words >> 8) ^ words ^ result) & 0xFF
        tail = _ACK_TAIL.pack(serial, reply_serial, reply_id, result, check)
        # escape(tail), inline
        return self._head + tail.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02") \
            + b"\x7e"  # fmt: skip


FAST_DECODERS.update(
    {
        0x0200: decode_location,
        0x0704: decode_batch,
        0x0002: decode_heartbeat,
        0x0001: decode_terminal_response,
        0x8001: decode_platform_response,
    }
)
FAST_ENCODERS.update(
    {
        0x0200: encode_location,
        0x0704: encode_batch,
        0x0001: encode_response,
        0x8001: encode_response,
    }
)
