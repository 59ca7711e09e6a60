"""Driving recorder bodies (cmsv6.protocols.jt808.messages.recorder): round trips, the GB/T 19056 block,
the corpus, and tolerance of bad input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.messages.recorder import (
    RECORDER_COLLECT_ERROR,
    RecorderCollect,
    RecorderError,
    RecorderPacket,
    RecorderSetParameters,
    RecorderUpload,
    recorder_block_decode,
    recorder_block_encode,
)
from cmsv6.protocols.jt808.model import MESSAGES
from tests.support.corpus import (
    Expect,
    check_record,
    corpus_params,
    corpus_records,
    msg_id_of,
    records,
    unused_expect_keys,
)

IDS = (0x8700, 0x8701, 0x0700)

# (body, version, hex): decoding the hex gives the body and encoding the body gives the hex.
ROUND_TRIPS: list[tuple[Any, int, str]] = [
    (RecorderCollect(0x00, RecorderPacket(0x00)), 2013, "00" "557a" "00" "0000" "00" "2f"),
    (
        RecorderCollect(0x08, RecorderPacket(0x08, bytes.fromhex("200322101010" "200323101010" "0001"))),
        2019,
        "08" "557a" "08" "000e" "00" "200322101010" "200323101010" "0001" "29",
    ),
    (RecorderCollect(0x01), 2013, "01"),  # the standard allows an empty block
    (
        RecorderSetParameters(0xC2, RecorderPacket(0xC2, bytes.fromhex("200323101010"))),
        2013,
        "c2" "557a" "c2" "0006" "00" "200323101010" "fb",
    ),
    (RecorderUpload(1, 0x00, RecorderPacket(0x00, b"\x19\x01")), 2013, "0001" "00" "557a" "00" "0002" "00" "1901" "35"),
    (RecorderUpload(1, 0xFA, RecorderError(RECORDER_COLLECT_ERROR)), 2019, "0001" "fa" "557a" "fa" "00" "d5"),
    # a bad check byte: not a packet, kept as it came
    (RecorderUpload(7, 0x01, bytes.fromhex("557a01000000" "00")), 2013, "0007" "01" "557a01000000" "00"),
    # a vendor block that is not GB/T 19056 at all
    (RecorderUpload(7, 0x20, b"\x01\x02\x03"), 2013, "0007" "20" "010203"),
]


@pytest.mark.parametrize(
    "body, version, hex_",
    ROUND_TRIPS,
    ids=[f"0x{type(b).MSG_ID:04x}-{type(b).__name__}-{v}-{i}" for i, (b, v, _) in enumerate(ROUND_TRIPS)],
)
def test_round_trip(body: Any, version: int, hex_: str) -> None:
    """The bytes parse to the object and the object builds the bytes."""
    data = bytes.fromhex(hex_)
    assert decode_body(type(body).MSG_ID, data, version) == body
    assert encode_body(body, version) == data


def test_round_trips_cover_every_message() -> None:
    """Every message of this module has at least one round-trip case."""
    assert {type(b).MSG_ID for b, _, _ in ROUND_TRIPS} == set(IDS)


@pytest.mark.parametrize(
    "hex_",
    [
        "557a000001002f",  # length says 1, no data byte
        "557a00000000",  # no check byte
        "557b000000002e",  # wrong head
        "557a020000002c",  # wrong check byte (0x2d is right)
        "557a010000",  # five bytes but not an error flag
    ],
)
def test_malformed_blocks_stay_raw(hex_: str) -> None:
    """A block that is not exactly one well-formed packet is kept as its bytes."""
    raw = bytes.fromhex(hex_)
    assert recorder_block_decode(raw) == raw
    assert recorder_block_encode(raw) == raw


@pytest.mark.parametrize(
    "block",
    [
        RecorderPacket(0x08, b"\x00" * 0x10000),  # the length is a WORD
        RecorderPacket(0x100),  # the command is a BYTE
        "557a",  # neither packet, error nor bytes
    ],
)
def test_encoding_is_strict(block: Any) -> None:
    """A block the wire cannot carry is refused with CodecError."""
    with pytest.raises(CodecError):
        encode_body(RecorderCollect(0x08, block), 2013)


# -- conformance corpus -------------------------------------------------------------------

#: Records whose source's convention differs from the standard, and why (none so far).
KNOWN_DIFFERENCES: dict[str, str] = {}

#: expect keys of each source project → how to read the value from our body.
EXPECT: Expect = {
    (0x0700, "SmallChi"): {
        "ReplyMsgNum": lambda b: b.reply_serial,
        "CommandId": lambda b: b.command,
        "JT808CarDVRUpPackage.CommandId": lambda b: b.block.command,
        "JT808CarDVRUpPackage.Begin": lambda b: int.from_bytes(recorder_block_encode(b.block)[:2], "big"),
        "JT808CarDVRUpPackage.KeepFields": lambda b: b.block.reserved,
        "JT808CarDVRUpPackage.ErrorFlag": lambda b: isinstance(b.block, RecorderError),
        # a few values inside the data (GB/T 19056 tables A.9 and A.10)
        "JT808CarDVRUpPackage.Bodies.StandardYear": lambda b: b.block.data[:1].hex(),
        "JT808CarDVRUpPackage.Bodies.ModifyNumber": lambda b: b.block.data[1],
        "JT808CarDVRUpPackage.Bodies.DriverLicenseNo": lambda b: b.block.data.decode("ascii"),
    },
    (0x8700, "SmallChi"): {
        "CommandId": lambda b: b.command,
        "JT808CarDVRDownPackage.CommandId": lambda b: b.block.command,
    },
    (0x8701, "SmallChi"): {
        "CommandId": lambda b: b.command,
        "JT808CarDVRDownPackage.CommandId": lambda b: b.block.command,
    },
}

CORPUS = corpus_records(IDS)
#: GB/T 19056 packets the sources test on their own (``body_item`` records).
PACKETS = [r for r in records() if r["kind"] == "body_item" and msg_id_of(r) in IDS]


@pytest.mark.parametrize("r", corpus_params(CORPUS, KNOWN_DIFFERENCES))
def test_corpus_record(r: dict[str, Any]) -> None:
    """A corpus frame or body decodes to our class, re-encodes to its exact bytes, and has
    the values its source asserts."""
    check_record(r, EXPECT)


@pytest.mark.parametrize("r", [pytest.param(r, id=r["id"]) for r in PACKETS])
def test_corpus_packet(r: dict[str, Any]) -> None:
    """A GB/T 19056 packet from the corpus reads as a packet and writes back its bytes."""
    raw = bytes.fromhex(r["hex"])
    block = recorder_block_decode(raw)
    assert isinstance(block, RecorderPacket), f"{r['id']} ({r['source']})"
    assert recorder_block_encode(block) == raw, f"{r['id']} ({r['source']})"


def test_corpus_blocks_are_typed() -> None:
    """Every block in the corpus is a well-formed packet or error answer, none left raw."""
    raw = []
    for r in CORPUS:
        try:
            body = decode_body(msg_id_of(r), bytes.fromhex(r["hex"]))  # type: ignore[arg-type]
        except CodecError:
            continue  # frames are covered by test_corpus_record
        if isinstance(body.block, bytes):
            raw.append(r["id"])
    assert not raw


def test_corpus_covers_every_message() -> None:
    """The corpus has records for every message here, so the conformance test is not vacuous."""
    assert {msg_id_of(r) for r in CORPUS} == set(IDS) and PACKETS


def test_expect_mappings_are_all_used() -> None:
    """Every expect key we map is asserted by some record."""
    assert not unused_expect_keys(CORPUS, EXPECT)


# -- tolerance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, version, hex_",
    ROUND_TRIPS,
    ids=[f"0x{type(b).MSG_ID:04x}-{i}" for i, (b, _, _) in enumerate(ROUND_TRIPS)],
)
def test_truncated_body(body: Any, version: int, hex_: str) -> None:
    """A body cut inside its header raises CodecError; cut inside the block, the block reads
    as raw bytes and re-encodes to exactly what was left."""
    data = bytes.fromhex(hex_)
    head = 3 if isinstance(body, RecorderUpload) else 1
    for n in range(len(data)):
        if n < head:
            with pytest.raises(CodecError):
                decode_body(type(body).MSG_ID, data[:n], version)
            continue
        short = decode_body(type(body).MSG_ID, data[:n], version)
        assert encode_body(short, version) == data[:n], f"cut at {n}: {short}"


@given(
    msg_id=st.sampled_from(IDS),
    version=st.sampled_from((2013, 2019)),
    data=st.binary(max_size=200),
)
def test_random_bytes(msg_id: int, version: int, data: bytes) -> None:
    """Random bytes give CodecError or a body that re-encodes to exactly those bytes."""
    try:
        body = decode_body(msg_id, data, version)
    except CodecError:
        return
    assert type(body) is MESSAGES[msg_id]
    assert encode_body(body, version) == data


@given(command=st.integers(0, 255), data=st.binary(max_size=300), reserved=st.integers(0, 255))
def test_packets_round_trip(command: int, data: bytes, reserved: int) -> None:
    """Any packet we write reads back as the same packet."""
    packet = RecorderPacket(command, data, reserved)
    assert recorder_block_decode(recorder_block_encode(packet)) == packet
