"""The FLV container (Adobe FLV 10.1, annex E): file header, tags, and the AMF0 values of
``onMetaData``.

``FLV_HEADER`` and ``TAG_HEADER`` are the construct reference; ``tag`` is the hand-written
path the muxer uses for every frame, proved equal to the reference by the tests.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Const,
    Flag,
    Int8ub,
    Int24ub,
    Int32ub,
    Struct,
)

SIGNATURE = b"FLV"
#: The largest tag body (24-bit size field).
MAX_TAG_BODY = (1 << 24) - 1


class TagType(IntEnum):
    AUDIO = 8
    VIDEO = 9
    SCRIPT = 18


#: The 9-byte file header; PreviousTagSize0 (4 zero bytes) follows it.
FLV_HEADER = Struct(
    "signature" / Const(SIGNATURE),
    "version" / Const(1, Int8ub),
    "flags"
    / BitStruct(
        "reserved" / Const(0, BitsInteger(5)),
        "audio" / Flag,
        "reserved2" / Const(0, BitsInteger(1)),
        "video" / Flag,
    ),
    "header_size" / Const(9, Int32ub),
)

#: The 11 bytes before a tag's body.
TAG_HEADER = Struct(
    "kind"
    / BitStruct(
        "reserved" / Const(0, BitsInteger(2)),
        "filter" / Const(0, BitsInteger(1)),
        "type" / BitsInteger(5),
    ),
    "size" / Int24ub,
    "timestamp" / Int24ub,  # the low 24 bits...
    "timestamp_extended" / Int8ub,  # ...and the high 8
    "stream_id" / Const(0, Int24ub),
)


def file_header(audio: bool, video: bool) -> bytes:
    """The file header and PreviousTagSize0."""
    return FLV_HEADER.build(dict(flags=dict(audio=audio, video=video))) + b"\x00\x00\x00\x00"  # type: ignore[no-any-return]


_TAG = struct.Struct(">I I B 3x")


def tag(kind: int, timestamp: int, body: bytes) -> bytes:
    """A whole tag: header, body and the PreviousTagSize that closes it. ``timestamp`` is
    in ms and kept to 32 bits (FLV's range: about 49.7 days)."""
    size = len(body)
    if size > MAX_TAG_BODY:
        raise ValueError(f"tag body of {size} bytes exceeds FLV's {MAX_TAG_BODY}")
    ts = timestamp & 0xFFFFFFFF
    header = _TAG.pack((kind << 24) | size, ((ts & 0xFFFFFF) << 8) | (ts >> 24), 0)[:11]
    return header + body + (11 + size).to_bytes(4, "big")


def tag_reference(kind: int, timestamp: int, body: bytes) -> bytes:
    """``tag`` through the construct reference."""
    ts = timestamp & 0xFFFFFFFF
    header = TAG_HEADER.build(
        dict(kind=dict(type=kind), size=len(body), timestamp=ts & 0xFFFFFF, timestamp_extended=ts >> 24)
    )
    return header + body + Int32ub.build(11 + len(body))  # type: ignore[no-any-return]


# -- AMF0 (the script data of onMetaData) ---------------------------------------------------


def _amf_string(s: str) -> bytes:
    data = s.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def amf0(value: Any) -> bytes:
    """One AMF0 value: a number, boolean, string, or an ECMA array of those (a dict)."""
    if isinstance(value, bool):
        return b"\x01" + (b"\x01" if value else b"\x00")
    if isinstance(value, (int, float)):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        return b"\x02" + _amf_string(value)
    if isinstance(value, dict):
        items = b"".join(_amf_string(k) + amf0(v) for k, v in value.items())
        return b"\x08" + len(value).to_bytes(4, "big") + items + b"\x00\x00\x09"
    raise TypeError(f"no AMF0 encoding for {type(value).__name__}")


def script_tag(name: str, values: dict[str, Any], timestamp: int = 0) -> bytes:
    """A script data tag: ``name`` (e.g. ``onMetaData``) with its ECMA array."""
    return tag(TagType.SCRIPT, timestamp, amf0(name) + amf0(values))
