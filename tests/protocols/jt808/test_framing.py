"""Framing and bad input: the deframer cuts frames from any stream, resynchronises after
garbage, stays bounded, and only FrameError values or CodecError ever come out; anything
else a decoder raises is a bug and comes out as it is."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.jt808 import codec
from cmsv6.protocols.jt808.codec import decode, decode_body, decode_frame, encode, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import (
    MAX_ESCAPED,
    Deframer,
    Frame,
    FrameError,
    build_frame,
    checksum,
    escape,
    parse_frame,
    unescape,
)
from cmsv6.protocols.jt808.header import VERSION_FLAG, Header, Packet
from cmsv6.protocols.jt808.messages.core import Heartbeat, PlatformResponse, TerminalResponse
from cmsv6.protocols.jt808.model import MESSAGES, RawBody
from tests.support.corpus import frame_data, jt808

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


def _decode_or_codec_error(frame: Frame) -> None:
    """Decode a frame the deframer gave; CodecError is the only failure allowed."""
    try:
        decode_frame(frame)
    except CodecError:
        pass


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
    for frame in _frames(out):
        _decode_or_codec_error(frame)


CORPUS = sorted({frame_data(r) for r in jt808()})

#: One damage to a frame: (kind, where, byte).
_DAMAGE = st.tuples(st.integers(0, 4), st.integers(0, 2000), st.integers(0, 255))


def _damage(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Change, insert, delete or cut bytes inside a frame's flags, then fix its check code
    half the time (so damaged bodies reach the body decoders, not only the check)."""
    content = bytearray(unescape(data[1:-1]))
    for kind, at, byte in ops:
        at %= len(content) + 1
        if kind == 0 and at < len(content):
            content[at] = byte
        elif kind == 1:
            content[at:at] = bytes((byte,))
        elif kind == 2:
            del content[at : at + 1 + byte % 4]
        elif kind == 3:
            del content[at:]
        else:
            content[at:at] = bytes((0x00, 0xFF, byte))
    if content and ops and ops[0][2] & 1:
        content[-1] = checksum(bytes(content[:-1]))
    return b"\x7e" + escape(bytes(content)) + b"\x7e"


def test_damaged_corpus_frames_only_raise_codec_error() -> None:
    """Damaged corpus frames deframe and decode to a Message or CodecError, nothing else:
    they reach deep into every format, where random bytes rarely go."""

    @settings(max_examples=1500, deadline=None, database=None)
    @given(st.sampled_from(CORPUS), st.lists(_DAMAGE, min_size=1, max_size=3))
    def check(data: bytes, ops: list[tuple[int, int, int]]) -> None:
        for item in Deframer().feed(_damage(data, ops)):
            assert isinstance(item, (Frame, FrameError))
            if isinstance(item, Frame):
                _decode_or_codec_error(item)

    check()


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


def test_a_bug_in_a_decoder_is_not_a_codec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception bad input cannot cause (here an AttributeError) comes out of the codec as
    it is, for the session to log and close on; bad input is still a CodecError."""

    def buggy(data: bytes, version: int) -> object:
        return None.oops  # type: ignore[attr-defined]

    monkeypatch.setitem(codec.FAST_DECODERS, 0x0002, buggy)
    with pytest.raises(AttributeError):
        decode(HEARTBEAT)
    with pytest.raises(CodecError):
        decode_body(0x0001, b"\x00\x01")  # too short: bad input
    with pytest.raises(CodecError):
        decode_body(0x0102, b"\xff\xfe", 2019)  # construct's errors become CodecError

    class Buggy:  # a construct reference with a bug (0x0102 has no fast path)
        def parse(self, data: bytes, version: int) -> object:
            return None.oops  # type: ignore[attr-defined]

    assert 0x0102 not in codec.FAST_DECODERS
    monkeypatch.setattr(codec.MESSAGES[0x0102], "CODEC", Buggy())
    with pytest.raises(AttributeError):
        decode_body(0x0102, b"\x01", 2013)


def test_a_bug_in_an_encoder_is_not_a_codec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TypeError out of an encoder is a bug and comes out as it is; a value out of its
    field's range is a CodecError."""

    def buggy(body: object, version: int) -> bytes:
        raise TypeError("a bug")

    with pytest.raises(CodecError):
        encode_body(TerminalResponse(0x10000, 0x8103, 0))
    monkeypatch.setitem(codec.FAST_ENCODERS, 0x0001, buggy)
    with pytest.raises(TypeError):
        encode_body(TerminalResponse(1, 0x8103, 0))


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


def _frame_with_props(content_without_check: bytes) -> bytes:
    content = content_without_check + bytes((checksum(content_without_check),))
    return b"\x7e" + escape(content) + b"\x7e"


