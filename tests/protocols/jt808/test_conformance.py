"""Conformance against frames mined from public peers' test suites (tests/conformance/).

Every frame of every message deframes to the header its source asserts; its body decodes to
the class registered for its message id, and the frame re-encodes to the *source's* bytes
unless a listed, checked reason says why ours differ; the frames the sources say must fail
fail, or are listed with why we accept them. The session and location messages (frames and
bodies alike) equal every value their sources assert that a key map below reaches; the
other message groups have their own corpus tests beside their formats.

Every list here is exact: an entry that no longer applies fails, so none can rot.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator

import pytest

from cmsv6.protocols.jt808 import fast
from cmsv6.protocols.jt808.codec import (
    decode,
    decode_body,
    decode_body_reference,
    decode_frame,
    encode,
    encode_body,
    encode_body_reference,
)
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Deframer, Frame, FrameError, build_frame
from cmsv6.protocols.jt808.header import ENCRYPTION_RSA, Header
from cmsv6.protocols.jt808.jsonable import message_json
from cmsv6.protocols.jt808.messages.location import STATUS_SOUTH, STATUS_WEST, Location
from cmsv6.protocols.jt808.model import MESSAGES, RawBody
from tests.support.corpus import (
    body_version,
    flatten,
    frame_bytes,
    frame_data,
    is_literal,
    jt808,
    msg_id_of,
    owner_of,
    records,
)

#: Units that send 0x7e unescaped inside a frame (our structural analysis flags them
#: ``inner_7e``; traccar needs a per-model override for one). The frame is cut at the inner
#: flag, and neither piece passes as a valid frame.
NOT_FRAMES = {r["id"] for r in jt808() if (r.get("check") or {}).get("inner_7e")}

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

#: Frames a source's negative test says must fail that we decode, and why we accept them.
ACCEPTED_ERRORS = {
    "jt808-0515": "go-jt808 refuses an additional item whose length is not its type's: we keep"
    " the item as raw bytes (a vendor's item never fails a report)",
    "jt808-0516": "go-jt808 refuses an item that runs past the body: we keep those bytes in rest",
    "jt808-0517": "go-jt808 refuses an item id with no length byte: we keep the byte in rest",
    "jt808-0529": "go-jt808 refuses a 0x0104 whose count (2) exceeds its parameters (1): we keep"
    " the parameter and the count as sent",
    "jt808-0644": "fakeyanss refuses a bad check code: we report it (checksum_ok False)",
}

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


DECODABLE = [r for r in RECORDS if r["id"] not in NOT_FRAMES]


def test_lists_name_decodable_frames() -> None:
    """Every id in BODY_ERRORS, ACCEPTED_ERRORS and SOURCE_DIFFERENCES is a frame tested here."""
    ids = {r["id"] for r in DECODABLE}
    assert set(BODY_ERRORS) <= ids
    assert set(ACCEPTED_ERRORS) <= ids
    assert set(SOURCE_DIFFERENCES) <= ids
    assert not set(BODY_ERRORS) & set(SOURCE_DIFFERENCES)


def _is_piece(frame: Frame) -> bool:
    return frame.header.packet is not None and frame.header.packet.total > 1


@pytest.mark.parametrize("r", DECODABLE, ids=[r["id"] for r in DECODABLE])
def test_frame_body(r: dict[str, Any]) -> None:
    """Each corpus frame's body decodes to the class registered for its message id (a
    RawBody only for an unknown id, ciphertext or a sub-package piece); a frame the source
    says must fail raises CodecError unless ACCEPTED_ERRORS says why we take it."""
    frame = _first(r)
    refused = r["id"] in BODY_ERRORS or (r.get("expect_error") and r["id"] not in ACCEPTED_ERRORS)
    if refused:
        with pytest.raises(CodecError):
            decode_frame(frame)
        return
    assert not (r["id"] in ACCEPTED_ERRORS and not r.get("expect_error")), "not a negative test"
    message = decode(frame_data(r))
    h = message.header
    if _is_piece(frame) or h.encryption == ENCRYPTION_RSA or h.msg_id not in MESSAGES:
        assert message.body == RawBody(frame.body), r["source"]
    else:
        assert type(message.body) is MESSAGES[h.msg_id], r["source"]


# -- re-encoding to the source's bytes ----------------------------------------------------
#
# Where our frame differs from the source's, the record is listed with the kinds of
# difference, and the test applies exactly those corrections to the *source's* bytes (by
# hand, not with our framing code) and requires ours to equal the result. Each listed kind
# must change something, so an entry can neither hide another difference nor outlive it.

ESCAPING = "unit leaves 0x7d unescaped; we escape it"
LENGTH = "source's body-length field disagrees with the body; we write the body's length"
CHECK_CODE = "source's check code is wrong; we write the right one"
VERSION_FLAG = "version flag disagrees with the header layout; we write the layout's flag"
ZERO_COUNT = "0x8800 with a zero count, which the standard leaves out; we leave it out"

#: Frames whose re-encoding differs from the source's bytes, and every way it does.
SOURCE_DIFFERENCES: dict[str, tuple[str, ...]] = {
    # traccar device captures
    "jt808-0033": (LENGTH,),
    "jt808-0034": (LENGTH, CHECK_CODE),
    "jt808-0035": (LENGTH,),
    "jt808-0040": (ESCAPING,),
    "jt808-0046": (ESCAPING,),
    "jt808-0051": (ESCAPING,),
    "jt808-0067": (LENGTH,),
    "jt808-0070": (LENGTH,),
    "jt808-0071": (LENGTH,),
    "jt808-0088": (LENGTH, CHECK_CODE),
    "jt808-0105": (ESCAPING,),
    "jt808-0106": (ESCAPING,),
    "jt808-0107": (ESCAPING,),
    "jt808-0108": (ESCAPING,),
    "jt808-0110": (CHECK_CODE,),
    "jt808-0112": (LENGTH,),
    # SmallChi test data
    "jt808-0148": (LENGTH,),
    "jt808-0277": (VERSION_FLAG,),
    "jt808-0278": (VERSION_FLAG,),
    "jt808-0281": (CHECK_CODE,),
    "jt808-0282": (CHECK_CODE,),
    "jt808-0290": (CHECK_CODE,),
    "jt808-0292": (CHECK_CODE,),
    "jt808-0294": (CHECK_CODE,),
    "jt808-0296": (CHECK_CODE,),
    "jt808-0298": (CHECK_CODE,),
    "jt808-0315": (LENGTH,),
    "jt808-0413": (LENGTH,),
    # SmallChi sub-package pieces whose check code the test left unfixed
    "jt808-0428": (CHECK_CODE,),
    "jt808-0429": (CHECK_CODE,),
    **dict.fromkeys([f"jt808-{n:04d}" for n in range(479, 487)], (CHECK_CODE,)),
    "encoder-0097": (VERSION_FLAG,),
    "encoder-0210": (ZERO_COUNT,),
    "encoder-0211": (ZERO_COUNT,),
    # go-jt808 and fakeyanss
    "jt808-0536": (ESCAPING,),
    "jt808-0644": (CHECK_CODE,),
}


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def _inner(r: dict[str, Any]) -> bytes:
    raw = frame_bytes(r)
    return raw[1:-1] if raw.startswith(b"\x7e") else raw


def _correct(r: dict[str, Any], kinds: tuple[str, ...]) -> bytes:
    """The source's frame with the listed differences corrected, byte by byte."""
    inner = _inner(r)
    if ESCAPING not in kinds:  # the unit escaped: undo it
        inner = inner.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")
    content = bytearray(inner)
    before = _xor(content[:-1])
    header_len = r["check"]["header_len"]
    if LENGTH in kinds:
        length = len(content) - header_len - 1
        content[2] = (content[2] & 0xFC) | length >> 8
        content[3] = length & 0xFF
    if VERSION_FLAG in kinds:
        content[2] ^= 0x40
    if ZERO_COUNT in kinds:
        assert content[-2] == 0, "no zero count before the check code"
        del content[-2]
        content[3] -= 1
    if CHECK_CODE in kinds:
        content[-1] = _xor(content[:-1])
    else:  # the source's check code, as right or wrong for the corrected bytes as it was
        content[-1] ^= before ^ _xor(content[:-1])
    escaped = bytes(content).replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")
    return b"\x7e" + escaped + b"\x7e"


