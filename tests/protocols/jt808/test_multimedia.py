"""Multimedia and pass-through bodies (cmsv6/protocols/jt808/messages/multimedia.py): round trips,
the 2011 layouts, strict encoding, tolerance, and the conformance corpus.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.messages.location import Location
from cmsv6.protocols.jt808.messages.multimedia import (
    EVENT_DOOR_OPEN,
    EVENT_PLATFORM,
    EVENT_TIMED,
    FORMAT_JPEG,
    FORMAT_WAV,
    FORMAT_WMV,
    MEDIA_AUDIO,
    MEDIA_IMAGE,
    MEDIA_VIDEO,
    PASSTHROUGH_IC_CARD,
    PASSTHROUGH_SERIAL1,
    PHOTO_FAILED,
    PHOTO_OK,
    SAMPLE_8K,
    SHOOT_VIDEO,
    AudioRecord,
    CompressedData,
    MultimediaData,
    MultimediaEvent,
    MultimediaUploadResponse,
    PassThroughDown,
    PassThroughUp,
    StoredMediaItem,
    StoredMediaRetrieve,
    StoredMediaSearch,
    StoredMediaSearchResponse,
    StoredMediaUpload,
    TakePhoto,
    TakePhotoResponse,
)
from cmsv6.protocols.jt808.model import MESSAGES, RawBody
from tests.support.corpus import (
    Keys,
    check_corpus_record,
    check_expect,
    corpus_records,
    frame_data,
    record_body,
    same,
    when,
)

T1 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=BEIJING)
T2 = datetime(2024, 1, 2, 4, 5, 6, tzinfo=BEIJING)

#: A fixed, moving position (status bit 1: fixed).
LOC = Location(
    alarm=0,
    status=2,
    latitude=22.543096,
    longitude=114.057865,
    altitude=30,
    speed=36.5,
    direction=90,
    time=T1,
)
LOC_HEX = "00000000" "00000002" "0157faf8" "06cc6289" "001e" "016d" "005a" "240102030405"

#: South-west (status bits 2 and 3 set, degrees negative).
LOC_SW = Location(
    alarm=1,
    status=2 | 4 | 8,
    latitude=-33.868150,
    longitude=-151.209300,
    altitude=-5,
    speed=0.0,
    direction=359,
    time=None,
)
LOC_SW_HEX = "00000001" "0000000e" "0204c976" "09034554" "fffb" "0000" "0167" "000000000000"

JPEG = b"\xff\xd8" + bytes(range(40)) + b"\xff\xd9"

ROUND_TRIPS: list[tuple[str, Any, str]] = [
    (
        "0800",
        MultimediaEvent(0x01020304, MEDIA_VIDEO, FORMAT_WMV, EVENT_DOOR_OPEN, 3),
        "01020304" "02" "04" "04" "03",
    ),
    (
        "0801",
        MultimediaData(1, MEDIA_IMAGE, FORMAT_JPEG, EVENT_TIMED, 1, LOC, JPEG),
        "00000001" "00" "00" "01" "01" + LOC_HEX + JPEG.hex(),
    ),
    (
        "0801-empty-data",
        MultimediaData(2, MEDIA_AUDIO, FORMAT_WAV, EVENT_PLATFORM, 0, LOC_SW),
        "00000002" "01" "03" "00" "00" + LOC_SW_HEX,
    ),
    (
        "0801-2011",  # no location: the JPEG starts right after the head
        MultimediaData(3, MEDIA_IMAGE, FORMAT_JPEG, EVENT_PLATFORM, 2, None, JPEG),
        "00000003" "00" "00" "00" "02" + JPEG.hex(),
    ),
    (
        "0801-2011-short",  # fewer than 28 bytes after the head cannot be a location
        MultimediaData(4, MEDIA_AUDIO, FORMAT_WAV, EVENT_PLATFORM, 2, None, b"RIFF"),
        "00000004" "01" "03" "00" "02" "52494646",
    ),
    (
        "8800",
        MultimediaUploadResponse(7, (1, 3, 0x0105)),
        "00000007" "03" "0001" "0003" "0105",
    ),
    ("8800-all-received", MultimediaUploadResponse(7), "00000007"),
    (
        "8801-photos",
        TakePhoto(1, 3, 10, 0, 1, 5, 128, 64, 64, 128),
        "01" "0003" "000a" "00" "01" "05" "80" "40" "40" "80",
    ),
    (
        "8801-video",
        TakePhoto(2, SHOOT_VIDEO, 30, 1, 3, 10, 255, 127, 127, 255),
        "02" "ffff" "001e" "01" "03" "0a" "ff" "7f" "7f" "ff",
    ),
    (
        "0805",
        TakePhotoResponse(0x1234, PHOTO_OK, (1, 0x01020304)),
        "1234" "00" "0002" "00000001" "01020304",
    ),
    ("0805-failed", TakePhotoResponse(0x1234, PHOTO_FAILED), "1234" "01" "0000"),
    (
        "8802",
        StoredMediaSearch(MEDIA_IMAGE, 1, EVENT_PLATFORM, T1, T2),
        "00" "01" "00" "240102030405" "240102040506",
    ),
    (
        "8802-any-time",
        StoredMediaSearch(MEDIA_VIDEO, 0, EVENT_TIMED, None, None),
        "02" "00" "01" "000000000000" "000000000000",
    ),
    (
        "0802",
        StoredMediaSearchResponse(
            0x0102,
            [
                StoredMediaItem(9, MEDIA_IMAGE, 1, EVENT_TIMED, LOC),
                StoredMediaItem(10, MEDIA_VIDEO, 2, EVENT_PLATFORM, LOC_SW),
            ],
        ),
        "0102" "0002"
        "00000009" "00" "01" "01" + LOC_HEX + "0000000a" "02" "02" "00" + LOC_SW_HEX,
    ),
    (
        "0802-2011",  # items without a multimedia id
        StoredMediaSearchResponse(0x0102, [StoredMediaItem(None, MEDIA_IMAGE, 1, 1, LOC)]),
        "0102" "0001" "00" "01" "01" + LOC_HEX,
    ),
    ("0802-none", StoredMediaSearchResponse(0x0102, []), "0102" "0000"),
    (
        "8803",
        StoredMediaUpload(MEDIA_IMAGE, 1, EVENT_PLATFORM, T1, T2, 1),
        "00" "01" "00" "240102030405" "240102040506" "01",
    ),
    ("8804", AudioRecord(1, 60, 0, SAMPLE_8K), "01" "003c" "00" "00"),
    ("8805", StoredMediaRetrieve(0x0A0B0C0D, 1), "0a0b0c0d" "01"),
    ("0900", PassThroughUp(PASSTHROUGH_SERIAL1, b"hello"), "41" "68656c6c6f"),
    ("0900-empty", PassThroughUp(0xF0), "f0"),
    ("8900", PassThroughDown(PASSTHROUGH_IC_CARD, b"\x00\x01"), "0b" "0001"),
    ("0901", CompressedData(b"abc"), "00000003" "616263"),
]


@pytest.mark.parametrize("version", [2013, 2019])
@pytest.mark.parametrize(
    "body, hex_", [c[1:] for c in ROUND_TRIPS], ids=[c[0] for c in ROUND_TRIPS]
)
def test_round_trip(body: Any, hex_: str, version: int) -> None:
    """Each body builds to its bytes and those bytes parse back to it, in either header
    layout (none of these formats changed in 2019)."""
    data = bytes.fromhex(hex_)
    assert encode_body(body, version) == data
    assert decode_body(type(body).MSG_ID, data, version) == body


def test_registered() -> None:
    """Each multimedia and pass-through id decodes through the class tested here."""
    classes = {type(c[1]) for c in ROUND_TRIPS}
    ids = {0x0800, 0x0801, 0x8800, 0x8801, 0x0805, 0x8802, 0x0802, 0x8803, 0x8804, 0x8805,
           0x0900, 0x8900, 0x0901}  # fmt: skip
    assert {msg_id: MESSAGES[msg_id] for msg_id in ids} == {c.MSG_ID: c for c in classes}


def test_0801_location_has_no_extras() -> None:
    """0x0801 carries the 28-byte basic location: bytes after it are media data, not items."""
    extras_like = bytes.fromhex("01040000000a")  # would be item 0x01 (mileage) in 0x0200
    body = decode_body(0x0801, bytes.fromhex("00000001000000" "01" + LOC_HEX) + extras_like)
    assert body.location == LOC
    assert body.data == extras_like


def test_0801_refuses_location_extras() -> None:
    """Encoding a 0x0801 whose location has additional items fails rather than drop them."""
    loc = Location(0, 2, 1.0, 2.0, 0, 0.0, 0, T1, extras={0x01: 10})
    with pytest.raises(CodecError):
        encode_body(MultimediaData(1, 0, 0, 0, 1, loc, b""))


def test_0801_jpeg_after_location_is_2013() -> None:
    """A 2013 body whose location starts like a JPEG is still read as 2013 when the JPEG
    starts after the location."""
    loc = Location(0xFFD80000, 2, 1.0, 2.0, 0, 0.0, 0, T1)
    body = MultimediaData(1, MEDIA_IMAGE, FORMAT_JPEG, 0, 1, loc, JPEG)
    assert decode_body(0x0801, encode_body(body)) == body


def test_0802_mixed_layouts_refused() -> None:
    """0x0802 items are all 2013 (with media id) or all 2011; a mix cannot be encoded."""
    body = StoredMediaSearchResponse(
        1, [StoredMediaItem(None, 0, 1, 1, LOC), StoredMediaItem(5, 0, 1, 1, LOC)]
    )
    with pytest.raises(CodecError):
        encode_body(body)


def test_0805_result_only() -> None:
    """A 0x0805 that ends after the result (some units on failure) reads as no ids, and is
    written back with the count the standard requires."""
    body = decode_body(0x0805, bytes.fromhex("123401"))
    assert body == TakePhotoResponse(0x1234, PHOTO_FAILED, ())
    assert encode_body(body) == bytes.fromhex("1234010000")


@pytest.mark.parametrize(
    "body",
    [
        MultimediaEvent(1 << 32, 0, 0, 0, 1),
        MultimediaUploadResponse(1, [0x10000]),
        MultimediaUploadResponse(1, range(256)),
        TakePhoto(256, 1, 0, 0, 1, 1, 1, 1, 1, 1),
        TakePhotoResponse(1, 0, [-1]),
        StoredMediaSearch(0, 1, 0, datetime(1999, 1, 1, tzinfo=BEIJING), None),
        PassThroughUp(0x100, b""),
    ],
    ids=repr,
)
def test_strict_encoding(body: Any) -> None:
    """Values that do not fit their fields raise CodecError, never write wrong bytes."""
    with pytest.raises(CodecError):
        encode_body(body)


def test_compressed_data_uncompressed() -> None:
    """0x0901 data is GZIP; ``uncompressed`` inflates it and rejects anything else."""
    gzipped = "1f8b08000000000000032bce4dccc949cec82ca6320d0027f897e258000000"
    body = decode_body(0x0901, bytes.fromhex("0000001f" + gzipped))
    assert body.uncompressed() == b"smallchi" * 11
    with pytest.raises(CodecError):
        CompressedData(b"not gzip").uncompressed()


# -- tolerance -----------------------------------------------------------------------------

#: Bodies that have a fixed size: every shorter prefix must be refused.
FIXED_SIZE = {"0800", "8801-photos", "8802", "8803", "8804", "8805", "0901"}


@pytest.mark.parametrize("name, body, hex_", ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_truncated(name: str, body: Any, hex_: str) -> None:
    """A truncated body decodes to something or raises CodecError, nothing else; a
    fixed-size one always raises."""
    data = bytes.fromhex(hex_)
    for n in range(len(data)):
        try:
            decode_body(type(body).MSG_ID, data[:n])
        except CodecError:
            continue
        assert name not in FIXED_SIZE, f"{n}-byte prefix decoded"


MULTIMEDIA_IDS = sorted({type(c[1]).MSG_ID for c in ROUND_TRIPS})


@settings(max_examples=300, deadline=None)
@given(
    msg_id=st.sampled_from(MULTIMEDIA_IDS),
    data=st.binary(max_size=200),
    version=st.sampled_from([2013, 2019]),
)
def test_random_bytes(msg_id: int, data: bytes, version: int) -> None:
    """Random bytes given to any of these decoders raise CodecError or decode, nothing else;
    what decodes re-encodes without error unless a value is unrepresentable."""
    try:
        body = decode_body(msg_id, data, version)
    except CodecError:
        return
    try:
        encode_body(body, version)
    except CodecError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    media_id=st.integers(0, 0xFFFFFFFF),
    media_format=st.integers(0, 255),
    alarm=st.integers(0, 0x7FFFFFFF),
    data=st.binary(max_size=300),
)
def test_0801_property(media_id: int, media_format: int, alarm: int, data: bytes) -> None:
    """Any 2013 0x0801 with a plausible alarm word reads back as built, whatever its data."""
    loc = Location(alarm, 2, 1.5, 2.5, 3, 4.5, 6, T1)
    body = MultimediaData(media_id, MEDIA_IMAGE, media_format, 0, 1, loc, data)
    assert decode_body(0x0801, encode_body(body)) == body


# -- conformance corpus ---------------------------------------------------------------------


def _degrees(value: float) -> int:
    return round(abs(value) * 1e6)


#: Location in the sources' raw units (millionths of a degree, 1/10 km/h).
LOCATION_KEYS: Keys = {
    **same(lambda loc: _degrees(loc.latitude), "Lat", "latitude", "Latitude"),
    **same(lambda loc: _degrees(loc.longitude), "Lng", "longitude", "Longitude"),
    **same(lambda loc: round(loc.speed * 10), "Speed", "speed"),
    **same(lambda loc: loc.altitude, "Altitude", "altitude"),
    **same(lambda loc: loc.direction, "Direction", "direction"),
    **same(lambda loc: loc.alarm, "AlarmFlag", "warnBit", "alarmFlag", "AlarmSign"),
    **same(lambda loc: loc.status, "StatusFlag", "statusBit", "status", "StatusSign"),
    **same(lambda loc: when(loc.time), "GPSTime", "deviceTime", "DateTime", "time"),
}

_HEAD_KEYS: Keys = {
    **same(lambda b: b.media_id, "MultimediaId", "MultimediaID", "id", "multimediaDataID", "multimediaId"),
    **same(lambda b: b.media_type, "MultimediaType", "type", "multimediaType"),
    **same(lambda b: b.media_format, "MultimediaCodingFormat", "MultimediaFormatEncode", "format", "multimediaFormatCode"),
    **same(lambda b: b.event, "EventItemCoding", "EventItemEncode", "event", "eventItemCode"),
    **same(lambda b: b.channel, "ChannelId", "ChannelID", "channelId"),
}  # fmt: skip

_TIMES: Keys = {
    **same(lambda b: b.media_type, "MultimediaType", "type", "multimediaType"),
    **same(lambda b: b.channel, "ChannelId", "channelId"),
    **same(lambda b: b.event, "EventItemCoding", "event", "eventItemCode"),
    **same(lambda b: when(b.start), "StartTime", "startTime"),
    **same(lambda b: when(b.end), "EndTime", "endTime"),
}

#: For each class: source key → our value (None: known, not comparable).
MULTIMEDIA_KEYS: dict[type, Keys] = {
    Location: LOCATION_KEYS,
    MultimediaEvent: _HEAD_KEYS,
    MultimediaData: {
        **_HEAD_KEYS,
        **same(lambda b: b.location, "Position", "T0x0200LocationItem", "location"),
        **same(lambda b: list(b.data), "MultimediaDataPackage", "MultimediaPackage", "mediaData"),
        "packet": lambda b: b.data.hex(),
    },
    MultimediaUploadResponse: {
        **same(lambda b: b.media_id, "MultimediaId", "MultimediaID", "mediaId", "multimediaId"),
        # SmallChi and xtream-codec list the id bytes; the standard's ids are WORDs.
        **same(
            lambda b: list(b"".join(i.to_bytes(2, "big") for i in b.retransmit_ids)),
            "RetransmitPackageIds",
            "retransmittedPackageIdList",
        ),
        "retransmittedPackageIdList.length": lambda b: 2 * len(b.retransmit_ids),
        **same(lambda b: list(b.retransmit_ids), "AgainPackageList", "id"),
        **same(
            lambda b: len(b.retransmit_ids),
            "RetransmitPackageCount",
            "AgainPackageCount",
            "retransmittedPackageCount",
        ),
    },
    TakePhoto: {
        **same(lambda b: b.channel, "ChannelId", "ChannelID", "channelId", "chanelId"),
        **same(lambda b: b.command, "ShootingCommand", "ShootCommand", "command"),
        **same(lambda b: b.interval, "VideoTime", "PhotoIntervalOrVideoTime", "time"),
        **same(lambda b: b.save, "SaveFlag", "save", "saveFlag"),
        **same(lambda b: b.resolution, "Resolution", "resolution"),
        **same(lambda b: b.quality, "VideoQuality", "quality"),
        **same(lambda b: b.brightness, "Lighting", "Intensity", "brightness"),
        **same(lambda b: b.contrast, "Contrast", "contrast", "contrastRate"),
        **same(lambda b: b.saturation, "Saturability", "Saturation", "saturation"),
        **same(lambda b: b.chroma, "Chroma", "chroma"),
    },
    TakePhotoResponse: {
        **same(lambda b: b.reply_serial, "ReplyMsgNum", "RespondSerialNumber", "responseSerialNo", "flowId"),
        **same(lambda b: b.result, "Result", "result"),
        **same(lambda b: list(b.media_ids), "MultimediaIds", "MultimediaIDList", "id"),
        **same(lambda b: len(b.media_ids), "MultimediaIdCount", "MultimediaIDNumber", "multimediaIdCount"),
        "multimediaIdList.first.asDword()": lambda b: b.media_ids[0],
        "multimediaIdList.last.asDword()": lambda b: b.media_ids[-1],
    },
    StoredMediaSearch: _TIMES,
    StoredMediaUpload: {**_TIMES, **same(lambda b: b.delete, "MultimediaDeleted", "delete", "deleteFlag")},
    StoredMediaSearchResponse: {
        **same(lambda b: b.reply_serial, "MsgNum", "responseSerialNo", "flowId"),
        **same(lambda b: b.items, "MultimediaSearchItems", "items", "itemList"),
        **same(lambda b: len(b.items), "MultimediaItemCount", "multimediaDataItemCount"),
    },
    StoredMediaItem: {
        **_HEAD_KEYS,
        **same(lambda b: b.location, "Position", "location"),
    },
    AudioRecord: {
        **same(lambda b: b.command, "RecordCmd", "command", "recordingCommand"),
        **same(lambda b: b.duration, "RecordTime", "time", "recordingDuration"),
        **same(lambda b: b.save, "RecordSave", "save", "saveFlag"),
        **same(lambda b: b.sample_rate, "AudioSampleRate", "audioSamplingRate", "audioSampleRate"),
    },
    StoredMediaRetrieve: {
        **same(lambda b: b.media_id, "MultimediaId", "id", "multimediaId"),
        **same(lambda b: b.delete, "MultimediaDeleted", "delete", "deleteFlag"),
    },
    PassThroughUp: {
        **same(lambda b: b.kind, "PassthroughType", "key"),
        "message": lambda b: b,  # yezhihao: {"key": type, "value": its own decoding}
        "value": None,
        **same(
            lambda b: b.data.decode("latin-1"),
            "JT808_0x0900_BodyBase.PassthroughContent",
            "jT808_0x0900_0x83.PassthroughContent",
        ),
    },
    PassThroughDown: {"PassthroughType": lambda b: b.kind},
    CompressedData: {
        "body": lambda b: list(b.data),
        "UnCompressMessageLength": lambda b: len(b.uncompressed()),
    },
}  # fmt: skip


#: Corpus records whose source's convention differs from the standard.
_ZERO_COUNT = (
    "SmallChi's 2011 test writes a count of 0 when every 0x0801 packet arrived; the "
    "standard leaves the count out (we read both, and write the standard)"
)
KNOWN_DIFFERENCES = {
    "encoder-0210": _ZERO_COUNT,
    "encoder-0211": _ZERO_COUNT,
    "encoder-0212": _ZERO_COUNT,
}

#: Corpus records whose body cannot be decoded, and why.
#: (jt808-0535, go-jt808's RSA-encryption test, is ciphertext: the codec keeps it as a
#: RawBody, tested in test_conformance.py.)
BODY_ERRORS: dict[str, str] = {}

CORPUS = [r for r in corpus_records(MULTIMEDIA_IDS) if r["id"] != "jt808-0535"]


@pytest.mark.parametrize("r", CORPUS, ids=[r["id"] for r in CORPUS])
def test_corpus(r: dict[str, Any]) -> None:
    """Every corpus frame and body of these messages decodes, re-encodes to the source's
    bytes (or differs only as KNOWN_DIFFERENCES says) and matches the source's values."""
    check_corpus_record(r, MULTIMEDIA_KEYS, KNOWN_DIFFERENCES, BODY_ERRORS)


