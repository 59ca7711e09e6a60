"""Sub-packages: long downlinks are split; uplink packets reassemble in any order, missing
ones are listed for 0x8003, and pending memory is bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.jt808.codec import decode, encode_packets
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Frame, build_frame, parse_frame
from cmsv6.protocols.jt808.header import Header, Packet
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.protocols.jt808.subpackage import Missing, Reassembler

PHONE = "013812345678"


def _packets(body: bytes, serial: int = 100, size: int = 10, msg_id: int = 0x0801) -> list[Frame]:
    frames = encode_packets(Header(msg_id, PHONE, serial), RawBody(body), max_body=size)
    return [parse_frame(f) for f in frames]


def test_split_long_body() -> None:
    """A body over the limit is split into numbered packets with consecutive serials."""
    frames = _packets(bytes(range(25)), serial=0xFFFF)
    assert [f.header.packet for f in frames] == [Packet(3, 1), Packet(3, 2), Packet(3, 3)]
    assert [f.header.serial for f in frames] == [0xFFFF, 0, 1]
    assert b"".join(f.body for f in frames) == bytes(range(25))


def test_short_body_is_one_frame() -> None:
    """A body that fits is sent as one frame without packet numbers."""
    (frame,) = encode_packets(Header(0x8300, PHONE, 1), RawBody(b"abc"))
    assert decode(frame).header.packet is None


@settings(max_examples=100)
@given(st.binary(min_size=11, max_size=200), st.randoms())
def test_reassemble_any_order(body: bytes, rnd) -> None:  # type: ignore[no-untyped-def]
    """Packets in any order, with duplicates, give back the original body once."""
    frames = _packets(body, serial=0xFFF0)
    order = frames + frames[:2]
    rnd.shuffle(order)
    r = Reassembler()
    results = [r.add(f, now=0.0) for f in order]
    whole = [x for x in results if x is not None]
    assert len(whole) == 1
    assert whole[0].body == body
    assert whole[0].header.serial == 0xFFF0 and whole[0].header.packet is None
    assert r.pending_bytes == 0


def test_missing_packets_are_listed_for_resend() -> None:
    """When packets stop coming, the missing indexes are listed by the first serial."""
    frames = _packets(bytes(50), serial=7)
    r = Reassembler()
    for f in frames[:1] + frames[3:]:
        assert r.add(f, now=1.0) is None
    assert r.overdue(now=2.0, after=5.0) == []
    assert r.overdue(now=6.0, after=5.0) == [Missing(0x0801, 7, (2, 3))]
    assert r.add(frames[1], now=7.0) is None
    whole = r.add(frames[2], now=7.5)
    assert whole is not None and whole.body == bytes(50)


def test_expiry_gives_up() -> None:
    """A message never completed is dropped after its time, freeing its memory."""
    r = Reassembler()
    r.add(_packets(bytes(30))[0], now=0.0)
    assert r.pending_bytes == 10
    assert r.expire(now=10.0, max_age=60.0) == []
    (dropped,) = r.expire(now=61.0, max_age=60.0)
    assert dropped.first_serial == 100 and r.pending_bytes == 0


def test_pending_memory_is_bounded() -> None:
    """Many incomplete messages never hold more than the bound; the oldest go first."""
    r = Reassembler(max_bytes=100, max_messages=4)
    for n in range(50):
        first = _packets(bytes(30), serial=n * 10)[0]
        r.add(first, now=float(n))
        assert r.pending_bytes <= 100
    assert len(r._pending) <= 4
    assert r.dropped


def test_oversized_message_is_refused() -> None:
    """A single message larger than the bound is refused with a codec error."""
    r = Reassembler(max_bytes=25)
    frames = _packets(bytes(40))
    r.add(frames[0], now=0.0)
    r.add(frames[1], now=0.0)
    with pytest.raises(CodecError):
        r.add(frames[2], now=0.0)
    assert r.pending_bytes == 0


@pytest.mark.parametrize("packet", [Packet(2, 0), Packet(2, 3), Packet(0, 0)])
def test_impossible_packet_numbers(packet: Packet) -> None:
    """Packet index 0 or past the total is refused, and nothing is kept of it."""
    r = Reassembler()
    with pytest.raises(CodecError):
        r.add(parse_frame(_raw_packet(packet)), now=0.0)
    assert r.pending_bytes == 0 and r.overdue(now=100.0, after=1.0) == []


def test_first_and_last_packets_are_asked_for() -> None:
    """The missing list runs from index 1 to the total: a missing last packet is asked for,
    alone or with the first."""
    frames = _packets(bytes(50), serial=7)  # 5 packets
    r = Reassembler()
    for f in frames[:4]:
        r.add(f, now=1.0)
    assert r.overdue(now=20.0, after=5.0) == [Missing(0x0801, 7, (5,))]
    r = Reassembler()
    for f in frames[1:4]:
        r.add(f, now=1.0)
    assert r.overdue(now=20.0, after=5.0) == [Missing(0x0801, 7, (1, 5))]
    r.add(frames[4], now=21.0)
    whole = r.add(frames[0], now=21.0)
    assert whole is not None and whole.body == bytes(50)


def _raw_packet(packet: Packet) -> bytes:
    return build_frame(Header(0x0801, PHONE, 1, packet=packet), b"x")