REENCODED = [r for r in DECODABLE if r["id"] not in BODY_ERRORS]


@pytest.mark.parametrize("r", REENCODED, ids=[r["id"] for r in REENCODED])
def test_frame_reencodes_to_source_bytes(r: dict[str, Any]) -> None:
    """Each decoded frame re-encodes to the source's exact bytes, or to them corrected in
    exactly the listed ways (each of which changes something)."""
    if r.get("expect_error") and r["id"] not in ACCEPTED_ERRORS:
        pytest.skip("refused, as the source says (test_frame_body)")
    message = decode(frame_data(r))
    ours = encode(message.header, message.body)
    kinds = SOURCE_DIFFERENCES.get(r["id"], ())
    assert ours == _correct(r, kinds), f"{r['id']} ({r['source']})"
    if kinds:
        assert ours != frame_data(r), f"{r['id']} no longer differs: drop it"
    for kind in kinds:
        fewer = tuple(k for k in kinds if k != kind)
        if kind == ESCAPING and re.search(rb"\x7d(?![\x01\x02])", _inner(r)):
            continue  # a lone 0x7d: unescaping leaves it, so only ESCAPING explains ours
        assert ours != _correct(r, fewer), f"{r['id']}: {kind!r} changes nothing"


# -- asserted values of the session and location messages --------------------------------

