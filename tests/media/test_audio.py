"""Units' audio to AAC: a tone in every codec units send comes out of FFmpeg's AAC decoder
as the same tone and length, with even, never-reversing timestamps; bad frames are counted
and skipped; the corpus's real captures decode to audio, not noise."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import attrs
import pytest

from cmsv6.media.audio import AacFrame, AudioTranscoder, TranscodeError
from cmsv6.protocols.flv.muxer import MAX_GAP, FlvMuxer
from cmsv6.protocols.jt1078.audio import classify_audio
from cmsv6.protocols.jt1078.packet import DataType, parse_packet
from tests.media.tones import (
    RATE,
    TONE,
    chunks,
    correlation,
    decode_aac,
    dominant,
    dvi4_blocks,
    dvi4_decode,
    ffmpeg_blocks,
    ffmpeg_encode,
    hisilicon,
    roughness,
    tone,
)
from tests.protocols.flv.media import clip, decode_flv
from tests.support.corpus import records

T0 = 1_700_000_000_000
SECONDS = 3
AAC = 1024  # samples an AAC frame codes
FRAME_MS = AAC * 1000 // RATE  # 128


@attrs.frozen
class Case:
    """One way units send audio: the transcoder's arguments, the frames (payload, samples
    it holds) for SECONDS of the tone."""

    codec: str
    options: dict[str, object]
    make: Callable[[list[int]], list[tuple[bytes, int]]]

    def payloads(self) -> list[tuple[bytes, int]]:
        return self.make(tone(SECONDS * RATE))


def _g711(
    codec: str, size: int, header: bool = False
) -> Callable[[list[int]], list[tuple[bytes, int]]]:
    def make(samples: list[int]) -> list[tuple[bytes, int]]:
        return [
            (hisilicon(c) if header else c, len(c))
            for c in chunks(ffmpeg_encode(codec, samples), size)
        ]

    return make


def _g726(
    encoder: str, bits: int, header: bool = False
) -> Callable[[list[int]], list[tuple[bytes, int]]]:
    def make(samples: list[int]) -> list[tuple[bytes, int]]:
        # FFmpeg pads the stream's end: keep the samples' codes, 40 ms (320 codes) a frame
        data = ffmpeg_encode(encoder, samples, code_size=str(bits))[
            : len(samples) * bits // 8
        ]
        return [(hisilicon(c) if header else c, 320) for c in chunks(data, 40 * bits)]

    return make


def _dvi4(header: bool) -> Callable[[list[int]], list[tuple[bytes, int]]]:
    def make(samples: list[int]) -> list[tuple[bytes, int]]:
        return [(hisilicon(b) if header else b, 320) for b in dvi4_blocks(samples)]

    return make


_SWAP = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))


def _ffmpeg_ima(layout: str) -> Callable[[list[int]], list[tuple[bytes, int]]]:
    """FFmpeg's adpcm_ima_wav blocks (256 bytes: a first sample and 504 codes) as they are,
    or as DVI4 (nibbles swapped: the first sample becomes the predictor, 504 samples)."""

    def make(samples: list[int]) -> list[tuple[bytes, int]]:
        blocks = ffmpeg_blocks("adpcm_ima_wav", samples, block_size="256")
        if layout == "wav":
            return [(b, 505) for b in blocks]
        return [(b[:4] + b[4:].translate(_SWAP), 504) for b in blocks]

    return make


CASES = {
    "g711a-40ms": Case("pcm_alaw", {}, _g711("pcm_alaw", 320)),
    "g711a-20ms-hisilicon": Case("pcm_alaw", {}, _g711("pcm_alaw", 160, header=True)),
    "g711u-40ms": Case("pcm_mulaw", {}, _g711("pcm_mulaw", 320)),
    **{
        f"g726-{bits * 8}k": Case("g726", {"g726_bits": bits}, _g726("g726le", bits))
        for bits in (2, 3, 4, 5)
    },
    **{
        f"g726-{bits * 8}k-rate-from-time-hisilicon": Case(
            "g726", {}, _g726("g726le", bits, True)
        )
        for bits in (2, 3, 4, 5)
    },
    "g726-32k-msb-first": Case(
        "g726", {"g726_bits": 4, "g726_decoder": "g726"}, _g726("g726", 4)
    ),
    "ima-dvi4": Case("adpcm_ima", {}, _dvi4(header=False)),
    "ima-dvi4-hisilicon": Case("adpcm_ima", {}, _dvi4(header=True)),
    "ima-ffmpeg-as-dvi4": Case("adpcm_ima", {}, _ffmpeg_ima("dvi4")),
    "ima-ffmpeg-wav": Case("adpcm_ima", {"ima_layout": "wav"}, _ffmpeg_ima("wav")),
}


def run(
    transcoder: AudioTranscoder,
    payloads: list[tuple[bytes, int]],
    clock: Callable[[int, int], int] | None = None,
) -> list[AacFrame]:
    """Feed the frames in order, each stamped where its first sample falls (or by
    ``clock(index, that time)``), checking the transcoder never holds more than three AAC
    frames' worth (its resampler, the encoder and its lookahead); then flush."""
    out: list[AacFrame] = []
    at = 0
    for i, (payload, samples) in enumerate(payloads):
        ms = T0 + at * 1000 // RATE
        out += transcoder.feed(payload, clock(i, ms) if clock else ms)
        at += samples
        assert transcoder.buffered < 3 * AAC + samples
    return out + transcoder.flush()


