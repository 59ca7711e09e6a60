"""construct building blocks shared by every JT/T 808 and JT/T 1078 format.

Decoding is tolerant (a letter in a BCD field, a time a unit without a fix sends as zeros,
a byte sequence that is not GBK) and never loses the value; encoding is strict.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from construct import (
    Adapter,
    Bytes,
    Construct,
    FocusedSeq,
    GreedyBytes,
    Int8ub,
    Prefixed,
    SizeofError,
    Terminated,
    this,
)
from construct.core import stream_size, stream_tell

from cmsv6.protocols.jt808.errors import CodecError

#: JT/T 808 times are Beijing time (GMT+8) on the wire.
BEIJING = timezone(timedelta(hours=8), "+08:00")

#: Encoding of STRING fields. GB18030 is a superset of GBK, so it reads what any unit sends
#: and writes GBK bytes for every character GBK has.
TEXT_ENCODING = "gb18030"


@lru_cache(maxsize=8192)
def bcd_encode(digits: str, size: int) -> bytes:
    """BCD[size] of a digit string, left-padded with zeros; letters a-f are kept as nibbles."""
    if len(digits) > 2 * size:
        raise CodecError(f"{digits!r} has more than {2 * size} digits")
    try:
        return bytes.fromhex(digits.rjust(2 * size, "0"))
    except ValueError:
        raise CodecError(f"{digits!r} is not a BCD digit string") from None


class Bcd(Adapter):  # type: ignore[misc]
    """BCD[n] as a string of 2n digits. Non-BCD nibbles read as hex letters, never fail."""

    def __init__(self, size: int) -> None:
        super().__init__(Bytes(size))
        self.size = size

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return obj.hex()

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        return bcd_encode(str(obj), self.size)


def bcd_time_decode(raw: bytes, tz: timezone = BEIJING) -> datetime | None:
    """YYMMDDhhmmss in BCD (Beijing time), or None for zeros and impossible dates."""
    digits = raw.hex()
    if not digits.isdigit() or digits == "000000000000":
        return None
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=tz,
        )
    except ValueError:
        return None


def bcd_time_encode(value: datetime | None, tz: timezone = BEIJING) -> bytes:
    """The BCD[6] of a time (converted to Beijing time); None is written as zeros."""
    if value is None:
        return bytes(6)
    if value.tzinfo is not None:
        value = value.astimezone(tz)
    if not 2000 <= value.year <= 2099:
        raise CodecError(f"{value.isoformat()} cannot be written as BCD[6]")
    return bytes.fromhex(value.strftime("%y%m%d%H%M%S"))


class BcdTimeAdapter(Adapter):  # type: ignore[misc]
    def __init__(self, tz: timezone) -> None:
        super().__init__(Bytes(6))
        self.tz = tz

    def _decode(self, obj: bytes, context: Any, path: str) -> datetime | None:
        return bcd_time_decode(obj, self.tz)

    def _encode(self, obj: datetime | None, context: Any, path: str) -> bytes:
        return bcd_time_encode(obj, self.tz)


#: BCD[6] YYMMDDhhmmss, GMT+8. Zeros or an impossible date read as None.
BcdTime = BcdTimeAdapter(BEIJING)
#: BCD[6] in UTC (0x8004 in JT/T 808-2019).
BcdTimeUTC = BcdTimeAdapter(timezone.utc)


def text_decode(raw: bytes) -> str:
    """GBK text; bytes that are not GBK survive as surrogate escapes, so nothing is lost."""
    return raw.decode(TEXT_ENCODING, errors="surrogateescape")


def text_encode(value: str) -> bytes:
    if not isinstance(value, str):
        raise CodecError(f"{value!r} is not text")
    try:
        return value.encode(TEXT_ENCODING, errors="surrogateescape")
    except UnicodeEncodeError as e:
        raise CodecError(f"{value!r} cannot be written as GBK: {e}") from None


class _Text(Adapter):  # type: ignore[misc]
    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return text_decode(obj)

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        return text_encode(obj)


class _PaddedText(Adapter):  # type: ignore[misc]
    """Fixed-width STRING padded with NUL. Only trailing NULs are dropped on read, so a
    field some unit pads differently (spaces, leading NULs) is rebuilt byte for byte."""

    def __init__(self, size: int) -> None:
        super().__init__(Bytes(size))
        self.size = size

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return text_decode(obj.rstrip(b"\x00"))

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        raw = text_encode(obj)
        if len(raw) > self.size:
            raise CodecError(f"{obj!r} is longer than {self.size} bytes")
        return raw.ljust(self.size, b"\x00")


def Text(size: int | None = None) -> Construct:
    """A GBK STRING: fixed width ``size`` (NUL-padded) or, without it, the rest of the body."""
    return _Text(GreedyBytes) if size is None else _PaddedText(size)


def PrefixedText(length_field: Construct = Int8ub) -> Construct:
    """A GBK STRING after its length in bytes."""
    return Prefixed(length_field, _Text(GreedyBytes))


#: Parse/build parameter: the header layout (2013 or 2019) of the frame the body is in.
V2019 = this._params.version == 2019


def Exact(subcon: Construct) -> Construct:
    """``subcon`` that must use every byte it is given (an item's value, one layout of
    several): bytes left after it are an error, not silently ignored."""
    return FocusedSeq("value", "value" / subcon, Terminated)


class Trailing(Construct):  # type: ignore[misc]
    """A field at the end of a body that units send or leave out inconsistently:
    ``subcon`` when bytes remain, else ``default``.

    None builds as ``default``. A default of None is written as nothing, and so is any
    default with ``omit_default`` (for a tail the standard itself leaves out, such as the
    0x8800 list when every packet arrived); so whatever was read re-encodes to its bytes.
    """

    def __init__(self, subcon: Construct, default: Any = None, omit_default: bool = False) -> None:
        super().__init__()
        self.subcon = subcon
        self.default = default
        self.omit_default = omit_default
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        if stream_size(stream) - stream_tell(stream, path) <= 0:
            return self.default
        return self.subcon._parsereport(stream, context, path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            obj = self.default
        if obj is None or (self.omit_default and obj == self.default):
            return obj
        return self.subcon._build(obj, stream, context, path)

    def _sizeof(self, context: Any, path: str) -> int:
        raise SizeofError("an optional trailing field has no fixed size", path=path)


class Tuple(Adapter):  # type: ignore[misc]
    """A construct array as a tuple, so that frozen value objects stay hashable."""

    def _decode(self, obj: Any, context: Any, path: str) -> tuple[Any, ...]:
        return tuple(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> list[Any]:
        return list(obj)


class Ascii(Adapter):  # type: ignore[misc]
    """A fixed-width id (terminal id, alarm number), NUL padded. Read as latin-1, so every
    byte a unit puts there survives a round trip."""

    def __init__(self, size: int) -> None:
        super().__init__(Bytes(size))
        self.size = size

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        return obj.rstrip(b"\x00").decode("latin-1")

    def _encode(self, obj: str, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise CodecError(f"{obj!r} is not a byte string")
        try:
            raw = obj.encode("latin-1")
        except UnicodeEncodeError:
            raise CodecError(f"{obj!r} is not a byte string") from None
        if len(raw) > self.size:
            raise CodecError(f"{obj!r} is longer than {self.size} bytes")
        return raw.ljust(self.size, b"\x00")