#: The messages whose asserted values this file checks (the other groups' tests check theirs).
CORE_IDS = {
    0x0001, 0x8001, 0x0002, 0x0003, 0x0004, 0x8004, 0x0005, 0x8003,
    0x0100, 0x8100, 0x0102, 0x0200, 0x0201, 0x8201, 0x0704,
}  # fmt: skip

Getter = Callable[[Any], Any]


def _when(loc: Location) -> str | None:
    return None if loc.time is None else loc.time.strftime("%Y-%m-%d %H:%M:%S")


def _iso(loc: Location) -> str | None:
    return None if loc.time is None else loc.time.strftime("%Y-%m-%dT%H:%M:%S")


def _latitude(loc: Location) -> int:
    """The latitude DWORD as the sources read it: the magnitude, or a two's complement
    negative read as signed int32 (the form the unit wrote it in)."""
    raw = round(loc.latitude * 1e6)
    return raw if loc.twos_complement & STATUS_SOUTH else abs(raw)


def _longitude(loc: Location) -> int:
    raw = round(loc.longitude * 1e6)
    return raw if loc.twos_complement & STATUS_WEST else abs(raw)


def _tenths(loc: Location) -> int:
    return round(loc.speed * 10)


def _basic(alarm: str, status: str, lat: str, lng: str, alt: str, speed: str, direction: str,
           time: str, time_getter: Getter = _when) -> dict[str, Getter]:  # fmt: skip
    return {
        alarm: lambda loc: loc.alarm,
        status: lambda loc: loc.status,
        lat: _latitude,
        lng: _longitude,
        alt: lambda loc: loc.altitude & 0xFFFF,  # the sources read an unsigned WORD
        speed: _tenths,
        direction: lambda loc: loc.direction,
        time: time_getter,
    }


#: A location's own keys, by source (what follows the prefix that leads to the location).
LOCATION_KEYS: dict[str, dict[str, Getter]] = {
    "SmallChi": _basic("AlarmFlag", "StatusFlag", "Lat", "Lng", "Altitude", "Speed", "Direction",
                       "GPSTime"),  # fmt: skip
    "cuteLittleDevil": _basic("AlarmSign", "StatusSign", "Latitude", "Longitude", "Altitude",
                              "Speed", "Direction", "DateTime"),  # fmt: skip
    "hylexus": _basic("alarmFlag", "status", "latitude", "longitude", "altitude", "speed",
                      "direction", "time"),  # fmt: skip
    "yezhihao": _basic("warnBit", "statusBit", "latitude", "longitude", "altitude", "speed",
                       "direction", "deviceTime", _iso),  # fmt: skip
}


def _extra(item_id: int, attr: str | None = None) -> Getter:
    def get(loc: Location) -> Any:
        value = loc.extras[item_id]
        return value if attr is None else getattr(value, attr)

    return get


#: Additional items, by source: key (a regular expression) → getter.
ITEM_KEYS: dict[str, dict[str, Getter]] = {
    "SmallChi": {
        r"BasicLocationAttachData\[JT808Constants\.JT808_0x0200_0x01\]\.Mileage": _extra(0x01),
        r"BasicLocationAttachData\[JT808Constants\.JT808_0x0200_0x02\]\.Oil": _extra(0x02),
        r"CustomLocationAttachData\[0x14\]\.VideoRelateAlarm": _extra(0x14),
        r"CustomLocationAttachData\[(0x15|JT808_JT1078_Constants\.JT808_0X0200_0x15)\]"
        r"\.VideoSignalLoseAlarmStatus": _extra(0x15),
        r"CustomLocationAttachData\[0x16\]\.VideoSignalOcclusionAlarmStatus": _extra(0x16),
        r"CustomLocationAttachData\[0x17\]\.StorageFaultAlarmStatus": _extra(0x17),
        r"CustomLocationAttachData\[0x18\]\.AbnormalDrivingBehaviorAlarmType": _extra(0x18, "behavior"),
        r"CustomLocationAttachData\[0x18\]\.FatigueLevel": _extra(0x18, "fatigue"),
    },
    "hylexus": {
        rf"extraItems\.get\(\(short\) 0x{i:02x}\)": _extra(i)
        for i in (0x01, 0x02, 0x03, 0x04, 0x25, 0x30, 0x31)
    },
    "yezhihao": {
        **{rf"attributes\.{i}": _extra(i) for i in (1, 2, 3, 4, 6, 37, 42, 43, 48, 49)},
        r"attributes\.17\.areaType": _extra(0x11, "location_type"),
        r"attributes\.17\.areaId": _extra(0x11, "area_id"),
        r"attributes\.18\.areaType": _extra(0x12, "location_type"),
        r"attributes\.18\.areaId": _extra(0x12, "area_id"),
        r"attributes\.18\.direction": _extra(0x12, "direction"),
        r"attributes\.19\.areaId": _extra(0x13, "section_id"),
        r"attributes\.19\.driveTime": _extra(0x13, "seconds"),
        r"attributes\.19\.result": _extra(0x13, "result"),
    },
}