def heard(frames: list[AacFrame]) -> list[float]:
    return decode_aac((f.config, f.data) for f in frames)


@pytest.mark.parametrize("name", CASES)
def test_tone_comes_out_as_aac(name: str) -> None:
    """The tone, its exact length (and one AAC frame of encoder delay), and timestamps a
    frame's length apart starting where the unit's clock put the first sample."""
    case = CASES[name]
    payloads = case.payloads()
    total = sum(n for _, n in payloads)
    t = AudioTranscoder(case.codec, **case.options)  # type: ignore[arg-type]
    frames = run(t, payloads)
    assert (t.counters.skipped, t.last_error) == (0, None)
    assert t.counters.samples == total
    assert t.counters.aac_frames == len(frames) == math.ceil(total / AAC) + 1
    assert sum(f.samples for f in frames) == total + AAC
    assert {f.config for f in frames} == {t.config}
    times = [f.timestamp for f in frames]
    assert times[0] == T0 - FRAME_MS  # the encoder's priming frame comes first
    assert all(abs(b - a - FRAME_MS) <= 1 for a, b in itertools.pairwise(times))
    samples = heard(frames)
    assert len(samples) == len(frames) * AAC
    assert dominant(samples[RATE : RATE + 1024], RATE) == TONE
    # the waveform itself, a frame of encoder delay later (to a sample: FFmpeg's IMA
    # blocks as DVI4 lose their first sample)
    sent, got = tone(SECONDS * RATE), samples[AAC + 64 : AAC + 464]
    assert (
        max(correlation(got, sent[64 + lag : 464 + lag]) for lag in (-1, 0, 1)) > 0.95
    )
    if "rate-from-time" in name:
        assert t.g726_bits == int(name.split("-")[1][:-1]) // 8


def test_sixteen_khz_output() -> None:
    """AAC at 16 kHz: twice the samples, the same tone, the same clock."""
    payloads = CASES["g711a-40ms"].payloads()
    t = AudioTranscoder("pcm_alaw", out_rate=16000, bit_rate=32000)
    frames = run(t, payloads)
    assert sum(f.samples for f in frames) == 2 * SECONDS * RATE + AAC
    assert frames[1].timestamp == T0 and frames[2].timestamp == T0 + 64
    assert dominant(heard(frames)[16000 : 16000 + 1024], 16000) == TONE


def test_bad_frames_are_counted_and_skipped() -> None:
    """Frames that cannot be decoded cost nothing else: the rest is the same tone, the
    same length, in time; each is counted and the last one's reason kept in words."""
    payloads = CASES["ima-dvi4-hisilicon"].payloads()
    good = payloads[:10] + payloads[10:]
    bad = [
        (b"", 0),
        (hisilicon(b""), 0),
        (b"\x00\x00\x01", 0),  # no samples after the state
        (b"\x10\x00\x59\x00" + bytes(160), 0),  # step index 89
        (bytes(9000), 0),
    ]
    t = AudioTranscoder("adpcm_ima")
    frames = run(t, good[:10] + bad + good[10:])
    assert t.counters.skipped == len(bad)
    assert t.counters.payloads == len(good) + len(bad)
    assert t.last_error == "audio frame of 9000 bytes is over the 8000-byte limit"
    assert t.counters.samples == SECONDS * RATE
    assert len(frames) == math.ceil(SECONDS * RATE / AAC) + 1
    assert [f.timestamp for f in frames] == [
        T0 + FRAME_MS * (i - 1) for i in range(len(frames))
    ]
    assert dominant(heard(frames)[RATE : RATE + 1024], RATE) == TONE


