"""JT/T 1078 audio payloads: codec by payload type, the HiSilicon header stripped, and the
corpus's real audio decoded by FFmpeg from what we hand over."""

from __future__ import annotations

import io
import struct

import av
import pytest

from cmsv6.protocols.jt1078.audio import (
    AudioError,
    AudioPayload,
    classify_audio,
    g726_bits_per_sample,
    has_hisilicon_header,
    strip_hisilicon,
)
from cmsv6.protocols.jt1078.packet import DataType, parse_packet
from tests.support.corpus import records

AUDIO = [
    p
    for p in (
        parse_packet(bytes.fromhex(r["hex"]))
        for r in records("jt1078_packets.jsonl")
        if r["kind"] == "jt1078_packet"
    )
    if p.data_type == DataType.AUDIO
]


@pytest.mark.parametrize(
    "payload,has",
    [
        (bytes.fromhex("00015200") + bytes(164), True),  # IMA-ADPCM, 40 ms
        (bytes.fromhex("00015000") + b"\xd5" * 160, True),  # G.711, 20 ms
        (bytes.fromhex("00015000") + b"\xd5" * 161, False),  # length disagrees
        (bytes.fromhex("00015001") + b"\xd5" * 160, False),
        (bytes.fromhex("01015000") + b"\xd5" * 160, False),
        (b"\x00\x01", False),
        (bytes.fromhex("00010000"), True),  # empty, but well-formed
    ],
)
def test_hisilicon_header(payload: bytes, has: bool) -> None:
    """``00 01 LL 00`` is a header only when LL words are exactly what follows."""
    assert has_hisilicon_header(payload) is has
    assert strip_hisilicon(payload) == ((payload[4:], True) if has else (payload, False))


@pytest.mark.parametrize(
    "pt,codec", [(6, "pcm_alaw"), (7, "pcm_mulaw"), (8, "g726"), (26, "adpcm_ima"), (19, "aac")]
)
def test_codec_by_payload_type(pt: int, codec: str) -> None:
    assert classify_audio(pt, b"\x00" * 8).codec == codec


def test_unsupported_audio_is_an_error_in_words() -> None:
    """A coding type we do not take, or ADPCM without its state, raises AudioError."""
    with pytest.raises(AudioError, match="G.729 is not supported"):
        classify_audio(5, b"\x00" * 20)
    with pytest.raises(AudioError, match="no 4-byte state"):
        classify_audio(26, bytes.fromhex("00010100") + b"\x01\x02")


def test_adpcm_with_and_without_the_header() -> None:
    """IMA-ADPCM gives the same samples with or without the HiSilicon header."""
    body = struct.pack("<hBB", -1450, 35, 0) + bytes(range(160))
    plain = classify_audio(26, body)
    headed = classify_audio(26, bytes.fromhex("00015200") + body)
    assert (plain.hisilicon, headed.hisilicon) == (False, True)
    assert plain.data == headed.data == body
    assert plain.samples == headed.samples == 320
    assert headed.ima_state == (-1450, 35)


def test_aac_passes_through() -> None:
    adts = bytes.fromhex("fff15080017ffc") + b"\x21"
    assert classify_audio(19, adts) == AudioPayload("aac", 19, adts, False, None)


def test_g726_rate_from_size_and_duration() -> None:
    assert [g726_bits_per_sample(120, ms) for ms in (60, 40, 30, 24)] == [2, 3, 4, 5]
    assert g726_bits_per_sample(120, 50) is None
    assert g726_bits_per_sample(120, 0) is None


def test_corpus_alaw_decodes() -> None:
    """The corpus's G.711A frames decode in FFmpeg to one sample a byte."""
    frames = [classify_audio(p.payload_type, p.payload) for p in AUDIO if p.payload_type == 6]
    assert len(frames) > 100
    ctx = av.CodecContext.create("pcm_alaw", "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"
    for f in frames[:20]:
        assert not f.hisilicon
        assert sum(x.samples for x in ctx.decode(av.Packet(f.data))) == f.samples


def test_corpus_adpcm_has_the_header_and_decodes() -> None:
    """The corpus's IMA-ADPCM (a Streamax-like unit) carries the HiSilicon header; what is
    left has the size of IMA blocks (FFmpeg's WAV layout counts the state as a sample: 321
    a block). That the samples are the sound sent, read high nibble first, is
    tests/media/test_audio.py's."""
    frames = [classify_audio(p.payload_type, p.payload) for p in AUDIO if p.payload_type == 26]
    assert len(frames) > 20
    assert all(f.hisilicon and len(f.data) == 164 and f.samples == 320 for f in frames)
    block = 164
    per_block = (block - 4) * 2 + 1
    fmt = struct.pack("<HHIIHHHH", 0x11, 1, 8000, 8000 * block // per_block, block, 4, 2, per_block)
    data = b"".join(f.data for f in frames)
    wav = (
        b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", len(data)) + data
    )  # fmt: skip
    container = av.open(io.BytesIO(wav), format="wav")
    samples = sum(f.samples for packet in container.demux() for f in packet.decode())
    assert samples == len(frames) * per_block


def test_corpus_g726_decodes() -> None:
    """The corpus's G.726 frames decode in FFmpeg's g726le demuxer at 24 kbit/s (that it is
    sound, not noise, is tests/media/test_audio.py's)."""
    frames = [classify_audio(p.payload_type, p.payload) for p in AUDIO if p.payload_type == 8]
    assert frames and all(len(f.data) == 120 for f in frames)
    data = b"".join(f.data for f in frames)
    container = av.open(io.BytesIO(data), format="g726le", options={"code_size": "3", "sample_rate": "8000"})
    samples = sum(f.samples for packet in container.demux() for f in packet.decode())
    assert samples == len(data) * 8 // 3