#: Where each source's keys reach a location inside a body: (msg id, source) →
#: [(prefix regular expression, getter of the location from the body and the match)].
LOCATION_PATHS: dict[int, list[tuple[str, Callable[[Any, re.Match[str]], Location]]]] = {
    0x0200: [(r"(Bodies\.)?(T0x0200LocationItem\.)?", lambda b, m: b)],
    0x0201: [
        (r"(Bodies\.Position\.|T0x0200LocationItem\.|locationMessage\.|)", lambda b, m: b.location)
    ],
    0x0704: [
        (
            r"(Bodies\.Positions|Items|items)\[(?P<i>\d+)\]\.(T0x0200LocationItem\.)?",
            lambda b, m: b.locations[int(m["i"])],
        ),
        (
            r"itemList\.(?P<end>first|last)\.locationData\.",
            lambda b, m: b.locations[0 if m["end"] == "first" else -1],
        ),
    ],
}

#: Other body keys: (msg id, source) → {key: getter}.
BODY_KEYS: dict[tuple[int, str], dict[str, Getter]] = {
    (0x0001, "SmallChi"): {
        "Bodies.ReplyMsgId": lambda b: b.reply_id,
        "Bodies.ReplyMsgNum": lambda b: b.reply_serial,
        # SmallChi's test adds a WORD to the body; we keep it in rest
        "Bodies.Test": lambda b: int.from_bytes(b.rest, "big"),
    },
    (0x0001, "cuteLittleDevil"): {
        "SerialNumber": lambda b: b.reply_serial,
        "ID": lambda b: b.reply_id,
        "Result": lambda b: b.result,
    },
    (0x8001, "SmallChi"): {"Bodies.AckMsgId": lambda b: b.reply_id, "Bodies.MsgNum": lambda b: b.reply_serial},
    (0x8001, "cuteLittleDevil"): {
        "RespondSerialNumber": lambda b: b.reply_serial,
        "RespondID": lambda b: b.reply_id,
        "Result": lambda b: b.result,
    },
    (0x8001, "hylexus"): {
        "clientFlowId": lambda b: b.reply_serial,
        "clientMessageId": lambda b: b.reply_id,
        "result": lambda b: b.result,
    },
    (0x8001, "yezhihao"): {
        "responseSerialNo": lambda b: b.reply_serial,
        "responseMessageId": lambda b: b.reply_id,
        "resultCode": lambda b: b.result,
    },
    (0x0100, "SmallChi"): {
        "Bodies.AreaID": lambda b: b.province,
        "Bodies.CityOrCountyId": lambda b: b.city,
        "Bodies.MakerId": lambda b: b.manufacturer,
        "Bodies.PlateColor": lambda b: b.plate_color,
        "Bodies.PlateNo": lambda b: b.plate,
        "Bodies.TerminalId": lambda b: b.terminal_id,
        "Bodies.TerminalModel": lambda b: b.model,
    },
    (0x0100, "cuteLittleDevil"): {
        "ProvinceID": lambda b: b.province,
        "CityID": lambda b: b.city,
        "ManufacturerID": lambda b: b.manufacturer,
        "TerminalModel": lambda b: b.model,
        "TerminalID": lambda b: b.terminal_id,
        "PlateColor": lambda b: b.plate_color,
        "LicensePlateNumber": lambda b: b.plate,
    },
    (0x0100, "hylexus"): {
        "provinceId": lambda b: b.province,
        "cityId": lambda b: b.city,
        "manufacturerId": lambda b: b.manufacturer,
        "terminalType": lambda b: b.model,
        "terminalId": lambda b: b.terminal_id,
        "color": lambda b: b.plate_color,
        "carIdentifier": lambda b: b.plate,
    },
    (0x0100, "yezhihao"): {
        "provinceId": lambda b: b.province,
        "cityId": lambda b: b.city,
        "makerId": lambda b: b.manufacturer,
        "deviceModel": lambda b: b.model,
        "deviceId": lambda b: b.terminal_id,
        "plateColor": lambda b: b.plate_color,
        "plateNo": lambda b: b.plate,
    },
    (0x8100, "SmallChi"): {"Bodies.Code": lambda b: b.auth_code, "Bodies.AckMsgNum": lambda b: b.reply_serial},
    (0x8100, "cuteLittleDevil"): {
        "RespondSerialNumber": lambda b: b.reply_serial,
        "Result": lambda b: b.result,
        "AuthCode": lambda b: b.auth_code,
    },
    (0x8100, "yezhihao"): {
        "responseSerialNo": lambda b: b.reply_serial,
        "resultCode": lambda b: b.result,
        "token": lambda b: b.auth_code,
    },
    (0x0102, "SmallChi"): {
        **dict.fromkeys(("Code", "Bodies.Code"), lambda b: b.auth_code),
        "IMEI": lambda b: b.imei,
        "SoftwareVersion": lambda b: b.software_version,
        "CodeLength": lambda b: len(b.auth_code.encode()),
    },
    (0x0102, "cuteLittleDevil"): {
        # go-jt808 reads no length byte from a 2013 body (it has none) and leaves 0
        "AuthCodeLen": lambda b: 0 if b.imei is None else len(b.auth_code.encode()),
        "AuthCode": lambda b: b.auth_code,
        # Go's zero value for the 2019 fields a 2013 body has not
        "TerminalIMEI": lambda b: b.imei or "",
        "SoftwareVersion": lambda b: b.software_version or "",
    },
    (0x0102, "yezhihao"): {
        "token": lambda b: b.auth_code,
        "imei": lambda b: b.imei,
        "softwareVersion": lambda b: b.software_version,
    },
    (0x8003, "SmallChi"): {
        "OriginalMsgNum": lambda b: b.first_serial,
        "AgainPackageCount": lambda b: len(b.indexes),
        "AgainPackageData": lambda b: list(b"".join(i.to_bytes(2, "big") for i in b.indexes)),
    },
    (0x8003, "cuteLittleDevil"): {
        "OriginalSerialNumber": lambda b: b.first_serial,
        "AgainPackageCount": lambda b: len(b.indexes),
        "AgainPackageList": lambda b: list(b.indexes),
    },
    (0x8003, "yezhihao"): {"responseSerialNo": lambda b: b.first_serial, "id": lambda b: list(b.indexes)},
    (0x8004, "SmallChi"): dict.fromkeys(
        ("Time", "Bodies.Time"), lambda b: b.time.strftime("%Y-%m-%d %H:%M:%S")
    ),
    (0x0201, "SmallChi"): {"Bodies.ReplyMsgNum": lambda b: b.reply_serial},
    (0x0201, "cuteLittleDevil"): {"RespondSerialNumber": lambda b: b.reply_serial},
    (0x0201, "hylexus"): {"flowId": lambda b: b.reply_serial},
    (0x0201, "yezhihao"): {"responseSerialNo": lambda b: b.reply_serial},
    (0x0704, "SmallChi"): {"Bodies.Count": lambda b: len(b.locations)},
    (0x0704, "cuteLittleDevil"): {
        "Num": lambda b: len(b.locations),
        "LocationType": lambda b: b.kind,
        **{
            f"Items[{i}].Len": (lambda i: lambda b: len(encode_body(b.locations[i])))(i)
            for i in range(2)
        },
    },
    (0x0704, "hylexus"): {
        **dict.fromkeys(("count", "itemList.size"), lambda b: len(b.locations)),
        "type": lambda b: b.kind,
    },
    (0x0704, "yezhihao"): {"total": lambda b: len(b.locations), "type": lambda b: b.kind},
}
BODY_KEYS[(0x0005, "SmallChi")] = BODY_KEYS[(0x8003, "SmallChi")]

