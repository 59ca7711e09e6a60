"""Talk-back's encoder: a tone sent as PCM, in any chunking, comes out as the unit's frames
(each its frame length) that FFmpeg's decoders — and, for IMA-ADPCM in the DVI4 layout,
the standard's algorithm and our own uplink transcoder — turn back into that tone at its
level; bad settings are refused in words and the input is bounded."""

from __future__ import annotations

import math
import random
import struct

import av
import pytest

from cmsv6.media.audio import AudioTranscoder
from cmsv6.media.talk import (
    MAX_FEED,
    TalkEncoder,
    TalkError,
    codec_of,
)
from cmsv6.protocols.jt1078.audio import strip_hisilicon
from tests.media.tones import RATE, decode_aac, dominant, dvi4_decode, pcm16, tone

SECONDS = 2


def rms(samples: list[float]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples))


def ffmpeg_decode(codec: str, frames: list[bytes], g726_bits: int = 4) -> list[int]:
    """The unit's frames decoded by FFmpeg, as a unit would: G.711 and G.726 (g726le) as
    one stream; DVI4 blocks re-packed as adpcm_ima_wav blocks (nibbles swapped, the
    predictor a sample of its own, which is dropped)."""
    name = {"g711a": "pcm_alaw", "g711u": "pcm_mulaw", "g726": "g726le",
            "adpcm": "adpcm_ima_wav"}[codec]  # fmt: skip
    ctx = av.CodecContext.create(name, "r")
    ctx.sample_rate, ctx.layout = RATE, "mono"
    if codec == "g726":
        ctx.options = {"bits_per_coded_sample": str(g726_bits)}
    if codec == "adpcm":
        ctx.options = {"bits_per_coded_sample": "4", "block_align": "8192"}
    out: list[int] = []
    for data in frames:
        data, _ = strip_hisilicon(data)
        skip = 0
        if codec == "adpcm":
            swapped = bytes(((b << 4) | (b >> 4)) & 0xFF for b in data[4:])
            data, skip = data[:4] + swapped, 1
        for f in ctx.decode(av.Packet(data)):
            plane = bytes(f.planes[0])[: 2 * f.samples]
            out += struct.unpack(f"<{f.samples}h", plane)[skip:]
            skip = 0
    return out


def encode(encoder: TalkEncoder, pcm: bytes, seed: int = 1) -> list[bytes]:
    """``pcm`` fed in random pieces (odd sizes included), then flushed."""
    rng = random.Random(seed)
    frames: list[bytes] = []
    at = 0
    while at < len(pcm):
        size = rng.choice((1, 3, 160, 321, 640, 999, 4096))
        frames += encoder.feed(pcm[at : at + size])
        at += size
    return frames + encoder.flush()


CASES = [
    ("g711a", {}, 320),
    ("g711u", {}, 320),
    ("g726", {"g726_bits": 2}, 80),
    ("g726", {"g726_bits": 3}, 120),
    ("g726", {}, 160),
    ("g726", {"g726_bits": 5}, 200),
    ("adpcm", {}, 164),
    ("adpcm", {"hisilicon": True}, 168),
    ("g711a", {"hisilicon": True}, 324),
]


@pytest.mark.parametrize(("codec", "options", "size"), CASES,
                         ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for c, o, _ in CASES])  # fmt: skip
