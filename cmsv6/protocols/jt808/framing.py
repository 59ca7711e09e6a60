"""JT/T 808 framing, sans-IO: flags, escaping, check code, and an incremental deframer.

A frame on the wire is ``7e · escape(header · body · check) · 7e`` where the check code is
the XOR of header and body, and escaping turns 0x7d into 7d 01 and 0x7e into 7d 02.

``Deframer.feed`` takes bytes as they arrive and returns, in order, the ``Frame`` of every
whole frame and a ``FrameError`` value for every piece of input that was not one. It never
raises and its buffer never holds more than one maximal escaped frame.
"""

from __future__ import annotations

from functools import reduce
from operator import xor
from struct import Struct

from attrs import frozen

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.header import (
    ENCRYPTION_MASK,
    HEADER,
    MAX_BODY,
    RESERVED_FLAG,
    SUBPACKAGE_FLAG,
    VERSION_FLAG,
    Header,
    build_header,
    detect_layout,
    header_length,
    parse_header,
)

FLAG = 0x7E
_FLAG = b"\x7e"
#: The escape byte as an int: ``int in bytes`` is a byte search, while ``bytes in bytes``
#: first fails as an int (an exception made and dropped) before it searches.
ESC = 0x7D

#: The longest frame content (header, body and check code) the protocol allows.
MAX_CONTENT = header_length(2019, True) + MAX_BODY + 1
#: The longest escaped frame content between two flags.
MAX_ESCAPED = 2 * MAX_CONTENT
#: The shortest frame content: a 2013 header, no body, a check code.
MIN_CONTENT = header_length(2013, False) + 1

_MASKS = [(1 << (8 << k)) - 1 for k in range(16)]
_2019_OR_PACKET = VERSION_FLAG | SUBPACKAGE_FLAG
#: A 2013 header without sub-package fields: msg_id, properties, phone, serial.
_H2013 = Struct(">HH6sH")


def checksum(data: bytes) -> int:
    """XOR of every byte, by folding one big integer in halves (about 2x a byte loop)."""
    n = len(data)
    if n <= 128:
        # Unrolled, without masks: after folding by 64, 32 … 1 bytes the low byte is the
        # XOR of bytes 0-127 (each is reached by one sum of the shifts); the rest is waste.
        x = int.from_bytes(data, "little")
        x ^= x >> 512
        x ^= x >> 256
        x ^= x >> 128
        x ^= x >> 64
        x ^= x >> 32
        x ^= x >> 16
        x ^= x >> 8
        return x & 0xFF
    k = (n - 1).bit_length()
    x = int.from_bytes(data, "little")
    while k:
        k -= 1
        x = (x & _MASKS[k]) ^ (x >> (8 << k))
    return x


