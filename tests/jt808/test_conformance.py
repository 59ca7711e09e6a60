"""Conformance against frames mined from public peers' test suites (tests/conformance/).

Every frame of every message decodes (header fields as the source asserts, a bad check code
reported rather than raised); the session and location messages re-encode to the source's
bytes. Other message groups have their own conformance tests beside their formats.
"""

from __future__ import annotations

from typing import Any

import pytest

from cmsv6.jt808.codec import decode_frame, encode
from cmsv6.jt808.errors import CodecError
from cmsv6.jt808.framing import Deframer, Frame, FrameError, build_frame
from cmsv6.jt808.messages.location import Location
from cmsv6.jt808.model import RawBody
from tests.corpus import frame_bytes, frame_data, jt808

#: Units that send 0x7e unescaped inside a frame (our structural analysis flags them
#: ``inner_7e``; traccar needs a per-model override for one). The frame is cut at the inner
#: flag, and neither piece passes as a valid frame.
NOT_FRAMES = {
    r["id"] for r in jt808() if (r.get("check") or {}).get("inner_7e")
}

#: Frames whose header decodes but whose body cannot, and why.
BODY_ERRORS = {
    "jt808-0417": "source edited the terminal number without fixing the frame: 4 bytes short",
    "encoder-0280": "go-jt808 writes an empty 0x8001 body; the standard has 5 bytes",
    "encoder-0303": "go-jt808 writes an empty 0x8001 body; the standard has 5 bytes",
    "encoder-0305": "go-jt808 writes an empty 0x8001 body; the standard has 5 bytes",
    "encoder-0307": "go-jt808 writes an empty 0x8001 body; the standard has 5 bytes",
    "encoder-0309": "go-jt808 writes an empty 0x8100 body; the standard has at least 3 bytes",
    "encoder-0311": "go-jt808 writes an empty 0x8100 body; the standard has at least 3 bytes",
    "encoder-0313": "go-jt808 writes an empty 0x8100 body; the standard has at least 3 bytes",
    "encoder-0347": "yezhihao writes the 2019 0x8500 as type WORD + param BYTE with no count",
    "encoder-0427": "yezhihao writes the 2019 0x8500 as type WORD + param BYTE with no count",
}

#: Where our encoding of the decoded message differs from the source's bytes, and why.
KNOWN_DIFFERENCES = {
    "jt808-0277": "2019 flag on a 2013 layout: we write the 2013 layout without the flag",
    "jt808-0278": "2019 flag on a 2013 layout: we write the 2013 layout without the flag",
    "jt808-0470": "two vendor bytes after a 0x0001 body are not kept",
}

ROUNDTRIP_IDS = {
    0x0001, 0x8001, 0x0002, 0x0003, 0x0004, 0x8004, 0x0005, 0x8003,
    0x0100, 0x8100, 0x0102, 0x0200, 0x0201, 0x8201, 0x0704,
}  # fmt: skip

RECORDS = [r for r in jt808() if r["kind"] in ("frame", "frame_unflagged")]


def _frames(r: dict[str, Any]) -> list[Frame | FrameError]:
    return Deframer().feed(frame_data(r))


def _first(r: dict[str, Any]) -> Frame:
    results = _frames(r)
    frames = [x for x in results if isinstance(x, Frame)]
    assert frames, f"{r['source']}: no frame in {results}"
    return frames[0]


@pytest.mark.parametrize("r", RECORDS, ids=[r["id"] for r in RECORDS])
def test_frame_header(r: dict[str, Any]) -> None:
    """Each corpus frame deframes to the message id, phone, serial and check-code verdict of
    our structural analysis, and to the header values its source asserts."""
    if r["id"] in NOT_FRAMES:
        assert not any(
            isinstance(x, Frame) and x.checksum_ok and x.length_ok for x in _frames(r)
        ), r["source"]
        return
    frame = _first(r)
    h = frame.header
    check = r.get("check") or {}
    if "no_escaping_by_device" in r.get("flags", ()):
        # Our structural analysis read it unescaped; taken as sent, it is consistent.
        assert frame.checksum_ok and frame.length_ok, r["source"]
    elif "msg_id" in check:
        assert h.msg_id == int(check["msg_id"], 16), r["source"]
        assert h.serial == check["serial"], r["source"]
        assert h.phone == check["phone_bcd"] or h.phone.endswith(check["phone_bcd"]), r["source"]
        assert frame.checksum_ok == check["checksum_ok"], r["source"]
        assert frame.length_ok == check.get("body_len_ok", True), r["source"]
    expect = r.get("expect") or {}
    for key, field in (("Header.MsgNum", "serial"), ("serialNo", "serial"), ("messageId", "msg_id")):
        if isinstance(expect.get(key), int):
            assert getattr(h, field) == expect[key], f"{key}: {r['source']}"
    if isinstance(expect.get("Header.MsgId"), int):
        assert h.msg_id == expect["Header.MsgId"], r["source"]
    for key in ("Header.TerminalPhoneNo", "clientId"):
        if isinstance(expect.get(key), str):
            assert h.phone.lstrip("0") == expect[key].lstrip("0"), f"{key}: {r['source']}"


