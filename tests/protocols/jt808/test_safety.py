"""Active-safety attachment messages (cmsv6/protocols/jt808/messages/safety.py): round trips in each
provincial variant, variant detection, strict encoding, tolerance, and the corpus."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.location import AlarmIdentification, AlarmIdentification30
from cmsv6.protocols.jt808.messages.safety import (
    FILE_PICTURE,
    FILE_VIDEO,
    INFO_NORMAL,
    INFO_RESENT,
    UPLOAD_COMPLETE,
    UPLOAD_RETRANSMIT,
    AlarmAttachmentInfo,
    AlarmAttachmentUploadRequest,
    AlarmIdentificationGD,
    AlarmIdentificationHLJ,
    AttachmentFile,
    DataBlock,
    FileInfo,
    FileUploadComplete,
    FileUploadCompleteResponse,
)
from cmsv6.protocols.jt808.model import RawBody
from tests.support.corpus import (
    Keys,
    check_corpus_record,
    check_expect,
    corpus_records,
    record_body,
    same,
    when,
)

T1 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=BEIJING)

TID = "T123456"
TID7 = "54313233343536"
TID30 = TID7 + "00" * 23
TIME = "240102030405"

JS = AlarmIdentification(TID, T1, 1, 2, 0)
JS_HEX = TID7 + TIME + "01" "02" "00"
GD = AlarmIdentificationGD(TID, T1, 1, 2, 0x0102)
GD_HEX = TID30 + TIME + "01" "02" "0102"
HLJ = AlarmIdentificationHLJ(TID, T1, 1, 2)
HLJ_HEX = TID30 + TIME + "01" "02"
SC = AlarmIdentification30(TID, T1, 1, 2, 7)
SC_HEX = TID30 + TIME + "01" "02" "07"

ALARM_NO = "A1"
ALARM_NO_HEX = "4131" + "00" * 30

FILES = (AttachmentFile("a.jpg", 1234), AttachmentFile("b.mp4", 0x10000))
FILES_HEX = "02" "05" "612e6a7067" "000004d2" "05" "622e6d7034" "00010000"

IP_HEX = "0b" "3139322e3136382e312e31" "1388" "1389"  # 192.168.1.1, 5000, 5001

ROUND_TRIPS: list[tuple[str, Any, str]] = [
    (
        "1210-js",
        AlarmAttachmentInfo(TID, JS, ALARM_NO, INFO_NORMAL, FILES),
        TID7 + JS_HEX + ALARM_NO_HEX + "00" + FILES_HEX,
    ),
    (
        "1210-js-no-files",
        AlarmAttachmentInfo(TID, JS, ALARM_NO, INFO_RESENT, ()),
        TID7 + JS_HEX + ALARM_NO_HEX + "01" "00",
    ),
    (
        "1210-gd",
        AlarmAttachmentInfo(TID, GD, ALARM_NO, INFO_NORMAL, FILES),
        TID30 + GD_HEX + ALARM_NO_HEX + "00" + FILES_HEX,
    ),
    (
        "1210-hlj",  # no terminal id before the identification
        AlarmAttachmentInfo(None, HLJ, ALARM_NO, INFO_NORMAL, FILES),
        HLJ_HEX + ALARM_NO_HEX + "00" + FILES_HEX,
    ),
    (
        "1210-sc",
        AlarmAttachmentInfo(TID, SC, ALARM_NO, INFO_NORMAL, FILES),
        TID30 + SC_HEX + ALARM_NO_HEX + "00" + FILES_HEX,
    ),
    (
        "1211",
        FileInfo("a.jpg", FILE_PICTURE, 1234),
        "05" "612e6a7067" "00" "000004d2",
    ),
    (
        "1212",
        FileUploadComplete("b.mp4", FILE_VIDEO, 0x10000),
        "05" "622e6d7034" "02" "00010000",
    ),
    (
        "9208-js",
        AlarmAttachmentUploadRequest("192.168.1.1", 5000, 5001, JS, ALARM_NO),
        IP_HEX + JS_HEX + ALARM_NO_HEX + "00" * 16,
    ),
    (
        "9208-gd-reserved",  # reserved bytes kept as sent
        AlarmAttachmentUploadRequest("192.168.1.1", 5000, 5001, GD, ALARM_NO, b"0" * 16),
        IP_HEX + GD_HEX + ALARM_NO_HEX + "30" * 16,
    ),
    (
        "9208-hlj",
        AlarmAttachmentUploadRequest("192.168.1.1", 5000, 5001, HLJ, ALARM_NO),
        IP_HEX + HLJ_HEX + ALARM_NO_HEX + "00" * 16,
    ),
    (
        "9208-sc",
        AlarmAttachmentUploadRequest("192.168.1.1", 5000, 5001, SC, ALARM_NO),
        IP_HEX + SC_HEX + ALARM_NO_HEX + "00" * 16,
    ),
    (
        "9212-retransmit",
        FileUploadCompleteResponse(
            "a.jpg", FILE_PICTURE, UPLOAD_RETRANSMIT, (DataBlock(0, 1024), DataBlock(4096, 512))
        ),
        "05" "612e6a7067" "00" "01" "02" "00000000" "00000400" "00001000" "00000200",
    ),
    (
        "9212-complete",
        FileUploadCompleteResponse("a.jpg", FILE_PICTURE, UPLOAD_COMPLETE),
        "05" "612e6a7067" "00" "00" "00",
    ),
]


@pytest.mark.parametrize("version", [2013, 2019])
@pytest.mark.parametrize(
    "body, hex_", [c[1:] for c in ROUND_TRIPS], ids=[c[0] for c in ROUND_TRIPS]
)
def test_round_trip(body: Any, hex_: str, version: int) -> None:
    """Each body builds to its bytes and parses back to it, whichever header layout it came
    in (the variant is in the body, not the header)."""
    data = bytes.fromhex(hex_)
    assert encode_body(body, version) == data
    assert decode_body(type(body).MSG_ID, data, version) == body


def test_plausible_variant_preferred() -> None:
    """Where two variants fit the length, the more plausible reading wins: this
    Heilongjiang body also reads exactly as a Jiangsu one (whose alarm time would fall in
    the zero padding of the 30-byte id), and is read as Heilongjiang."""
    # Alarm number bytes 18 and 19 become the Jiangsu reading's file count (1) and file
    # name length (10), so that reading ends exactly at the end of the body.
    alarm_number = "0" * 18 + "\x01\x0a" + "0" * 12
    body = AlarmAttachmentInfo(None, HLJ, alarm_number, INFO_NORMAL, ())
    data = encode_body(body)
    js_layout = AlarmAttachmentInfo.FORMAT.layouts[AlarmIdentification]
    as_js = js_layout.parse(data)
    assert len(js_layout.build(as_js)) == len(data), "the Jiangsu reading uses every byte"
    assert as_js.identification.time is None and len(as_js.files) == 1
    assert decode_body(0x1210, data) == body


@pytest.mark.parametrize("msg_id, hex_", [
    (0x1210, TID7 + JS_HEX + ALARM_NO_HEX + "00" + FILES_HEX + "ffff"),
    (0x9208, IP_HEX + JS_HEX + ALARM_NO_HEX + "00" * 17),
])  # fmt: skip
def test_no_variant_fits(msg_id: int, hex_: str) -> None:
    """A body that no variant accounts for exactly (here: two bytes after a national one)
    is refused with CodecError, not read in whichever variant happens to parse."""
    with pytest.raises(CodecError, match="fit no alarm identification variant"):
        decode_body(msg_id, bytes.fromhex(hex_))


@pytest.mark.parametrize(
    "body",
    [
        AlarmAttachmentInfo("T1", HLJ, ALARM_NO, 0, ()),  # Heilongjiang has no leading id
        AlarmAttachmentInfo(None, JS, ALARM_NO, 0, ()),  # the others need one
        AlarmAttachmentInfo("T1234567", JS, ALARM_NO, 0, ()),  # 8 bytes in BYTE[7]
        AlarmAttachmentInfo(TID, JS, "x" * 33, 0, ()),
        AlarmAttachmentInfo(TID, JS, "报警", 0, ()),  # not ASCII
        AlarmAttachmentInfo(TID, "no identification", ALARM_NO, 0, ()),  # type: ignore[arg-type]
        AlarmAttachmentInfo(TID, JS, ALARM_NO, 0, [AttachmentFile("x" * 256, 1)]),
        AlarmAttachmentUploadRequest("1.2.3.4", 1, 2, JS, ALARM_NO, b"\x00" * 15),
        AlarmAttachmentUploadRequest("1.2.3.4", 65536, 2, JS, ALARM_NO),
        FileUploadCompleteResponse("a", 0, 1, [DataBlock(1 << 32, 1)]),
    ],
    ids=repr,
)
def test_strict_encoding(body: Any) -> None:
    """Values that do not fit their variant or field raise CodecError."""
    with pytest.raises(CodecError):
        encode_body(body)


# -- tolerance -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, body, hex_", ROUND_TRIPS, ids=[c[0] for c in ROUND_TRIPS])
def test_truncated(name: str, body: Any, hex_: str) -> None:
    """A truncated body raises CodecError, unless its length happens to be exactly that of
    another variant: then it reads in that other variant, never in its own."""
    data = bytes.fromhex(hex_)
    for n in range(len(data)):
        try:
            short = decode_body(type(body).MSG_ID, data[:n])
        except CodecError:
            continue
        assert hasattr(body, "identification"), f"{n}-byte prefix decoded"
        assert type(short.identification) is not type(body.identification), n


SAFETY_IDS = sorted({type(c[1]).MSG_ID for c in ROUND_TRIPS})


@settings(max_examples=300, deadline=None)
@given(
    msg_id=st.sampled_from(SAFETY_IDS),
    data=st.binary(max_size=200),
    version=st.sampled_from([2013, 2019]),
)
def test_random_bytes(msg_id: int, data: bytes, version: int) -> None:
    """Random bytes given to any of these decoders raise CodecError or decode, nothing else."""
    try:
        decode_body(msg_id, data, version)
    except CodecError:
        pass


_VARIANTS = st.sampled_from(
    [
        (AlarmIdentification, lambda t, tm, s, a: AlarmIdentification(t, tm, s, a, 0)),
        (AlarmIdentificationGD, lambda t, tm, s, a: AlarmIdentificationGD(t, tm, s, a, 0)),
        (AlarmIdentificationHLJ, AlarmIdentificationHLJ),
        (AlarmIdentification30, lambda t, tm, s, a: AlarmIdentification30(t, tm, s, a, 0)),
    ]
)
_ID = st.text(alphabet="0123456789ABCDEFabcdef", min_size=1, max_size=7)
_NAMES = st.text(alphabet="0123456789_abcdefghijklmnopqrstuvwxyz.", max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    variant=_VARIANTS,
    terminal_id=_ID,
    sequence=st.integers(0, 255),
    alarm_number=st.text(alphabet="0123456789abcdef", max_size=32),
    files=st.lists(st.builds(AttachmentFile, _NAMES, st.integers(0, 0xFFFFFFFF)), max_size=5),
)
def test_1210_variant_detected(
    variant: Any, terminal_id: str, sequence: int, alarm_number: str, files: list[Any]
) -> None:
    """A 0x1210 built in any variant is read back in that variant."""
    cls, make = variant
    ident = make(terminal_id, T1, sequence, len(files))
    leading = None if cls is AlarmIdentificationHLJ else terminal_id
    body = AlarmAttachmentInfo(leading, ident, alarm_number, INFO_NORMAL, files)
    assert decode_body(0x1210, encode_body(body)) == body


@settings(max_examples=200, deadline=None)
@given(
    variant=_VARIANTS,
    terminal_id=_ID,
    ip=st.text(alphabet="0123456789.abcdefghijklmnopqrstuvwxyz", max_size=64),
    reserved=st.binary(min_size=16, max_size=16),
)
def test_9208_variant_detected(variant: Any, terminal_id: str, ip: str, reserved: bytes) -> None:
    """A 0x9208 built in any variant is read back in that variant."""
    cls, make = variant
    body = AlarmAttachmentUploadRequest(
        ip, 7000, 7001, make(terminal_id, T1, 1, 1), "0" * 32, reserved
    )
    assert decode_body(0x9208, encode_body(body)) == body


# -- conformance corpus ---------------------------------------------------------------------


def _reserved_bytes(ident: Any) -> list[int]:
    if isinstance(ident, AlarmIdentificationHLJ):
        return []
    size = 2 if isinstance(ident, AlarmIdentificationGD) else 1
    return list(ident.reserved.to_bytes(size, "big"))


_IDENT: Keys = {
    **same(lambda i: i.terminal_id, "TerminalID", "TerminalId", "terminalId"),
    **same(lambda i: when(i.time), "Time", "time"),
    **same(lambda i: i.sequence, "SN", "SerialNumber", "sequence"),
    **same(lambda i: i.attachments, "AttachCount", "AttachNumber", "attachmentCount"),
    **same(lambda i: i.reserved, "Retain", "reserved"),
    # SmallChi's Guangdong identification has two reserved bytes; ours is one WORD.
    "Retain1": lambda i: i.reserved >> 8,
    "Retain2": lambda i: i.reserved & 0xFF,
    "AlarmReserve": _reserved_bytes,
}

#: yezhihao writes the identification's fields flat in the message.
_FLAT_IDENT: Keys = {
    "deviceId_": lambda b: b.identification.terminal_id,
    "dateTime": lambda b: when(b.identification.time),
    "sequenceNo": lambda b: b.identification.sequence,
    "fileTotal": lambda b: b.identification.attachments,
    "reserved": lambda b: b.identification.reserved,
}

_FILE_NAME: Keys = {
    **same(lambda b: b.name, "FileName", "name"),
    **same(lambda b: len(b.name.encode("gbk")), "FileNameLength", "FileNameLen"),
}

_FILE_INFO: Keys = {
    **_FILE_NAME,
    **same(lambda b: b.file_type, "FileType", "type"),
    **same(lambda b: b.size, "FileSize", "size"),
}

SAFETY_KEYS: dict[type, Keys] = {
    AlarmAttachmentInfo: {
        **_FLAT_IDENT,
        # go-jt808 reads the Heilongjiang layout's absent terminal id as "".
        **same(
            lambda b: "" if b.terminal_id is None else b.terminal_id,
            "TerminalId", "TerminalID", "deviceId",
        ),
        **same(lambda b: b.identification, "AlarmIdentification", "P9208AlarmSign"),
        **same(lambda b: b.alarm_number, "AlarmId", "AlarmID", "platformAlarmId"),
        **same(lambda b: b.info_type, "InfoType", "type"),
        "AttachCount": lambda b: len(b.files),
        **same(lambda b: b.files, "AttachInfos", "T0x1210AlarmItemList"),
    },
    AttachmentFile: {**_FILE_NAME, "FileSize": lambda f: f.size},
    FileInfo: _FILE_INFO,
    FileUploadComplete: {**_FILE_INFO, "T0x1211": lambda b: b},
    AlarmAttachmentUploadRequest: {
        **_FLAT_IDENT,
        "deviceId": lambda b: b.identification.terminal_id,
        **same(lambda b: b.server_ip, "AttachmentServerIP", "ServerAddr", "ip", "attachmentServerIp"),
        **same(lambda b: len(b.server_ip), "AttachmentServerIPLength", "ServerIPLen"),
        **same(lambda b: b.tcp_port, "AttachmentServerIPTcpPort", "TcpPort", "tcpPort", "attachmentServerPortTcp"),
        **same(lambda b: b.udp_port, "AttachmentServerIPUdpPort", "UdpPort", "udpPort", "attachmentServerPortUdp"),
        **same(lambda b: b.identification, "AlarmIdentification", "P9208AlarmSign", "alarmIdentifier"),
        **same(lambda b: b.alarm_number, "AlarmId", "AlarmID", "platformAlarmId", "alarmNo"),
        "reserves": lambda b: list(b.reserved),
    },
    FileUploadCompleteResponse: {
        **_FILE_NAME,
        **same(lambda b: b.file_type, "FileType", "type"),
        **same(lambda b: b.result, "UploadResult", "result"),
        **same(lambda b: len(b.retransmit), "DataPackageCount", "RetransmitPacketNumber", "total"),
        **same(lambda b: b.retransmit, "DataPackages", "P0x9212RetransmitPacketList"),
        # yezhihao lists offset, length, offset, length...
        "items": lambda b: [n for block in b.retransmit for n in (block.offset, block.length)],
    },
    DataBlock: {
        **same(lambda d: d.offset, "Offset", "DataOffset"),
        **same(lambda d: d.length, "Length", "DataLength"),
    },
    **dict.fromkeys(
        (AlarmIdentification, AlarmIdentificationGD, AlarmIdentificationHLJ, AlarmIdentification30),
        _IDENT,
    ),
}  # fmt: skip

CORPUS = corpus_records(SAFETY_IDS)


@pytest.mark.parametrize("r", CORPUS, ids=[r["id"] for r in CORPUS])
def test_corpus(r: dict[str, Any]) -> None:
    """Every corpus frame and body of these messages decodes, re-encodes to the source's
    bytes and matches the values its source asserts."""
    check_corpus_record(r, SAFETY_KEYS, known_differences={}, body_errors={})


def test_corpus_covers_every_message() -> None:
    """The corpus has records for every id here, in several variants, asserting values we
    check (so the parametrized test above is not vacuous)."""
    assert {int(r["msg_id"], 16) for r in CORPUS} == set(SAFETY_IDS)
    checked = 0
    variants = set()
    for r in CORPUS:
        body = record_body(r)
        assert not isinstance(body, RawBody), r["id"]
        if hasattr(body, "identification"):
            variants.add(type(body.identification))
        checked += check_expect(r, body, SAFETY_KEYS)
    assert variants == {AlarmIdentification, AlarmIdentificationGD, AlarmIdentificationHLJ}
    assert checked > 250
