"""Framing and bad input: the deframer cuts frames from any stream, resynchronises after
garbage, stays bounded, and only FrameError values or CodecError ever come out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.jt808.codec import decode, decode_body, encode
from cmsv6.jt808.errors import CodecError
from cmsv6.jt808.framing import (
    MAX_ESCAPED,
    Deframer,
    Frame,
    FrameError,
    build_frame,
    escape,
    parse_frame,
    unescape,
)
from cmsv6.jt808.header import Header
from cmsv6.jt808.messages.core import Heartbeat, TerminalResponse
from cmsv6.jt808.model import MESSAGES, RawBody

HEARTBEAT = encode(Header(0x0002, "013812345678", 1), Heartbeat())
RESPONSE = encode(Header(0x0001, "013812345678", 2), TerminalResponse(9, 0x8103, 0))


def _frames(items: list[Frame | FrameError]) -> list[Frame]:
    return [x for x in items if isinstance(x, Frame)]


def test_escape_vectors() -> None:
    """0x7e and 0x7d escape to 7d02 and 7d01 and back (the corpus's escape vectors)."""
    assert escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")
    assert unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")
    # 7d 01 02 is an escaped 0x7d followed by 0x02, never 0x7e.
    assert unescape(bytes.fromhex("7d0102")) == bytes.fromhex("7d02")


def test_garbage_before_and_between_frames() -> None:
    """Garbage is reported once and the frames around it still come through."""
    out = Deframer().feed(b"$$" + HEARTBEAT + b"junk" + RESPONSE)
    assert [type(x).__name__ for x in out] == ["FrameError", "Frame", "FrameError", "Frame"]


def test_shared_flag_between_frames() -> None:
    """One 0x7e may close a frame and open the next (some units share flags)."""
    stream = HEARTBEAT[:-1] + RESPONSE
    assert [f.header.msg_id for f in _frames(Deframer().feed(stream))] == [0x0002, 0x0001]


def test_byte_at_a_time() -> None:
    """Frames split at every byte boundary come out whole and in order."""
    d = Deframer()
    out = []
    for b in HEARTBEAT + RESPONSE + HEARTBEAT:
        out.extend(d.feed(bytes((b,))))
    assert [f.header.serial for f in _frames(out)] == [1, 2, 1]


def test_bad_check_code_is_reported_not_raised() -> None:
    """A frame with a wrong check code is delivered with checksum_ok False."""
    bad = RESPONSE[:-2] + bytes((RESPONSE[-2] ^ 0x55,)) + b"\x7e"
    (frame,) = _frames(Deframer().feed(bad))
    assert not frame.checksum_ok
    assert decode(bad).body == TerminalResponse(9, 0x8103, 0)


def test_overlong_input_is_dropped() -> None:
    """Input longer than any frame is dropped with an error and the stream recovers."""
    d = Deframer()
    out = d.feed(b"\x7e" + b"\x01" * (MAX_ESCAPED + 10))
    assert any(isinstance(x, FrameError) for x in out)
    assert d.buffered <= MAX_ESCAPED + 1
    assert [f.header.msg_id for f in _frames(d.feed(HEARTBEAT))] == [0x0002]


def test_too_short_frame() -> None:
    """Content shorter than a header is a codec error."""
    with pytest.raises(CodecError):
        parse_frame(bytes.fromhex("7e01017e"))


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_stream(chunks: list[bytes]) -> None:
    """Any byte stream gives only Frames and FrameErrors, and the buffer stays bounded."""
    d = Deframer()
    for chunk in chunks:
        for item in d.feed(chunk):
            assert isinstance(item, (Frame, FrameError))
        assert d.buffered <= MAX_ESCAPED + 1


@settings(max_examples=300)
@given(st.binary(max_size=60), st.integers(0, 200), st.binary(max_size=4))
def test_mutated_frames(noise: bytes, at: int, insert: bytes) -> None:
    """Valid frames with bytes inserted anywhere never raise, and later frames survive."""
    stream = bytearray(HEARTBEAT + RESPONSE)
    at %= len(stream) + 1
    stream[at:at] = insert
    d = Deframer()
    out = d.feed(noise + bytes(stream)) + d.feed(HEARTBEAT)
    assert all(isinstance(x, (Frame, FrameError)) for x in out)
    assert _frames(out)[-1].header.msg_id == 0x0002


BODY_IDS = sorted(MESSAGES)


def test_every_decoder_only_raises_codec_error() -> None:
    """Arbitrary bytes into every body decoder give a body or CodecError, nothing else."""

    # (pytest-twisted cannot run a parametrized hypothesis test, hence the loop.)
    @settings(max_examples=40, deadline=None, database=None)
    @given(data=st.binary(max_size=120), version=st.sampled_from([2013, 2019]))
    def check(msg_id: int, data: bytes, version: int) -> None:
        try:
            decode_body(msg_id, data, version)
        except CodecError:
            pass

    for msg_id in BODY_IDS:
        check(msg_id)


def test_raw_body_encodes_as_given() -> None:
    """A RawBody is sent as exactly its bytes, and an unknown id decodes back to them."""
    assert 0x0F01 not in MESSAGES
    data = b"\x01\x7e\x7d\x02 vendor"
    header = Header(0x0F01, "013812345678", 7)
    frame = encode(header, RawBody(data))
    assert frame == build_frame(header, data)
    assert parse_frame(frame).body == data
    assert decode(frame).body == RawBody(data)
    assert decode(frame).header == header