#: Asserted values no map reaches: (source, key regular expression) → why.
UNMAPPED = {
    ("*", r"Header\..*|messageId|properties|protocolVersion|clientId|serialNo|verified"
          r"|(items\[\d+\]\.)(messageId|properties|protocolVersion|serialNo|verified)"):
        "header fields (test_frame_header checks the ids, serials and phones)",
    ("traccar", r".*"): "traccar Position attributes, derived in traccar's units",
    ("fakeyanss", r".*"): "fakeyanss asserts its own frame struct (check code, body hex)",
    ("hylexus", r"jt808Request\.header\(\)\.messageId\(\)"): "a header field",
    ("SmallChi", r"(Bodies\.)?CustomLocationAttachData\[JT808_(GPS51|SuBiao|YueBiao)_Constants.*"):
        "SmallChi extension items (GPS51 vendor items; SuBiao/YueBiao active-safety items)",
    ("SmallChi", r"jT808LocationAttachImpl0[xX]\w+\.\w+|jT808_0x0200_0x07\..*"):
        "SmallChi's custom-item test classes (vendor items we keep as bytes)",
    ("SmallChi", r"Bodies\.(Basic|Unknown)LocationAttachData\.(Count|ContainsKey\(0x\w+\))"
                 r"|Bodies\.UnknownLocationAttachData\[0x\w+\]"
                 r"|Bodies\.ExceptionLocationAttachOriginalData.*"
                 r"|Bodies\.ErrorRemainPositions.*"):
        "SmallChi's split of items into known, unknown and malformed collections",
    ("SmallChi", r"Bodies\.Position\.CustomLocationAttachData\[JT808_GPS51_Constants.*"):
        "SmallChi GPS51 vendor item (Wi-Fi list)",
    ("cuteLittleDevil", r"addition\[0x(64|65|66|67|70)\]\..*"):
        "go-jt808 active-safety items (0x64-0x67, 0x70)",
    ("yezhihao", r"attributes\.(5\.value|10[0-3]\..*)"):
        "yezhihao's 0x05 tyre list and active-safety items (0x64-0x67)",
}


