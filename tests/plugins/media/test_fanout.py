"""One device stream's FLV fanned out to viewers (no sockets): what every viewer gets,
what one who joins late gets, what a slow one gets, and what happens to a codec FLV does
not carry."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs

from cmsv6.plugins.media.fanout import (
    CLOSE_TOO_SLOW,
    CLOSE_UNSUPPORTED,
    DeviceStream,
    StreamKey,
)
from cmsv6.protocols.jt1078.packet import DataType
from tests.media.tones import dominant, dvi4_blocks, roughness, tone
from tests.plugins.media.support import (
    PHONE,
    Collector,
    clip,
    frames,
    play,
    video_times,
)

KEY = StreamKey(PHONE, 1, "main")


def device_stream(gop_limit: int = 4 << 20, audio: bool | None = None) -> DeviceStream:
    counters: defaultdict[str, Any] = defaultdict(int)
    return DeviceStream(KEY, gop_limit, counters, lambda: 0.0, audio)


def test_every_viewer_gets_every_frame_and_the_tone() -> None:
    """Two viewers from the start: FFmpeg decodes every picture of the clip from each one's
    FLV, at the times the unit stamped (from 0), keyframes where the clip has them, nothing
    corrupt, and the audio as AAC carrying the 1 kHz tone; both got the same bytes."""
    sent = frames(clip())
    stream = device_stream()
    a, b = Collector(), Collector()
    stream.add(a)
    stream.add(b)
    for f in sent:
        stream.push(f)
    stream.finish_audio()
    assert a.data == b.data
    played = play(a.data)
    assert list(played.video_pts) == video_times(sent)
    keys = [f.timestamp - sent[0].timestamp for f in sent if f.data_type == DataType.I_FRAME]
    assert list(played.keyframes) == keys and len(keys) == 4
    assert played.corrupt == 0 and played.errors == 0
    assert played.audio_codec == "aac"
    assert len(played.audio) >= 3 * 8000
    assert dominant(list(played.audio[8000:16000]), 8000) == 1000
    assert a.data[4] & 0x05 == 0x05  # the FLV header announces audio and video


def test_a_viewer_joining_late_starts_at_the_last_keyframe() -> None:
    """A viewer who joins 1.5 s in gets the header, the sequence headers and the GOP from
    the keyframe at 1 s at once: its first decoded picture is that keyframe, and every
    picture after it decodes."""
    sent = frames(clip())
    stream = device_stream()
    early = Collector()
    stream.add(early)
    half = next(i for i, f in enumerate(sent) if f.timestamp - sent[0].timestamp >= 1500)
    for f in sent[:half]:
        stream.push(f)
    late = Collector()
    stream.add(late)
    assert late.data  # at once, before any further frame
    for f in sent[half:]:
        stream.push(f)
    played = play(late.data)
    assert played.video_pts[0] == 1000 and played.keyframes[0] == 1000
    assert list(played.video_pts) == [t for t in video_times(sent) if t >= 1000]
    assert played.corrupt == 0 and played.errors == 0


def test_no_audio_means_a_video_only_header() -> None:
    """A device that sends no audio: the FLV announces video only (a player told to expect
    audio would stall) and plays."""
    stream = device_stream()
    viewer = Collector()
    stream.add(viewer)
    for f in frames(clip(), audio=False):
        stream.push(f)
    assert viewer.data[4] & 0x05 == 0x01
    played = play(viewer.data)
    assert played.audio_codec is None and len(played.video_pts) == 100


def test_audio_after_the_wait_is_dropped_not_announced() -> None:
    """Audio that first comes well after the first keyframe finds the stream started
    without it: it is dropped and counted, and the header never promised it."""
    sent = [f for f in frames(clip()) if f.data_type != DataType.AUDIO
            or f.timestamp - frames(clip())[0].timestamp >= 1000]  # fmt: skip
    stream = device_stream()
    viewer = Collector()
    stream.add(viewer)
    for f in sent:
        stream.push(f)
    assert viewer.data[4] & 0x05 == 0x01
    assert stream.counters["dropped:audio not announced"] > 0


def test_a_unit_changing_audio_codec_gets_a_new_transcoder() -> None:
    """Audio that turns from G.711A to IMA-ADPCM 2 s in: the stream's transcoder is
    replaced, and the tone still comes out as AAC, not noise, after the change."""
    sent = frames(clip())
    t0 = sent[0].timestamp
    blocks = dvi4_blocks(tone(4 * 8000))  # 40 ms each
    changed = [
        attrs.evolve(f, payload_type=26, payload=blocks[(f.timestamp - t0) // 40])
        if f.data_type == DataType.AUDIO and f.timestamp - t0 >= 2000 else f
        for f in sent
    ]  # fmt: skip
    stream = device_stream()
    viewer = Collector()
    stream.add(viewer)
    for f in changed:
        stream.push(f)
    stream.finish_audio()
    played = play(viewer.data)
    assert played.errors == 0 and len(played.audio) >= 3 * 8000
    after = list(played.audio[24000:28000])
    assert dominant(after, 8000) == 1000 and roughness(after) < 1.0  # a 1 kHz sine: 0.59
    assert stream.counters["dropped:audio not decodable"] == 0


def test_a_codec_flv_does_not_carry_closes_every_viewer_with_the_reason() -> None:
    """AVS from the device (payload type 100): each viewer is closed with the
    unsupported-codec code and words naming the codec and the device; one who comes later
    is told at once. (H.265 is served: tests/plugins/media/test_hevc_fanout.py.)"""
    stream = device_stream()
    viewer = Collector()
    stream.add(viewer)
    for f in frames(clip(), video_type=100)[:30]:
        stream.push(f)
    assert viewer.closed and viewer.error is not None
    assert viewer.error.code == CLOSE_UNSUPPORTED and "video coding type 100" in viewer.error.reason
    assert PHONE in viewer.error.reason
    later = Collector()
    stream.add(later)
    assert later.closed and later.error == viewer.error


def test_a_slow_viewer_skips_to_a_keyframe_and_never_holds_more_than_its_bound() -> None:
    """A viewer whose connection is full (paused) from 0.5 s to 2 s: its queue never
    holds more than its bound, it skips to a keyframe when the bound is passed, and once its
    connection drains what it got decodes without a corrupt picture; the viewer beside it
    gets every picture meanwhile."""
    sent = frames(clip())
    limit = 48 * 1024
    stream = device_stream()
    fast, slow = Collector(), Collector(limit)
    stream.add(fast)
    stream.add(slow)
    pause = next(i for i, f in enumerate(sent) if f.timestamp - sent[0].timestamp >= 500)
    cut = next(i for i, f in enumerate(sent) if f.timestamp - sent[0].timestamp >= 2000)
    for f in sent[:pause]:
        stream.push(f)
    slow.pauseProducing()
    for f in sent[pause:cut]:
        stream.push(f)
    assert slow.skips >= 1 and not slow.closed
    assert 0 < slow.max_queued <= limit
    slow.resumeProducing()
    for f in sent[cut:]:
        stream.push(f)
    assert len(play(fast.data).video_pts) == 100
    played = play(slow.data)
    assert played.corrupt == 0 and played.errors == 0
    assert 2000 in played.keyframes and 0 < len(played.video_pts) < 100
    # What it got is whole GOP beginnings: each run of pictures starts at a keyframe.
    assert runs(played.video_pts)[0] == 0
    assert all(start % 1000 == 0 for start in runs(played.video_pts))
    assert stream.counters["viewer_skips"] == slow.skips


def test_a_viewer_full_from_the_start_still_gets_a_playable_stream() -> None:
    """A viewer whose connection is full before the first byte, while 2 s of video come:
    the FLV header is never what its queue drops, so once it drains its stream plays,
    from a keyframe."""
    sent = frames(clip())
    stream = device_stream()
    slow = Collector(48 * 1024)
    stream.add(slow)
    slow.pauseProducing()
    cut = next(i for i, f in enumerate(sent) if f.timestamp - sent[0].timestamp >= 2000)
    for f in sent[:cut]:
        stream.push(f)
    assert slow.skips >= 1
    slow.resumeProducing()
    for f in sent[cut:]:
        stream.push(f)
    assert slow.data.startswith(b"FLV")
    played = play(slow.data)
    assert played.corrupt == 0 and played.errors == 0 and played.keyframes[0] == 2000
    assert all(start % 1000 == 0 for start in runs(played.video_pts))


def runs(pts: tuple[int, ...]) -> list[int]:
    """Where each run of consecutive pictures (one frame interval apart) starts."""
    return [t for i, t in enumerate(pts) if i == 0 or t - pts[i - 1] != 1000 // 25]


def test_a_hopeless_viewer_is_closed() -> None:
    """A viewer whose connection never drains overflows its bound GOP after GOP: after
    more than three overflows in a row it is closed, saying it cannot keep up."""
    stream = device_stream()
    slow = Collector(16 * 1024)
    stream.add(slow)
    slow.pauseProducing()
    for f in frames(clip(), loops=2):
        stream.push(f)
    assert slow.closed and slow.error is not None and slow.error.code == CLOSE_TOO_SLOW
    assert slow.max_queued <= 16 * 1024
    assert slow not in stream.viewers
