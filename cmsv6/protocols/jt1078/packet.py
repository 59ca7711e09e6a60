"""JT/T 1078 stream packets (5.5.3, table 19), sans-IO: parse, build, and cut from a stream.

A unit opens one TCP connection per 0x9101/0x9201 to the media server and sends packets::

    30 31 63 64          frame header ("01cd")
    V:2 P:1 X:1 CC:4     BYTE   RTP-like labels, normally 0x81
    M:1 PT:7             BYTE   marker (last packet of a frame), payload type (table 12)
    sequence             WORD
    SIM                  BCD[6] (BCD[10] from some JT/T 808-2019 units)
    logical channel      BYTE
    data type:4 · sub-package mark:4        BYTE
    timestamp            BYTE[8] ms      absent for pass-through data (type 4)
    last I-frame interval WORD ms        only for video (types 0, 1, 2)
    last frame interval  WORD ms         only for video
    body length          WORD            ≤ 950
    body

Nothing in a packet says how long its SIM is, so the layout is inferred: a layout is
plausible when its data type and sub-package mark are defined and its body length is
allowed; it is confirmed when the packet it describes ends exactly where the input ends
(``parse_packet``) or where the next ``30 31 63 64`` begins (``PacketReader``). Once one
packet of a stream is confirmed, the reader keeps that SIM length for the rest of it.

``PACKET`` is the construct reference; ``parse_packet``/``build_packet`` are the hand-written
hot path the tests prove equal to it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from attrs import frozen
from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Check,
    Const,
    ConstructError,
    Flag,
    If,
    Int8ub,
    Int16ub,
    Int64ub,
    Rebuild,
    Select,
    Struct,
    Terminated,
    len_,
    this,
)

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import Bcd, bcd_encode

MAGIC = b"\x30\x31\x63\x64"
#: The longest body the standard allows.
MAX_BODY = 950
#: SIM lengths in bytes: JT/T 1078-2016, and what some 2019 units send.
SIM_SIZES = (6, 10)
#: The longest header: 10-byte SIM, video.
MAX_HEADER = 4 + 4 + 10 + 2 + 8 + 4 + 2


class DataType(IntEnum):
    """What a packet carries (high nibble of byte 15)."""

    I_FRAME = 0
    P_FRAME = 1
    B_FRAME = 2
    AUDIO = 3
    PASS_THROUGH = 4


class Subpackage(IntEnum):
    """Where a packet sits in its frame (low nibble of byte 15)."""

    ATOMIC = 0
    FIRST = 1
    LAST = 2
    MIDDLE = 3


class PacketError(CodecError):
    """Input that is not a stream packet (raised by ``parse_packet``, returned by the reader).

    ``data`` holds the bytes that were given up on (at most one maximal packet of them).
    """

    def __init__(self, reason: str, data: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data

    def __repr__(self) -> str:
        return f"PacketError({self.reason!r}, {len(self.data)} bytes)"


@frozen
class Packet:
    """One stream packet.

    ``sim`` is the BCD digits as sent (12, or 20 for a 10-byte SIM); ``sim_number`` gives
    the form to compare with a JT/T 808 phone. ``timestamp`` is None exactly for
    pass-through data and the two intervals are None for everything but video, as on the
    wire.
    """

    sim: str
    channel: int
    data_type: int
    payload: bytes = b""
    sequence: int = 0
    subpackage: int = Subpackage.ATOMIC
    timestamp: int | None = None
    last_i_frame_interval: int | None = None
    last_frame_interval: int | None = None
    payload_type: int = 98  # H.264
    marker: bool = False
    version: int = 2
    padding: bool = False
    extension: bool = False
    csrc_count: int = 1

    @property
    def sim_size(self) -> int:
        """Bytes the SIM takes on the wire."""
        return 6 if len(self.sim) <= 12 else 10

    @property
    def is_video(self) -> bool:
        return self.data_type <= DataType.B_FRAME


def sim_number(sim: str) -> str:
    """The SIM without its zero padding: what to compare with a JT/T 808 phone number.

    A 6-byte ``013800138999`` and a 10-byte ``00000000013800138999`` are the same unit, and
    so is the 808 phone ``13800138999``.
    """
    return sim.lstrip("0") or "0"


def header_size(sim_size: int, data_type: int) -> int:
    """Bytes before the body for a SIM length and data type."""
    n = 4 + 4 + sim_size + 2
    if data_type != DataType.PASS_THROUGH:
        n += 8
    if data_type <= DataType.B_FRAME:
        n += 4
    return n + 2


# -- the construct reference ---------------------------------------------------------------


def _layout(sim_size: int) -> Struct:
    """One packet with a ``sim_size``-byte SIM that must use every input byte."""
    return Struct(
        "magic" / Const(MAGIC),
        "labels"
        / BitStruct(
            "version" / BitsInteger(2),
            "padding" / Flag,
            "extension" / Flag,
            "csrc_count" / BitsInteger(4),
            "marker" / Flag,
            "payload_type" / BitsInteger(7),
        ),
        "sequence" / Int16ub,
        "sim" / Bcd(sim_size),
        "channel" / Int8ub,
        Check(this.channel != 0),  # logical channels are numbered from 1 (table 2)
        "kind" / BitStruct("data_type" / BitsInteger(4), "subpackage" / BitsInteger(4)),
        Check(this.kind.data_type <= DataType.PASS_THROUGH),
        Check(this.kind.subpackage <= Subpackage.MIDDLE),
        "timestamp" / If(this.kind.data_type != DataType.PASS_THROUGH, Int64ub),
        "intervals"
        / If(
            this.kind.data_type <= DataType.B_FRAME,
            Struct("last_i_frame" / Int16ub, "last_frame" / Int16ub),
        ),
        "length" / Rebuild(Int16ub, len_(this.payload)),
        Check(this.length <= this._params.max_body),
        "payload" / Bytes(this.length),
        Terminated,
    )


#: A whole packet, 6-byte SIM layout tried first (the standard's), then the 10-byte one.
#: Parse and build with ``max_body=``.
PACKET = Select(_layout(6), _layout(10))
_LAYOUTS = {size: _layout(size) for size in SIM_SIZES}


def _from_container(c: Any) -> Packet:
    labels, kind, intervals = c.labels, c.kind, c.intervals
    return Packet(
        sim=c.sim,
        channel=c.channel,
        data_type=kind.data_type,
        payload=c.payload,
        sequence=c.sequence,
        subpackage=kind.subpackage,
        timestamp=c.timestamp,
        last_i_frame_interval=None if intervals is None else intervals.last_i_frame,
        last_frame_interval=None if intervals is None else intervals.last_frame,
        payload_type=labels.payload_type,
        marker=labels.marker,
        version=labels.version,
        padding=labels.padding,
        extension=labels.extension,
        csrc_count=labels.csrc_count,
    )


def _to_dict(p: Packet) -> dict[str, Any]:
    video = p.data_type <= DataType.B_FRAME
    return dict(
        labels=dict(
            version=p.version,
            padding=p.padding,
            extension=p.extension,
            csrc_count=p.csrc_count,
            marker=p.marker,
            payload_type=p.payload_type,
        ),
        sequence=p.sequence,
        sim=p.sim.rjust(2 * p.sim_size, "0"),
        channel=p.channel,
        kind=dict(data_type=p.data_type, subpackage=p.subpackage),
        timestamp=p.timestamp,
        intervals=dict(last_i_frame=p.last_i_frame_interval, last_frame=p.last_frame_interval)
        if video
        else None,
        payload=p.payload,
    )


def parse_packet_reference(data: bytes, max_body: int = MAX_BODY) -> Packet:
    """``parse_packet`` through the construct reference."""
    try:
        container = PACKET.parse(data, max_body=max_body)
    except ConstructError as e:  # Select reports every failure the same way
        raise PacketError(
            f"not a stream packet: {e}", bytes(data[: MAX_HEADER + max_body])
        ) from None
    return _from_container(container)


def build_packet_reference(packet: Packet, max_body: int = MAX_BODY) -> bytes:
    """``build_packet`` through the construct reference."""
    _check_build(packet, max_body)
    layout = _LAYOUTS[packet.sim_size]
    try:
        return layout.build(_to_dict(packet), max_body=max_body)  # type: ignore[no-any-return]
    except ConstructError as e:
        raise PacketError(f"cannot build {packet!r}: {e}") from None


# -- the hot path --------------------------------------------------------------------------

_INVALID = -1
_SHORT = 0


def _probe(buf: bytes | bytearray, pos: int, end: int, sim_size: int, max_body: int) -> int:
    """The total length of the packet at ``pos`` if its SIM is ``sim_size`` bytes long.

    ``_SHORT`` when ``buf[pos:end]`` ends before the length field, ``_INVALID`` when the
    layout does not fit (channel 0, undefined data type or sub-package mark, body too
    long). The magic
    at ``pos`` is the caller's to check.
    """
    kind_at = pos + 9 + sim_size
    if kind_at >= end:
        return _SHORT
    if buf[kind_at - 1] == 0:
        # Logical channels are numbered from 1: a 0 here is a SIM read at the wrong length
        # (a 10-byte BCD SIM with 00 00 in its 7th and 8th bytes reads as a 6-byte one
        # followed by channel 0, data type 0).
        return _INVALID
    kind = buf[kind_at]
    data_type = kind >> 4
    if data_type > 4 or kind & 0x0F > 3:
        return _INVALID
    # Length field offset: the kind byte, the timestamp unless pass-through, the two
    # intervals for video.
    at = kind_at + 1 + (0 if data_type == 4 else 8) + (4 if data_type <= 2 else 0)
    if at + 2 > end:
        return _SHORT
    length = (buf[at] << 8) | buf[at + 1]
    if length > max_body:
        return _INVALID
    return at + 2 + length - pos


def _decode(buf: bytes | bytearray, pos: int, sim_size: int, total: int) -> Packet:
    """The Packet at ``pos``, whose layout ``_probe`` has accepted."""
    labels = buf[pos + 4]
    mpt = buf[pos + 5]
    at = pos + 8 + sim_size
    kind = buf[at + 1]
    data_type = kind >> 4
    at += 2
    timestamp = None
    first = last = None
    if data_type != 4:
        timestamp = int.from_bytes(buf[at : at + 8], "big")
        at += 8
    if data_type <= 2:
        first = (buf[at] << 8) | buf[at + 1]
        last = (buf[at + 2] << 8) | buf[at + 3]
        at += 4
    return Packet(
        sim=bytes(buf[pos + 8 : pos + 8 + sim_size]).hex(),
        channel=buf[pos + 8 + sim_size],
        data_type=data_type,
        payload=bytes(buf[at + 2 : pos + total]),
        sequence=(buf[pos + 6] << 8) | buf[pos + 7],
        subpackage=kind & 0x0F,
        timestamp=timestamp,
        last_i_frame_interval=first,
        last_frame_interval=last,
        payload_type=mpt & 0x7F,
        marker=bool(mpt & 0x80),
        version=labels >> 6,
        padding=bool(labels & 0x20),
        extension=bool(labels & 0x10),
        csrc_count=labels & 0x0F,
    )


def parse_packet(data: bytes, max_body: int = MAX_BODY) -> Packet:
    """Exactly one whole packet. Raises PacketError.

    The SIM length is the one whose layout accounts for every byte (6 when both do, as the
    reference's ``Select`` order says).
    """
    n = len(data)
    if data[:4] != MAGIC:
        raise PacketError("no 30 31 63 64 frame header", bytes(data[: MAX_HEADER + max_body]))
    for size in SIM_SIZES:
        if _probe(data, 0, n, size, max_body) == n:
            return _decode(data, 0, size, n)
    raise PacketError(
        f"{n} bytes are not one packet with a 6- or 10-byte SIM",
        bytes(data[: MAX_HEADER + max_body]),
    )


def _check_build(p: Packet, max_body: int) -> None:
    """Encoding is strict: every field present that the data type needs, and in range."""
    if not 1 <= p.channel <= 255:
        raise PacketError(f"logical channel {p.channel} is not 1 to 255")
    if not 0 <= p.data_type <= DataType.PASS_THROUGH:
        raise PacketError(f"data type {p.data_type} is not defined")
    if not 0 <= p.subpackage <= Subpackage.MIDDLE:
        raise PacketError(f"sub-package mark {p.subpackage} is not defined")
    if len(p.payload) > max_body:
        raise PacketError(f"body of {len(p.payload)} bytes is longer than {max_body}")
    if len(p.sim) > 20:
        raise PacketError(f"SIM {p.sim!r} has more than 20 digits")
    if (p.timestamp is None) != (p.data_type == DataType.PASS_THROUGH):
        raise PacketError("a timestamp is required except for pass-through data, and only then")
    video = p.data_type <= DataType.B_FRAME
    for name in ("last_i_frame_interval", "last_frame_interval"):
        if (getattr(p, name) is None) == video:
            raise PacketError(f"{name} is required for video, and only then")
    if not (0 <= p.version <= 3 and 0 <= p.csrc_count <= 15 and 0 <= p.payload_type <= 127):
        raise PacketError(f"label fields out of range in {p!r}")


def build_packet(packet: Packet, max_body: int = MAX_BODY) -> bytes:
    """The bytes of one packet. Raises PacketError for a packet that cannot be sent."""
    p = packet
    _check_build(p, max_body)
    try:
        out = bytearray(MAGIC)
        out.append((p.version << 6) | (p.padding << 5) | (p.extension << 4) | p.csrc_count)
        out.append((p.marker << 7) | p.payload_type)
        out += p.sequence.to_bytes(2, "big")
        out += bcd_encode(p.sim, p.sim_size)
        out.append(p.channel)
        out.append((p.data_type << 4) | p.subpackage)
        if p.timestamp is not None:
            out += p.timestamp.to_bytes(8, "big")
        if p.last_i_frame_interval is not None and p.last_frame_interval is not None:
            out += p.last_i_frame_interval.to_bytes(2, "big")
            out += p.last_frame_interval.to_bytes(2, "big")
        out += len(p.payload).to_bytes(2, "big")
        out += p.payload
    except CodecError as e:
        raise PacketError(str(e)) from None
    except (OverflowError, ValueError) as e:  # a number out of its field's range
        raise PacketError(f"cannot build {packet!r}: {e}") from None
    return bytes(out)


def split_frame(
    template: Packet, frame: bytes, max_body: int = MAX_BODY
) -> list[Packet]:
    """A frame's packets: ``template`` with the frame cut into bodies of at most ``max_body``
    bytes, consecutive sequence numbers from the template's, sub-package marks, and the
    marker bit on the last one (a frame boundary, as RTP uses it)."""
    pieces = [frame[i : i + max_body] for i in range(0, len(frame), max_body)] or [b""]
    last = len(pieces) - 1
    out = []
    for i, piece in enumerate(pieces):
        if last == 0:
            mark = Subpackage.ATOMIC
        elif i == 0:
            mark = Subpackage.FIRST
        elif i == last:
            mark = Subpackage.LAST
        else:
            mark = Subpackage.MIDDLE
        out.append(
            Packet(
                sim=template.sim,
                channel=template.channel,
                data_type=template.data_type,
                payload=piece,
                sequence=(template.sequence + i) & 0xFFFF,
                subpackage=mark,
                timestamp=template.timestamp,
                last_i_frame_interval=template.last_i_frame_interval,
                last_frame_interval=template.last_frame_interval,
                payload_type=template.payload_type,
                marker=i == last,
                version=template.version,
                padding=template.padding,
                extension=template.extension,
                csrc_count=template.csrc_count,
            )
        )
    return out


# -- cutting packets out of a stream -------------------------------------------------------

_NEED = (0, 0)
_BAD = (-1, -1)

# How the input judges one layout of a packet (``PacketReader._judge``).
_CONFIRMED = 1  # the next header, or the end of the stream, follows it
_CONTRADICTED = 2  # it is whole and something else follows
_UNDECIDED = 3  # the bytes that would tell have not arrived
# _INVALID and _SHORT as for ``_probe``


def _magic_prefix(buf: bytearray, start: int) -> int:
    """Where the longest tail of ``buf[start:]`` that could begin a frame header starts."""
    n = len(buf)
    for keep in (3, 2, 1):
        if n - keep >= start and buf[n - keep :] == MAGIC[:keep]:
            return n - keep
    return n


class PacketReader:
    """Cuts packets out of one unit's stream, as bytes arrive.

    ``feed`` returns, in order, every whole packet and a ``PacketError`` for every piece of
    input given up on; it never raises. After garbage it resynchronises on the next
    ``30 31 63 64``. It holds at most one maximal packet plus the 3 bytes that tell whether
    a next header follows (``max_buffer``).

    The SIM length is locked once a packet is confirmed by the header right after it; a
    locked stream hands each packet over as soon as its last byte arrives. Before that, a
    packet that more than one layout could describe waits for the bytes after it (the next
    header, or ``close``); one that only one layout fits comes out at once.
    """

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._buf = bytearray()
        self._max_body = max_body
        self._sim_size: int | None = None
        #: The most bytes the reader ever keeps between calls.
        self.max_buffer = MAX_HEADER + max_body + len(MAGIC) - 1

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def sim_size(self) -> int | None:
        """The SIM length the stream has shown, once confirmed."""
        return self._sim_size

    def feed(self, data: bytes) -> list[Packet | PacketError]:
        self._buf += data
        return self._run(final=False)

    def close(self) -> list[Packet | PacketError]:
        """The stream has ended: what is still buffered, as a packet or an error."""
        out = self._run(final=True)
        if self._buf:
            out.append(PacketError("stream ended inside a packet", bytes(self._buf)))
            self._buf.clear()
        return out

    def _run(self, final: bool) -> list[Packet | PacketError]:
        out: list[Packet | PacketError] = []
        buf = self._buf
        pos = 0
        while pos < len(buf):
            if buf[pos : pos + 4] != MAGIC:
                found = buf.find(MAGIC, pos + 1)
                if found < 0:
                    # Keep a tail that may be the start of the next header.
                    drop = len(buf) if final else _magic_prefix(buf, pos)
                    if drop > pos:
                        out.append(self._error("no 30 31 63 64 frame header", buf[pos:drop]))
                    pos = drop
                    break
                out.append(self._error("bytes before a 30 31 63 64 frame header", buf[pos:found]))
                pos = found
            size, total = self._cut(buf, pos, final)
            if (size, total) == _NEED:
                break
            if (size, total) == _BAD:
                found = buf.find(MAGIC, pos + 1)
                stop = found if found >= 0 else (len(buf) if final else _magic_prefix(buf, pos + 1))
                out.append(self._error("header does not describe a packet", buf[pos:stop]))
                pos = stop
                continue
            out.append(_decode(buf, pos, size, total))
            pos += total
        del buf[:pos]
        return out

    def _error(self, reason: str, dropped: bytearray) -> PacketError:
        return PacketError(reason, bytes(dropped[: self.max_buffer]))

    def _cut(self, buf: bytearray, pos: int, final: bool) -> tuple[int, int]:
        """(SIM size, total length) of the packet at ``pos``, ``_NEED`` or ``_BAD``."""
        end = len(buf)
        avail = end - pos
        locked = self._sim_size
        if locked is not None:
            total = _probe(buf, pos, end, locked, self._max_body)
            if total > 0:
                if avail >= total:
                    return locked, total
                return _BAD if final else _NEED
            if total == _SHORT:
                return _BAD if final else _NEED
            # Not a packet in the stream's layout: see whether the other one fits.

        # What the input says about each layout, in order of preference.
        states = [self._judge(buf, pos, size, final) for size in SIM_SIZES]
        for i, (size, state, total) in enumerate(states):
            if state == _CONFIRMED:
                self._sim_size = size
                return size, total
            if state == _SHORT or state == _UNDECIDED:
                # Wait for the bytes that decide it, so that a less preferred layout's
                # chance match never overrides it; unless nothing else is still in the
                # running and the packet is whole.
                rivals = states[:i] + states[i + 1 :]
                if (
                    state == _UNDECIDED
                    and len(buf) - pos >= total
                    and all(r in (_INVALID, _CONTRADICTED) for _, r, _ in rivals)
                ):
                    return size, total
                return _NEED
        # Every plausible layout is followed by something other than a header: take the
        # preferred one that is whole; the bytes after it are then reported as garbage.
        for size, state, total in states:
            if state == _CONTRADICTED:
                return size, total
        return _BAD

    def _judge(self, buf: bytearray, pos: int, size: int, final: bool) -> tuple[int, int, int]:
        """(size, state, total) of the packet at ``pos`` read with a ``size``-byte SIM."""
        end = len(buf)
        total = _probe(buf, pos, end, size, self._max_body)
        if total == _INVALID:
            return size, _INVALID, total
        if total == _SHORT:
            return size, (_INVALID if final else _SHORT), total
        avail = end - pos
        if avail >= total + 4:
            following = buf[pos + total : pos + total + 4] == MAGIC
            return size, (_CONFIRMED if following else _CONTRADICTED), total
        if final:
            if avail == total:
                return size, _CONFIRMED, total
            return size, (_CONTRADICTED if avail > total else _INVALID), total
        return size, _UNDECIDED, total