#: Asserted values that differ from ours, and why: (record id, key) → reason.
VALUE_DIFFERENCES = {
    **{
        ("jt808-0243", f"Bodies.{key}"): "SmallChi pads the 2019 ids (STRING[11], [30], [30])"
        " with leading '0's and asserts its input; we keep the bytes as sent ('000Koike002')"
        for key in ("MakerId", "TerminalModel", "TerminalId")
    },
    ("encoder-0078", "Bodies.Code"): "encode case: the input object has an auth code, but with"
    " result 4 the wire has none",
}


def _unmapped(owner: str, key: str) -> tuple[str, str] | None:
    for (source, pattern) in UNMAPPED:
        if source in ("*", owner) and re.fullmatch(pattern, key):
            return (source, pattern)
    return None


def _getter(r: dict[str, Any], key: str) -> Getter | None:
    """Our getter for one of a record's ``expect`` keys, or None if no map reaches it."""
    msg_id, owner = msg_id_of(r), owner_of(r)
    direct = BODY_KEYS.get((msg_id, owner), {})  # type: ignore[arg-type]
    if key in direct:
        return direct[key]
    for prefix, locate in LOCATION_PATHS.get(msg_id, ()):  # type: ignore[arg-type]
        m = re.match(prefix, key)
        if m is None:
            continue
        rest = key[m.end() :]
        if rest in LOCATION_KEYS.get(owner, {}):
            get = LOCATION_KEYS[owner][rest]
            return lambda b, m=m, get=get, locate=locate: get(locate(b, m))
        for pattern, get in ITEM_KEYS.get(owner, {}).items():
            if re.fullmatch(pattern, rest):
                return lambda b, m=m, get=get, locate=locate: get(locate(b, m))
    return None


#: Records refused by test_frame_body (and those of the same bytes).
REFUSED_HEX = {
    r["hex"]
    for r in DECODABLE
    if r["id"] in BODY_ERRORS or (r.get("expect_error") and r["id"] not in ACCEPTED_ERRORS)
}
CORE = [
    r
    for r in records()
    if r["kind"] in ("frame", "frame_unflagged", "body")
    and msg_id_of(r) in CORE_IDS
    and r["id"] not in NOT_FRAMES
    and r["hex"] not in REFUSED_HEX
]