@pytest.mark.parametrize(
    "payload,reason",
    [
        (b"", "empty audio frame"),
        (b"\x00\x01\x00\x00", "empty audio frame"),
        (
            b"\x00\x00\x01\x00",
            "IMA-ADPCM frame of 4 bytes has no samples after its state",
        ),
        (b"\x00\x00\xc8\x00\x12", "IMA-ADPCM step index 200 is out of 0-88"),
    ],
)
def test_what_a_skipped_frame_says(payload: bytes, reason: str) -> None:
    t = AudioTranscoder("adpcm_ima")
    assert t.feed(payload, T0) == []
    assert (t.counters.skipped, t.last_error) == (1, reason)


def test_lost_audio_leaps_forward() -> None:
    """A second of audio that never came: the output leaps forward by it (the player fills
    the gap) instead of closing it, so the audio stays with the video."""
    payloads = CASES["g711a-40ms"].payloads()
    kept = payloads[:25] + payloads[50:]
    t = AudioTranscoder("pcm_alaw")
    frames = run(t, kept, clock=lambda i, ms: ms + (1000 if i >= 25 else 0))
    assert t.counters.resyncs == 1
    steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(frames)]
    assert all(s >= 0 for s in steps)
    assert max(steps) >= 1000 and sorted(steps)[-2] <= FRAME_MS + 1
    assert frames[-1].timestamp >= T0 + SECONDS * 1000 - 2 * FRAME_MS


def test_lagging_clock_never_sends_time_back() -> None:
    """A unit whose clock runs 5% slow: the output re-anchors on it but holds still rather
    than step back."""
    payloads = CASES["g711a-40ms"].payloads() * 3
    t = AudioTranscoder("pcm_alaw")
    frames = run(t, payloads, clock=lambda i, ms: T0 + i * 38)
    assert t.counters.resyncs >= 2
    times = [f.timestamp for f in frames]
    assert all(b >= a for a, b in itertools.pairwise(times))
    assert abs(times[-1] - (T0 + len(payloads) * 38)) <= 300 + 2 * FRAME_MS


def test_unit_clock_reset_is_followed() -> None:
    """The unit's clock set back an hour: the audio follows it (the FLV muxer's Timeline
    re-anchors all tracks on such a jump) and goes on evenly from there."""
    payloads = CASES["g711a-40ms"].payloads()
    t = AudioTranscoder("pcm_alaw")
    frames = run(t, payloads, clock=lambda i, ms: ms - (3_600_000 if i >= 25 else 0))
    times = [f.timestamp for f in frames]
    back = [i for i, (a, b) in enumerate(itertools.pairwise(times)) if b < a]
    assert len(back) == 1 and times[back[0]] - times[back[0] + 1] > MAX_GAP
    after = times[back[0] + 1 :]
    assert all(abs(b - a - FRAME_MS) <= 1 for a, b in itertools.pairwise(after))


def test_g726_rate_from_jittery_timestamps() -> None:
    """The rate comes from a frame's size and the step to the next frame even when the
    unit's clock jitters by a millisecond; a frame whose length fits no rate is skipped."""
    payloads = CASES["g726-24k"].payloads()
    t = AudioTranscoder("g726")
    odd = (b"\x55" * 100, 320)  # 100 bytes over 40 ms: 2.5 bits a sample
    frames = run(t, [odd] + payloads, clock=lambda i, ms: ms + (i % 3) - 1)
    assert t.g726_bits == 3
    assert (t.counters.skipped, t.last_error) == (
        1,
        "G.726 frame of 100 bytes lasting 41 ms fits no rate of 16-40 kbit/s",
    )
    assert t.counters.samples == SECONDS * RATE
    assert dominant(heard(frames)[RATE : RATE + 1024], RATE) == TONE