def test_corpus_covers_every_message() -> None:
    """The corpus has records for every multimedia and pass-through id (so the parametrized
    test above is not vacuous), and they assert values we check."""
    assert {int(r["msg_id"], 16) for r in CORPUS} == set(MULTIMEDIA_IDS)
    checked = 0
    for r in CORPUS:
        if r["id"] in BODY_ERRORS:
            continue
        body = record_body(r)
        if not isinstance(body, RawBody):
            checked += check_expect(r, body, MULTIMEDIA_KEYS)
    assert checked > 450


def test_corpus_subpackages_reassemble() -> None:
    """0x0801 sub-package pieces of one message in the corpus (bad check codes and all)
    concatenate to a body that decodes to a whole JPEG."""
    pieces: dict[tuple[str, int], dict[int, bytes]] = defaultdict(dict)
    for r in CORPUS:
        if r["kind"] == "body" or r["id"] in BODY_ERRORS:
            continue
        frame = parse_frame(frame_data(r))
        p = frame.header.packet
        if frame.header.msg_id == 0x0801 and p is not None and p.total > 1 and frame.length_ok:
            pieces[(frame.header.phone, p.total)].setdefault(p.index, frame.body)
    whole = [(k, v) for k, v in pieces.items() if len(v) == k[1]]
    assert whole, "the corpus has a complete sub-packaged 0x0801"
    for (phone, total), parts in whole:
        body = decode_body(0x0801, b"".join(parts[i] for i in range(1, total + 1)))
        assert isinstance(body, MultimediaData)
        assert body.location is not None and body.location.time is not None
        assert body.data[:2] == b"\xff\xd8" and body.data[-2:] == b"\xff\xd9", phone