DECODABLE = [
    r
    for r in RECORDS
    if r["id"] not in NOT_FRAMES and not ((r.get("check") or {}).get("subpackage"))
]


@pytest.mark.parametrize("r", DECODABLE, ids=[r["id"] for r in DECODABLE])
def test_frame_body(r: dict[str, Any]) -> None:
    """Each whole corpus frame's body decodes (an unknown message keeps its bytes); the
    source's own negative tests give a body or a CodecError, never another exception."""
    frame = _first(r)
    if r["id"] in BODY_ERRORS:
        with pytest.raises(CodecError):
            decode_frame(frame)
        return
    if r.get("expect_error"):
        try:
            decode_frame(frame)
        except CodecError:
            pass
        return
    decode_frame(frame)


ROUNDTRIP = [r for r in DECODABLE if int(r.get("msg_id") or "0", 16) in ROUNDTRIP_IDS]


@pytest.mark.parametrize("r", ROUNDTRIP, ids=[r["id"] for r in ROUNDTRIP])
def test_roundtrip(r: dict[str, Any]) -> None:
    """Session and location messages re-encode to the source's bytes (escaped canonically:
    some units leave 0x7d unescaped, which we never send)."""
    if r["id"] in BODY_ERRORS:
        pytest.skip(BODY_ERRORS[r["id"]])
    frame = _first(r)
    message = decode_frame(frame)
    canonical = build_frame(frame.header, frame.body)
    if r["id"] in KNOWN_DIFFERENCES:
        assert encode(message.header, message.body) != frame_bytes(r), "no longer differs"
        return
    if not frame.checksum_ok:
        # The source's check code is wrong; ours is right, the rest must match.
        assert encode(message.header, message.body)[:-2] == canonical[:-2], r["source"]
        return
    assert encode(message.header, message.body) == canonical, r["source"]


def _raw(value: float) -> int:
    return round(abs(value) * 1e6)


LOCATION_KEYS = {
    # key suffix: (our value from a Location, source's unit)
    "Lat": lambda loc: _raw(loc.latitude),
    "Lng": lambda loc: _raw(loc.longitude),
    "latitude": lambda loc: _raw(loc.latitude),
    "longitude": lambda loc: _raw(loc.longitude),
    "Speed": lambda loc: round(loc.speed * 10),
    "speed": lambda loc: round(loc.speed * 10),
    "Altitude": lambda loc: loc.altitude,
    "altitude": lambda loc: loc.altitude,
    "Direction": lambda loc: loc.direction,
    "direction": lambda loc: loc.direction,
    "AlarmFlag": lambda loc: loc.alarm,
    "warnBit": lambda loc: loc.alarm,
    "alarmFlag": lambda loc: loc.alarm,
    "StatusFlag": lambda loc: loc.status,
    "statusBit": lambda loc: loc.status,
    "status": lambda loc: loc.status,
    "GPSTime": lambda loc: loc.time.strftime("%Y-%m-%d %H:%M:%S") if loc.time else None,
    "deviceTime": lambda loc: loc.time.strftime("%Y-%m-%dT%H:%M:%S") if loc.time else None,
}

def _basic_keys(r: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for key, want in (r.get("expect") or {}).items():
        prefix, _, name = key.rpartition(".")
        if prefix not in ("", "Bodies") or name not in LOCATION_KEYS:
            continue
        if not isinstance(want, (int, str)) or str(want).startswith(("cs:", "java:", "go:")):
            continue
        out.append((key, want))
    return out


LOCATIONS = [r for r in DECODABLE if r.get("msg_id") == "0x0200" and _basic_keys(r)]


@pytest.mark.parametrize("r", LOCATIONS, ids=[r["id"] for r in LOCATIONS])
def test_location_fields(r: dict[str, Any]) -> None:
    """0x0200 basic fields equal the values the source asserts (in the source's units)."""
    loc = decode_frame(_first(r)).body
    assert isinstance(loc, Location)
    for key, want in _basic_keys(r):
        assert LOCATION_KEYS[key.rpartition(".")[2]](loc) == want, f"{key}: {r['source']}"


def test_encrypted_body_is_kept_raw() -> None:
    """An RSA-encrypted body (go-jt808's 0x0801 case) is ciphertext and stays a RawBody."""
    (r,) = [r for r in RECORDS if r["id"] == "jt808-0535"]
    message = decode_frame(_first(r))
    assert message.header.encryption == 1
    assert isinstance(message.body, RawBody) and message.body.data == _first(r).body