def test_construction_errors_in_words() -> None:
    with pytest.raises(TranscodeError, match="sends AAC already"):
        AudioTranscoder.for_payload_type(19)
    with pytest.raises(TranscodeError, match="G.729 is not supported"):
        AudioTranscoder.for_payload_type(5)
    with pytest.raises(TranscodeError, match="2-5 bits a sample, not 6"):
        AudioTranscoder("g726", g726_bits=6)
    with pytest.raises(TranscodeError, match="g726le or g726"):
        AudioTranscoder("g726", g726_decoder="g726be")
    assert AudioTranscoder.for_payload_type(6).codec_name == "pcm_alaw"
    assert AudioTranscoder.for_payload_type(26).codec_name == "adpcm_ima"


# -- the corpus's real captures ---------------------------------------------------------------

_CAPTURED = [
    p
    for p in (
        parse_packet(bytes.fromhex(r["hex"]))
        for r in records("jt1078_packets.jsonl")
        if r["kind"] == "jt1078_packet"
    )
    if p.data_type == DataType.AUDIO
]


def _captured(payload_type: int) -> list[tuple[bytes, int]]:
    seen: dict[bytes, int] = {}
    for p in _CAPTURED:
        if p.payload_type == payload_type:
            seen.setdefault(p.payload, p.timestamp)
    return list(seen.items())


def _rough(t: AudioTranscoder, captured: list[tuple[bytes, int]]) -> float:
    frames = [f for payload, ms in captured for f in t.feed(payload, ms)] + t.flush()
    assert t.counters.skipped == 0
    return roughness(heard(frames)[AAC:])  # past the encoder's priming


def test_captured_ima_adpcm_is_dvi4() -> None:
    """The corpus's Streamax-like IMA-ADPCM (HiSilicon header, 164-byte blocks) is DVI4:
    read so, each block's predictor is the last sample of the block before; and what the
    transcoder makes of it is that audio (the other reading is something else)."""
    captured = _captured(26)
    assert len(captured) >= 20 and all(
        classify_audio(26, p).hisilicon for p, _ in captured
    )
    blocks = [classify_audio(26, p).data for p, _ in captured]
    reference = [x for b in blocks for x in dvi4_decode(b)]
    assert all(
        classify_audio(26, b).ima_state[0] == dvi4_decode(a)[-1]  # type: ignore[index]
        for a, b in itertools.pairwise(blocks)
    )

    def transcoded(t: AudioTranscoder) -> list[float]:
        frames = [
            f for payload, ms in captured for f in t.feed(payload, ms)
        ] + t.flush()
        assert t.counters.skipped == 0
        return heard(frames)[AAC:]  # past the encoder's priming

    assert correlation(transcoded(AudioTranscoder("adpcm_ima")), reference) > 0.7
    assert (
        abs(
            correlation(
                transcoded(AudioTranscoder("adpcm_ima", ima_layout="wav")), reference
            )
        )
        < 0.3
    )


def test_captured_g726_is_audio() -> None:
    """The corpus's G.726 (120-byte frames: 24 kbit/s) decodes to audio as g726le only."""
    captured = _captured(8)
    assert captured and all(len(p) == 120 for p, _ in captured)
    assert _rough(AudioTranscoder("g726", g726_bits=3), captured) < 0.2
    assert (
        _rough(AudioTranscoder("g726", g726_bits=3, g726_decoder="g726"), captured)
        > 0.3
    )


# -- into FLV -----------------------------------------------------------------------------------


def test_aac_frames_mux_into_flv_ffmpeg_plays() -> None:
    """Pictures and the transcoded audio through FlvMuxer: FFmpeg finds the AAC track and
    decodes every frame of it, as long as the tone lasted."""
    video = clip()  # 3 s at 25 fps
    payloads = CASES["g711a-40ms"].payloads()
    t = AudioTranscoder("pcm_alaw")
    mux = FlvMuxer(audio=True)
    out = [mux.header()]
    audio_at = 0
    for au in video:
        ms = T0 + au.index * 40
        out += [tag.data for tag in mux.video(au.data, ms)]
        while audio_at < len(payloads) and T0 + audio_at * 40 <= ms:
            for f in t.feed(payloads[audio_at][0], T0 + audio_at * 40):
                out += [tag.data for tag in mux.aac(f.data, f.timestamp, f.config)]
            audio_at += 1
    decoded = decode_flv(b"".join(out))
    assert decoded.audio_codec == "aac" and decoded.errors == 0
    assert decoded.audio_samples == t.counters.aac_frames * AAC
    assert decoded.audio_samples >= SECONDS * RATE - 2 * AAC