@pytest.mark.parametrize(("freq", "amplitude"), [(1000, 8000), (500, 3000)])
def test_tone_arrives_as_the_tone_in_frames_of_the_units_length(
    codec: str, options: dict[str, object], size: int, freq: int, amplitude: int
) -> None:
    """A tone as PCM in random chunks comes out as whole frames of 320 samples (40 ms), each
    of the codec's size (with the HiSilicon header when asked: ``00 01 LL 00``, LL its
    words), that FFmpeg decodes to the tone's frequency and level, as long as it went in."""
    samples = tone(SECONDS * RATE, freq=freq, amplitude=amplitude)
    encoder = TalkEncoder(codec, **options)  # type: ignore[arg-type]
    frames = encode(encoder, pcm16(samples))
    assert len(frames) == SECONDS * RATE // 320
    assert {len(f) for f in frames} == {size}
    if options.get("hisilicon"):
        assert all(f[:2] == b"\x00\x01" and f[2] * 2 == size - 4 and f[3] == 0 for f in frames)
    decoded = ffmpeg_decode(codec, frames, int(options.get("g726_bits", 4)))  # type: ignore[call-overload]
    assert len(decoded) == len(samples)
    middle = decoded[RATE // 2 : RATE + RATE // 2]
    assert dominant(middle, RATE) == freq
    assert rms(middle) == pytest.approx(amplitude / math.sqrt(2), rel=0.1)


@pytest.mark.parametrize("frame_samples", [160, 320, 1024])
def test_dvi4_blocks_decode_by_the_standards_algorithm(frame_samples: int) -> None:
    """IMA-ADPCM frames are DVI4 blocks of the unit's length: the state (predictor, step
    index, 0) then the codes high nibble first; the standard's decoder (written out in
    tests/media/tones.py) makes the tone of them within IMA-ADPCM's error, from the first
    block on; each block's predictor is the sample the block before ended on."""
    samples = tone(SECONDS * RATE)
    frames = encode(TalkEncoder("adpcm", frame_samples), pcm16(samples))
    assert {len(f) for f in frames} == {4 + frame_samples // 2}
    assert all(f[3] == 0 and f[2] <= 88 for f in frames)
    decoded = [x for f in frames for x in dvi4_decode(f)]
    error = sum((a - b) ** 2 for a, b in zip(decoded, samples))
    power = sum(a * a for a in samples[: len(decoded)])
    assert 10 * math.log10(power / error) > 18  # IMA-ADPCM's ~21 dB on a tone
    # Every sample within IMA-ADPCM's error of a tone at 8000 (about 900), the first
    # block's first ones too: it does not start from the smallest step.
    assert max(abs(a - b) for a, b in zip(decoded, samples)) < 2000
    # Each block's predictor is where the block before ended.
    for k in range(1, len(frames)):
        predictor = struct.unpack_from("<h", frames[k])[0]
        assert abs(predictor - decoded[k * frame_samples - 1]) < 1000


@pytest.mark.parametrize("options", [{}, {"hisilicon": True}])
def test_dvi4_frames_are_what_the_uplink_transcoder_reads(options: dict[str, bool]) -> None:
    """cmsv6.media.audio, which reads units' DVI4 audio, turns our frames into AAC that
    FFmpeg decodes to the tone: the encoder is its inverse."""
    frames = encode(TalkEncoder("adpcm", **options), pcm16(tone(SECONDS * RATE, freq=1500)))  # type: ignore[arg-type]
    transcoder = AudioTranscoder("adpcm_ima")
    aac = [a for i, f in enumerate(frames) for a in transcoder.feed(f, 40 * i)] + transcoder.flush()
    assert transcoder.counters.skipped == 0
    assert transcoder.counters.samples == SECONDS * RATE
    decoded = decode_aac((a.config, a.data) for a in aac)
    assert dominant(decoded[RATE // 2 : RATE + RATE // 2], RATE) == 1500
    assert rms(decoded[RATE // 2 : RATE + RATE // 2]) == pytest.approx(8000 / math.sqrt(2) / 32768, rel=0.1)


def test_chunking_does_not_change_the_frames() -> None:
    """Byte by byte or all at once, the same PCM gives the same frames."""
    pcm = pcm16(tone(RATE, freq=700))
    for codec in ("g711a", "adpcm", "g726"):
        whole = TalkEncoder(codec)
        at_once = whole.feed(pcm) + whole.flush()
        assert encode(TalkEncoder(codec), pcm, seed=7) == at_once, codec


def test_frames_come_out_as_soon_as_they_are_whole() -> None:
    """G.711 and IMA-ADPCM hold less than a frame; G.726 less than FFmpeg's block (2048
    samples at 32 kbit/s) plus a frame; the rest is out, padded with silence, at flush."""
    for codec in ("g711u", "adpcm"):
        encoder = TalkEncoder(codec)
        assert encoder.feed(bytes(2 * 319)) == []
        assert encoder.buffered == 319
        assert len(encoder.feed(bytes(2))) == 1 and encoder.buffered == 0
        assert len(encoder.feed(bytes(2 * 330))) == 1 and encoder.buffered == 10
        assert len(encoder.flush()) == 1 and encoder.buffered == 0
    g726 = TalkEncoder("g726")
    out = []
    for _ in range(20):
        out += g726.feed(bytes(2 * 320))
        assert g726.buffered < 2048 + 320
    assert len(out) == (20 * 320 // 2048) * 2048 // 320  # FFmpeg's 3 blocks: 19 frames
    assert len(out + g726.flush()) == 20


def test_input_is_bounded_and_bad_settings_are_refused_in_words() -> None:
    """More than 1 s of PCM at once, audio after the end, and encoders that cannot be made
    are refused saying why."""
    encoder = TalkEncoder("g711a")
    with pytest.raises(TalkError, match="at most"):
        encoder.feed(bytes(MAX_FEED + 2))
    encoder.flush()
    with pytest.raises(TalkError, match="after the end"):
        encoder.feed(bytes(2))
    for args, options, words in [
        (("aac",), {}, "not 'aac'"),
        (("g711a", 0), {}, "0 samples"),
        (("g711a", 5000), {}, "5000 samples"),
        (("g726",), {"g726_bits": 6}, "2-5 bits"),
        (("g726", 321), {"g726_bits": 3}, "whole number of bytes"),
        (("adpcm", 321), {}, "even number"),
        (("g711a", 1024), {"hisilicon": True}, "HiSilicon header"),
    ]:
        with pytest.raises(TalkError, match=words):
            TalkEncoder(*args, **options)  # type: ignore[arg-type]


def test_payload_types() -> None:
    """The table 12 coding types talk-back encodes, and only those."""
    assert [TalkEncoder.for_payload_type(pt).codec for pt in (6, 7, 8, 26)] == [
        "g711a", "g711u", "g726", "adpcm"]  # fmt: skip
    assert TalkEncoder.for_payload_type(26).payload_type == 26
    assert codec_of(19) is None
    with pytest.raises(TalkError, match="coding type 19"):
        TalkEncoder.for_payload_type(19)