def _values(r: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The record's asserted literal values, flattened."""
    for key, want in flatten(r.get("expect") or {}).items():
        if is_literal(want) and want is not None:
            yield key, want


def _body(r: dict[str, Any]) -> Any:
    if r["kind"] == "body":
        return decode_body(msg_id_of(r), frame_bytes(r), body_version(r))  # type: ignore[arg-type]
    return decode(frame_data(r)).body


@pytest.mark.parametrize("r", CORE, ids=[r["id"] for r in CORE])
def test_asserted_values(r: dict[str, Any]) -> None:
    """A session or location record (frame or body) decodes to its message class and
    equals every value its source asserts that a key map reaches; every other asserted
    value is listed in UNMAPPED."""
    body = _body(r)
    assert type(body) is MESSAGES[msg_id_of(r)], r["source"]  # type: ignore[index]
    for key, want in _values(r):
        get = _getter(r, key)
        if get is None:
            assert _unmapped(owner_of(r), key), f"{r['id']} {key!r}: neither mapped nor UNMAPPED"
            continue
        if (r["id"], key) in VALUE_DIFFERENCES:
            assert get(body) != want, f"{r['id']} {key} no longer differs: drop it"
            continue
        assert get(body) == want, f"{r['id']} {key}: {r['source']}"


LOCATION_BODIES = [r for r in CORE if r["kind"] == "body" and msg_id_of(r) in (0x0200, 0x0201, 0x0704)]


@pytest.mark.parametrize("r", LOCATION_BODIES, ids=[r["id"] for r in LOCATION_BODIES])
def test_location_body_reencodes(r: dict[str, Any]) -> None:
    """A body-only location record re-encodes to the source's bytes, two's complement
    coordinates included."""
    body = _body(r)
    assert encode_body(body, body_version(r)) == frame_bytes(r), r["source"]


def _checked_and_unmapped() -> tuple[int, int, set[tuple[str, str]]]:
    checked = unmapped = 0
    used = set()
    for r in CORE:
        for key, _ in _values(r):
            if _getter(r, key) is not None:
                checked += 1
            else:
                unmapped += 1
                hit = _unmapped(owner_of(r), key)
                if hit:
                    used.add(hit)
    return checked, unmapped, used


def test_key_maps_are_exact() -> None:
    """Every UNMAPPED entry still matches an asserted value, every mapped key is asserted by
    some record, and every 0x0200 record with literal values has them checked."""
    checked, unmapped, used = _checked_and_unmapped()
    assert set(UNMAPPED) == used, set(UNMAPPED) - used
    asserted = {(msg_id_of(r), owner_of(r), key) for r in CORE for key, _ in _values(r)}
    for (msg_id, owner), keys in BODY_KEYS.items():
        for key in keys:
            assert (msg_id, owner, key) in asserted, (hex(msg_id), owner, key)
    for owner, keys in LOCATION_KEYS.items():
        for key in keys:
            if key != "time":  # hylexus asserts no time; kept for the map's shape
                assert any(o == owner and k.endswith(key) for _, o, k in asserted), (owner, key)
    for owner, patterns in ITEM_KEYS.items():
        for pattern in patterns:
            assert any(
                o == owner and re.search(pattern + "$", k) for _, o, k in asserted
            ), (owner, pattern)
    keys = {(r["id"], key) for r in CORE for key, _ in _values(r) if _getter(r, key)}
    assert set(VALUE_DIFFERENCES) <= keys
    # Mapping more keys changes these figures: update them (and the UNMAPPED entries).
    assert (checked, unmapped) == (947, 843)


# -- two's complement coordinates ---------------------------------------------------------

TWOS_COMPLEMENT = [r for r in records() if "negative_lat_lng_twos_complement" in r.get("flags", ())]


def test_twos_complement_records() -> None:
    """The corpus has twelve SmallChi records (eight distinct bodies) whose south/west
    degrees are two's complement DWORDs, with and without the status bits."""
    assert len(TWOS_COMPLEMENT) == 12
    assert len({r["hex"] for r in TWOS_COMPLEMENT}) == 8
    assert {owner_of(r) for r in TWOS_COMPLEMENT} == {"SmallChi"}


@pytest.mark.parametrize("r", TWOS_COMPLEMENT, ids=[r["id"] for r in TWOS_COMPLEMENT])
def test_twos_complement_degrees(r: dict[str, Any]) -> None:
    """A two's complement latitude/longitude reads as the signed degrees the unit meant,
    whatever the status bits say, the same through the fast path and the construct
    reference, and both write the unit's bytes back."""
    data = frame_bytes(r)
    loc = fast.decode_location(data)
    assert loc == decode_body_reference(0x0200, data)
    assert round(loc.latitude * 1e6) == r["expect"]["Lat"]
    assert round(loc.longitude * 1e6) == r["expect"]["Lng"]
    assert -90 <= loc.latitude <= 90 and -180 <= loc.longitude <= 180
    assert fast.encode_location(loc) == encode_body_reference(loc) == data


def test_twos_complement_in_decode_json() -> None:
    """``cmsv6 decode`` prints two's complement coordinates as signed degrees."""
    body = bytes.fromhex("0000000118000000ff4580f2f81b0ee40028003c0000180715101010")
    frame = build_frame(Header(0x0200, "012345678901", 1), body)
    out = json.loads(json.dumps(message_json(decode(frame))))
    assert out["body"]["latitude"] == -12.222222
    assert out["body"]["longitude"] == -132.444444
    assert out["body"]["twos_complement"] == STATUS_SOUTH | STATUS_WEST
    plain = message_json(decode(build_frame(Header(0x0001, "012345678901", 2), bytes(5))))
    assert plain["body"] == {"reply_serial": 0, "reply_id": "0x0000", "result": 0}  # no empty rest


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_status_bits_sign_the_degrees(path: str) -> None:
    """Every corpus 0x0200 body written in the standard form is south (west) exactly when its
    status has the south (west) bit, through both decoders."""
    decoder = fast.decode_location if path == "fast" else lambda d: decode_body_reference(0x0200, d)
    signed = 0
    for r in records():
        if msg_id_of(r) == 0x0200 and r["kind"] == "body":
            loc = decoder(frame_bytes(r))
            for bit, value in ((STATUS_SOUTH, loc.latitude), (STATUS_WEST, loc.longitude)):
                if value and not loc.twos_complement & bit:
                    assert (value < 0) == bool(loc.status & bit), r["id"]
                    signed += value < 0
    assert signed >= 4


def test_corpus_locations_fast_equals_reference() -> None:
    """Every corpus 0x0200 body decodes and encodes the same through the fast path and the
    construct reference."""
    n = 0
    for r in records():
        if msg_id_of(r) != 0x0200 or r["kind"] not in ("frame", "frame_unflagged", "body"):
            continue
        if r["kind"] == "body":
            data = frame_bytes(r)
        else:
            frames = [x for x in Deframer().feed(frame_data(r)) if isinstance(x, Frame)]
            if not frames or _is_piece(frames[0]):
                continue
            data = frames[0].body
        try:
            want = decode_body_reference(0x0200, data)
        except CodecError:
            with pytest.raises(CodecError):
                decode_body(0x0200, data)
            continue
        loc = fast.decode_location(data)
        assert loc == want, r["id"]
        assert fast.encode_location(loc) == encode_body_reference(loc), r["id"]
        n += 1
    assert n > 100


# -- nothing lost -------------------------------------------------------------------------

#: Messages whose decoding drops bytes after the end of their layout (construct's Struct
#: stops there). The test below fails for an id that starts keeping them.
DROPS_TRAILING_BYTES = {
    0x0002, 0x0003, 0x0004, 0x0005, 0x0102, 0x0108, 0x0301, 0x0302, 0x0303, 0x0608, 0x0701,
    0x0704, 0x0705, 0x0800, 0x0802, 0x0805, 0x0901, 0x0A00, 0x1003, 0x1005, 0x1205, 0x1206,
    0x1211, 0x1212, 0x8003, 0x8004, 0x8100, 0x8104, 0x8106, 0x8107, 0x8108, 0x8201, 0x8202,
    0x8203, 0x8204, 0x8301, 0x8303, 0x8304, 0x8401, 0x8500, 0x8600, 0x8601, 0x8602, 0x8603,
    0x8604, 0x8605, 0x8606, 0x8607, 0x8608, 0x8800, 0x8801, 0x8802, 0x8803, 0x8804, 0x8805,
    0x8A00, 0x9003, 0x9101, 0x9102, 0x9105, 0x9201, 0x9202, 0x9205, 0x9206, 0x9207, 0x9212,
    0x9301, 0x9302,
}  # fmt: skip


def _trailing_outcomes() -> dict[int, set[str]]:
    """For each message id: what appending vendor bytes to its corpus bodies does."""
    out: dict[int, set[str]] = {}
    for r in records():
        if r["kind"] not in ("frame", "frame_unflagged", "body") or r["id"] in NOT_FRAMES:
            continue
        if r["kind"] == "body":
            msg_id, version, data = msg_id_of(r), body_version(r), frame_bytes(r)
        else:
            frames = [x for x in Deframer().feed(frame_data(r)) if isinstance(x, Frame)]
            if not frames or _is_piece(frames[0]) or frames[0].header.encryption == ENCRYPTION_RSA:
                continue
            h = frames[0].header
            msg_id, version, data = h.msg_id, h.version, frames[0].body
        if msg_id not in MESSAGES:
            continue
        try:
            if encode_body(decode_body(msg_id, data, version), version) != data:  # type: ignore[arg-type]
                continue
        except CodecError:
            continue
        longer = data + b"\xaa\xbb"
        try:
            again = encode_body(decode_body(msg_id, longer, version), version)  # type: ignore[arg-type]
        except CodecError:
            outcome = "refused"
        else:
            outcome = "kept" if again == longer else "lost"
        out.setdefault(msg_id, set()).add(outcome)  # type: ignore[arg-type]
    return out


def test_trailing_bytes_are_kept_or_listed() -> None:
    """Vendor bytes after a body are kept (``rest``) or the body is refused, except for the
    messages listed in DROPS_TRAILING_BYTES (and README says so); 0x0200, 0x0201, 0x0001,
    0x8001 and 0x0702 keep them."""
    outcomes = _trailing_outcomes()
    lossy = {m for m, o in outcomes.items() if "lost" in o}
    assert lossy == DROPS_TRAILING_BYTES, (
        sorted(hex(m) for m in lossy - DROPS_TRAILING_BYTES),
        sorted(hex(m) for m in DROPS_TRAILING_BYTES - lossy),
    )
    for msg_id in (0x0200, 0x0201, 0x0001, 0x8001, 0x0702):
        assert "kept" in outcomes[msg_id] and "lost" not in outcomes[msg_id], hex(msg_id)


def test_vendor_bytes_after_0x0001_survive() -> None:
    """jt808-0470: SmallChi's 0x0001 with two bytes after the result re-encodes byte for
    byte, the same through the fast path and the reference."""
    data = bytes.fromhex("03e800020000a8")
    body = decode_body(0x0001, data)
    assert body == decode_body_reference(0x0001, data)
    assert (body.reply_serial, body.reply_id, body.result, body.rest) == (1000, 2, 0, b"\x00\xa8")
    assert encode_body(body) == encode_body_reference(body) == data
    platform = decode_body(0x8001, data)
    assert platform == decode_body_reference(0x8001, data) and platform.rest == b"\x00\xa8"
    assert encode_body(platform) == encode_body_reference(platform) == data