def test_layout_is_told_by_length_not_the_version_flag() -> None:
    """A 2013 header with the 2019 bit set and a 2019 header without it both decode in the
    layout their length says; the bit only decides when the length field is wrong."""
    body = bytes.fromhex("000a810301")  # a 0x0001 reply to serial 10, result 1
    # 2013 layout, version flag set.
    flagged_2013 = _frame_with_props(
        bytes.fromhex("0001") + (VERSION_FLAG | len(body)).to_bytes(2, "big")
        + bytes.fromhex("013812345678") + b"\x00\x05" + body
    )  # fmt: skip
    m = decode(flagged_2013)
    assert (m.header.version, m.header.phone, m.header.serial) == (2013, "013812345678", 5)
    assert m.body == TerminalResponse(10, 0x8103, 1)
    # 2019 layout, no version flag.
    unflagged_2019 = _frame_with_props(
        bytes.fromhex("0001") + len(body).to_bytes(2, "big") + b"\x01"
        + bytes.fromhex("00000000013812345678") + b"\x00\x06" + body
    )  # fmt: skip
    m = decode(unflagged_2019)
    assert (m.header.version, m.header.phone, m.header.serial) == (2019, "00000000013812345678", 6)
    assert m.body == TerminalResponse(10, 0x8103, 1)
    # A wrong length field: the flag names the layout, and the frame says the length is off.
    wrong_length = _frame_with_props(
        bytes.fromhex("0001") + (VERSION_FLAG | 2).to_bytes(2, "big") + b"\x01"
        + bytes.fromhex("00000000013812345678") + b"\x00\x07" + body
    )  # fmt: skip
    f = parse_frame(wrong_length)
    assert (f.header.version, f.header.phone, f.header.serial) == (2019, "00000000013812345678", 7)
    assert f.body == body and not f.length_ok and f.checksum_ok


@pytest.mark.parametrize("header, bad_length", [
    (Header(0x8001, "913812345678", 2), False),  # the usual frame (parse_content's own path)
    (Header(0x8001, "913812345678", 2), True),  # its body length field wrong
    (Header(0x8001, "91381234567891381234", 2, 2019, 1), False),
    (Header(0x8001, "913812345678", 2, packet=Packet(3, 2)), False),
])  # fmt: skip
def test_check_code_is_the_xor_of_header_and_body(header: Header, bad_length: bool) -> None:
    """The check code covers every byte from the message id to the body's last byte: a
    frame we build carries it, and a change anywhere in the content is detected, in every
    header layout and when the body length field is wrong."""
    # No zero byte at either end, so a range off by one at either end changes the XOR.
    frame = encode(header, PlatformResponse(9, 0x0200, 3))
    content = unescape(frame[1:-1])
    if bad_length:
        content = content[:3] + bytes((content[3] ^ 1,)) + content[4:-1]
        content += bytes((checksum(content),))
        frame = b"\x7e" + escape(content) + b"\x7e"
        assert not parse_frame(frame).length_ok
    assert content[0] and content[-2]
    x = 0
    for b in content[:-1]:
        x ^= b
    assert content[-1] == x
    assert parse_frame(frame).checksum_ok
    for at in (0, 5, len(content) - 2):
        damaged = bytearray(content)
        damaged[at] ^= 0x40
        assert not parse_frame(bytes(damaged)).checksum_ok


class _Buggy:
    """A parser with a bug in it (what a bad edit of an item's format would be)."""

    def parse(self, data: bytes) -> object:
        return None.oops  # type: ignore[attr-defined]


def test_a_bug_in_an_item_or_parameter_parser_is_not_kept_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keep-it-raw fallbacks pass over bad input only: a bug in the parser of an
    additional item or a parameter comes out, and bytes that do not fit stay raw."""
    from cmsv6.protocols.jt808.messages import location, params

    assert location.decode_extra(0x01, b"\x01\x02") == b"\x01\x02"  # 2 bytes for a DWORD
    assert params.decode_param(0x0001, b"\x01\x02") == b"\x01\x02"
    monkeypatch.setitem(location._ITEM_PARSERS, 0x01, _Buggy())
    monkeypatch.setitem(params._PARAM_PARSERS, 0x0001, _Buggy())
    with pytest.raises(AttributeError):
        location.decode_extra(0x01, b"\x00\x00\x00\x01")
    with pytest.raises(AttributeError):
        params.decode_param(0x0001, b"\x00\x00\x00\x01")


def test_a_nested_record_given_as_a_partial_dict_is_a_codec_error() -> None:
    """A nested record given as a dict that lacks fields (a caller building a body from
    JSON) is bad input: a CodecError naming what is missing, not a KeyError."""
    from cmsv6.protocols.jt808.messages.params import SetParameters

    with pytest.raises(CodecError, match="live_encode_mode"):
        encode_body(SetParameters({0x0075: {"osd": 1}}))


#: A frame with escapes (serial 7e 7d), and one from a unit that does not escape: its
#: serial's 0x7d goes as it is (7d 05).
ESCAPED = encode(Header(0x0002, "013812345678", 0x7E7D), Heartbeat())
UNESCAPED_7D = b"\x7e" + unescape(encode(Header(0x0002, "013812345678", 0x7D05),
                                          Heartbeat())[1:-1]) + b"\x7e"  # fmt: skip
_PIECES = st.sampled_from([HEARTBEAT, RESPONSE, ESCAPED, UNESCAPED_7D, b"\x7e", b"\x7e\x7e",
                           b"\x7d", b"junk", b"\x7e\x00\x7e"])  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.lists(_PIECES | st.binary(max_size=8), max_size=4).map(b"".join), max_size=6))
def test_whole_frame_fast_path_equals_the_loop(chunks: list[bytes]) -> None:
    """Fed any chunks (whole frames, pieces, shared flags, garbage), ``feed`` gives what
    the general loop gives, item for item, and keeps the same buffer."""
    fast, loop = Deframer(), Deframer()
    for chunk in chunks:
        assert fast.feed(chunk) == loop._feed(chunk)
        assert fast._buffer == loop._buffer