def checksum_reference(data: bytes) -> int:
    return reduce(xor, data, 0)


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Undo escaping. 7d 02 first: every 0x7d on the wire starts an escape pair."""
    if ESC not in data:
        return data
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def unescape_reference(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x7D and i + 1 < len(data) and data[i + 1] in (1, 2):
            out.append(0x7D if data[i + 1] == 1 else 0x7E)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


@frozen
class Frame:
    """One frame: its header, its body bytes (one piece of it, for a sub-package)."""

    header: Header
    body: bytes
    checksum_ok: bool = True
    #: False when the body length field disagrees with the bytes the frame has (the body is
    #: then every byte between header and check code).
    length_ok: bool = True


@frozen
class FrameError:
    """Input that was not a frame: why, and the bytes (escaped, as received)."""

    reason: str
    data: bytes


def parse_content(content: bytes) -> Frame:
    """The Frame in unescaped content (header · body · check). Raises CodecError.

    A wrong check code is reported in ``checksum_ok``, not raised: the caller decides.
    """
    n = len(content)
    if n < MIN_CONTENT:
        raise CodecError(f"frame of {n} bytes is shorter than a header")
    props = (content[2] << 8) | content[3]
    if not props & _2019_OR_PACKET and (props & MAX_BODY) + 13 == n:
        # The usual frame: a 2013 header that adds up (what detect_layout says first), its
        # header parsed here (parse_header's 2013 branch). The XOR of all the content,
        # check code included, is 0 when the check code is right.
        msg_id, _, phone, serial = _H2013.unpack_from(content)
        header = Header(msg_id, phone.hex(), serial, 2013, None,
                        (props & ENCRYPTION_MASK) >> 10, None, (props & RESERVED_FLAG) != 0)
        return Frame(header, content[12:-1], not checksum(content))
    layout = detect_layout(props, n - 1)
    if layout < 0:
        layout = -layout
        if n - 1 < header_length(layout, bool(props & SUBPACKAGE_FLAG)):
            raise CodecError(f"frame of {n} bytes is shorter than its header")
        header, body_length, offset = parse_header(content, layout)
        return Frame(header, content[offset:-1], checksum(content[:-1]) == content[-1], False)
    header, body_length, offset = parse_header(content, layout)
    return Frame(header, content[offset:-1], checksum(content[:-1]) == content[-1])


def parse_content_reference(content: bytes) -> Frame:
    """``parse_content`` through the construct reference."""
    if len(content) < MIN_CONTENT:
        raise CodecError(f"frame of {len(content)} bytes is shorter than a header")
    props = int.from_bytes(content[2:4], "big")
    layout = detect_layout(props, len(content) - 1)
    length_ok = layout > 0
    layout = abs(layout)
    if len(content) - 1 < header_length(layout, bool(props & SUBPACKAGE_FLAG)):
        raise CodecError(f"frame of {len(content)} bytes is shorter than its header")
    header, body_length = HEADER.parse(content, layout=layout)
    body = content[header_length(layout, header.packet is not None) : -1]
    ok = checksum_reference(content[:-1]) == content[-1]
    return Frame(header, body, ok, length_ok)


def parse_frame(data: bytes) -> Frame:
    """One whole frame, with or without its 0x7e flags. Raises CodecError.

    Some units do not escape; when the unescaped content does not add up and the raw
    content does, the raw content is taken.
    """
    if data[:1] == _FLAG:
        data = data[1:]
    if data[-1:] == _FLAG:
        data = data[:-1]
    if FLAG in data:
        raise CodecError("0x7e inside a frame")
    return _parse_escaped(data)


def _parse_escaped(data: bytes) -> Frame:
    """``parse_frame`` of escaped content without a flag (what the deframer cuts)."""
    content = unescape(data)
    frame = parse_content(content)
    if (frame.checksum_ok and frame.length_ok) or content is data:
        return frame
    try:
        raw = parse_content(data)
    except CodecError:
        return frame
    return raw if raw.checksum_ok and raw.length_ok else frame


def build_frame(header: Header, body: bytes) -> bytes:
    """The escaped, flagged frame for a header and its body bytes."""
    content = build_header(header, len(body)) + body
    return b"\x7e" + escape(content + bytes((checksum(content),))) + b"\x7e"


def build_frame_reference(header: Header, body: bytes) -> bytes:
    content = HEADER.build((header, len(body)), layout=header.version) + body
    return b"\x7e" + escape(content + bytes((checksum_reference(content),))) + b"\x7e"


class Deframer:
    """Cuts frames out of a byte stream, resynchronising on the next flag after garbage.

    Every flag that closes a frame may also open the next one (some units share flags), so a
    closing flag is kept until the next bytes arrive. Input without a flag for longer than
    ``max_escaped`` bytes is dropped and reported.
    """

    def __init__(self, max_escaped: int = MAX_ESCAPED) -> None:
        self._buffer = bytearray()
        self._max = max_escaped

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        buf = self._buffer
        if (
            len(buf) <= 1 and len(data) > 2 and data[0] == FLAG and data[-1] == FLAG
            and data.count(FLAG) == 2 and (not buf or buf[0] == FLAG)
        ):  # fmt: skip
            # The usual read, exactly one whole frame after nothing or a kept flag: what
            # the loop below gives, without copying it through the buffer.
            buf[:] = _FLAG
            escaped = data[1:-1]
            try:
                if ESC not in escaped:  # nothing escaped: parse_frame is parse_content
                    return [parse_content(escaped)]
                return [_parse_escaped(escaped)]
            except CodecError as e:
                return [FrameError(str(e), escaped)]
        return self._feed(data)

    def _feed(self, data: bytes) -> list[Frame | FrameError]:
        """Any input: the general loop."""
        buf = self._buffer
        out: list[Frame | FrameError] = []
        buf += data
        start = buf.find(_FLAG)
        if start < 0:
            if buf:
                out.append(FrameError("data without a 0x7e flag", bytes(buf[: self._max])))
                buf.clear()
            return out
        if start:
            out.append(FrameError("data before the 0x7e flag", bytes(buf[:start])))
        while True:
            end = buf.find(_FLAG, start + 1)
            if end < 0:
                break
            if end > start + 1:
                escaped = bytes(buf[start + 1 : end])
                try:
                    out.append(parse_frame(escaped))
                except CodecError as e:
                    out.append(FrameError(str(e), escaped))
            start = end
        del buf[:start]
        if len(buf) > self._max + 1:
            out.append(FrameError("frame longer than the protocol allows", bytes(buf[: self._max])))
            buf.clear()
        return out
