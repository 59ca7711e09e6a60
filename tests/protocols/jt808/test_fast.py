"""The hand-written hot paths equal the construct reference, on generated messages and on
arbitrary bytes, so the two can never drift."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.jt808 import fast
from cmsv6.protocols.jt808.codec import decode_body, decode_body_reference, encode_body_reference
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.framing import (
    build_frame,
    build_frame_reference,
    checksum,
    checksum_reference,
    escape,
    parse_content,
    parse_content_reference,
    unescape,
    unescape_reference,
)
from cmsv6.protocols.jt808.header import Header, Packet
from cmsv6.protocols.jt808.messages.core import PlatformResponse, TerminalResponse
from cmsv6.protocols.jt808.messages.location import (
    EXTRA_ITEMS,
    AreaAlarm,
    DrivingBehaviorAlarm,
    Location,
    LocationBatch,
    OverspeedAlarm,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

times = st.none() | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)
).map(lambda t: t.replace(microsecond=0, tzinfo=BEIJING))

SCALAR_SIZES = {k: v.size for k, v in fast._SCALARS.items()}


@st.composite
def extra_items(draw: st.DrawFn) -> dict[int, object]:
    out: dict[int, object] = {}
    for item_id in draw(st.lists(u8, max_size=8, unique=True)):
        size = SCALAR_SIZES.get(item_id)
        kind = draw(st.sampled_from(["typed", "raw"]))
        if size is not None and kind == "typed":
            lo, hi = (-0x8000, 0x7FFF) if item_id == 0x06 else (0, (1 << (8 * size)) - 1)
            out[item_id] = draw(st.integers(lo, hi))
        elif item_id == 0x11 and kind == "typed":
            t = draw(u8)
            out[item_id] = OverspeedAlarm(t, draw(u32) if t else None)
        elif item_id == 0x12 and kind == "typed":
            out[item_id] = AreaAlarm(draw(u8), draw(u32), draw(u8))
        elif item_id == 0x18 and kind == "typed":
            out[item_id] = DrivingBehaviorAlarm(draw(u16), draw(u8))
        elif item_id not in EXTRA_ITEMS:
            out[item_id] = draw(st.binary(max_size=40))
        else:
            # A known id with a value that does not fit its type (every typed item has at
            # least one byte) stays raw bytes.
            out[item_id] = b""
    return out


@st.composite
def locations(draw: st.DrawFn) -> Location:
    status = draw(u32)
    lat = draw(st.integers(0, 90_000_000)) / 1e6
    lon = draw(st.integers(0, 180_000_000)) / 1e6
    # Decoding signs the degrees from the status bits; generate them consistent.
    if status & 4:
        lat = -lat
    if status & 8:
        lon = -lon
    return Location(
        alarm=draw(u32),
        status=status,
        latitude=lat,
        longitude=lon,
        altitude=draw(st.integers(-0x8000, 0x7FFF)),
        speed=draw(u16) / 10,
        direction=draw(st.integers(0, 359)),
        time=draw(times),
        extras=draw(extra_items()),
        rest=draw(st.sampled_from([b"", b"\x01", b"\xee\x09\x01"])),
    )


def _same(fast_fn, ref_fn, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """Both give the same value, or both raise CodecError."""
    try:
        want = ref_fn(data)
    except CodecError:
        try:
            got = fast_fn(data)
        except CodecError:
            return
        # The reference refused; the fast path must not invent a message.
        raise AssertionError(f"reference refused {data.hex()} but fast gave {got}") from None
    assert fast_fn(data) == want


@settings(max_examples=300)
@given(locations())
def test_location_fast_equals_reference(loc: Location) -> None:
    """0x0200 encodes to the same bytes and decodes to the same value both ways."""
    raw = encode_body_reference(loc)
    assert fast.encode_location(loc) == raw
    assert fast.decode_location(raw) == decode_body_reference(0x0200, raw) == loc


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_location_fast_equals_reference_on_any_bytes(data: bytes) -> None:
    """On arbitrary bytes the fast 0x0200 decoder agrees with the reference (or both refuse)."""
    # decode_body is the fast path's entry point: it maps struct/index errors to CodecError.
    assert fast.FAST_DECODERS[0x0200] is fast.decode_location
    _same(lambda d: decode_body(0x0200, d), lambda d: decode_body_reference(0x0200, d), data)


@settings(max_examples=300)
@given(st.binary(min_size=28, max_size=28), st.binary(max_size=60))
def test_location_extras_on_any_bytes(basic: bytes, tail: bytes) -> None:
    """Arbitrary additional-item bytes decode the same both ways and never fail the report."""
    data = basic + tail
    loc = fast.decode_location(data)
    assert loc == decode_body_reference(0x0200, data)
    assert loc.status == int.from_bytes(basic[4:8], "big")
    assert fast.encode_location(loc)[28:] == tail


@settings(max_examples=100)
@given(st.integers(0, 1), st.lists(locations(), max_size=5))
def test_batch_fast_equals_reference(kind: int, locs: list[Location]) -> None:
    """0x0704 encodes and decodes the same both ways."""
    batch = LocationBatch(kind, locs)
    raw = encode_body_reference(batch)
    assert fast.encode_batch(batch) == raw
    assert fast.decode_batch(raw) == decode_body_reference(0x0704, raw) == batch


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_batch_fast_on_any_bytes(data: bytes) -> None:
    """On arbitrary bytes the fast 0x0704 decoder agrees with the reference (or both refuse)."""
    assert fast.FAST_DECODERS[0x0704] is fast.decode_batch
    _same(lambda d: decode_body(0x0704, d), lambda d: decode_body_reference(0x0704, d), data)


@given(u16, u16, u8)
def test_responses_fast_equal_reference(serial: int, msg_id: int, result: int) -> None:
    """0x0001 and 0x8001 encode and decode the same both ways."""
    for cls, decoder in (
        (TerminalResponse, fast.decode_terminal_response),
        (PlatformResponse, fast.decode_platform_response),
    ):
        body = cls(serial, msg_id, result)
        raw = encode_body_reference(body)
        assert fast.encode_response(body) == raw
        assert decoder(raw) == decode_body_reference(cls.MSG_ID, raw) == body  # type: ignore[attr-defined]


@given(st.binary(max_size=8))
def test_heartbeat_fast_equals_reference(data: bytes) -> None:
    """0x0002 decodes the same both ways."""
    assert fast.decode_heartbeat(data) == decode_body_reference(0x0002, data)


phones = st.integers(0, 10**12 - 1).map(lambda n: f"{n:012d}")
phones2019 = st.integers(0, 10**20 - 1).map(lambda n: f"{n:020d}")


@st.composite
def headers(draw: st.DrawFn) -> Header:
    v2019 = draw(st.booleans())
    packet = draw(st.none() | st.builds(Packet, u16, u16))
    return Header(
        msg_id=draw(u16),
        phone=draw(phones2019 if v2019 else phones),
        serial=draw(u16),
        version=2019 if v2019 else 2013,
        protocol_version=draw(u8) if v2019 else None,
        encryption=draw(st.integers(0, 7)),
        packet=packet,
        reserved=draw(st.booleans()),
    )


@settings(max_examples=300)
@given(headers(), st.binary(max_size=1023))
def test_frame_fast_equals_reference(header: Header, body: bytes) -> None:
    """Frames build to the same bytes and parse to the same header and body both ways."""
    frame = build_frame(header, body)
    assert frame == build_frame_reference(header, body)
    content = unescape(frame[1:-1])
    got = parse_content(content)
    assert got == parse_content_reference(content)
    assert got.header == header and got.body == body and got.checksum_ok and got.length_ok


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_framing_primitives_equal_reference(data: bytes) -> None:
    """Check code, escaping and the header parse agree with the plain reference versions."""
    assert checksum(data) == checksum_reference(data)
    assert unescape(escape(data)) == data
    assert unescape(data) == unescape_reference(data)
    _same(parse_content, parse_content_reference, data)


#: Bytes dense in escapes and flags, where escaping goes wrong if anywhere.
escapish = st.lists(
    st.sampled_from([b"\x7d", b"\x7e", b"\x01", b"\x02", b"\x00"]), max_size=12
).map(b"".join)


@settings(max_examples=500)
@given(escapish)
def test_unescape_equals_reference_on_escapes(data: bytes) -> None:
    """Unescaping agrees with the byte-by-byte reference on any run of 7d, 7e, 01 and 02
    (7d 01 02 is 7d 02, never 7e), and escaping round-trips them."""
    assert unescape(data) == unescape_reference(data)
    assert unescape(escape(data)) == data
    assert b"\x7e" not in escape(data)


@settings(max_examples=500)
@given(headers(), u16, u16, u16, u8)
def test_response_template_equals_encode(header: Header, serial: int, reply_serial: int,
                                         reply_id: int, result: int) -> None:  # fmt: skip
    """A 0x8001 from the template is the frame ``encode`` makes of the terminal's reply
    header and the PlatformResponse, in either header version, escapes included."""
    from cmsv6.protocols.jt808.codec import encode

    expected = encode(header.reply_header(0x8001, serial),
                      PlatformResponse(reply_serial, reply_id, result))  # fmt: skip
    assert fast.ResponseTemplate(header).frame(serial, reply_serial, reply_id, result) == expected


@settings(max_examples=100)
@given(st.data())
def test_report_times_kept_between_reports_equal_the_reference(data: st.DataObject) -> None:
    """Reports that share a time (the fast decoder keeps the ``datetime`` of a time it has
    made) decode as the reference decodes each alone, past the cache's bound and with
    times that are not dates among them."""
    from cmsv6.protocols.jt808.fields import bcd_time_encode

    pool = data.draw(st.lists(times.filter(bool).map(bcd_time_encode)  # type: ignore[arg-type]
                              | st.binary(min_size=6, max_size=6), min_size=1, max_size=40))
    raws = data.draw(st.lists(st.sampled_from(pool), max_size=3 * fast.TIMES_KEPT))
    bcd = [int(str(n), 16) for n in range(60)]
    raws += [bytes((0x26, 0x11, 0x25, 0x08, bcd[i // 60], bcd[i % 60]))
             for i in range(fast.TIMES_KEPT + 1)]  # fmt: skip
    basic = bytes(22)
    for raw in raws + raws[::-1]:
        body = basic + raw
        assert fast.decode_location(body) == decode_body_reference(0x0200, body)


@settings(max_examples=500)
@given(headers(), st.binary(max_size=60), st.integers(0), st.integers(1, 0xFF),
       st.integers(-2, 2))  # fmt: skip
def test_damaged_frame_parses_as_the_reference(header: Header, body: bytes, at: int, xor: int,
                                               cut: int) -> None:  # fmt: skip
    """A frame with one byte changed (check code, properties, length, body…), or a few
    bytes short or long, parses the same both ways: the usual 2013 frame's own path only
    takes what adds up, and reports a wrong check code as the reference does."""
    content = bytearray(unescape(build_frame(header, body)[1:-1]))
    content[at % len(content)] ^= xor
    if cut < 0:
        del content[cut:]
    else:
        content += bytes(cut)
    _same(parse_content, parse_content_reference, bytes(content))
