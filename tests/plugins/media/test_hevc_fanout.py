"""H.265 from a device, fanned out (no sockets), judged by FFmpeg: served as it comes as
enhanced FLV (hvc1) and decoded as HEVC; viewers who ask for H.264 share one transcoder
(a thread, started with the first of them, ended with the last) and decode H.264; audio
goes along in both."""

from __future__ import annotations

import io
import queue
from collections import defaultdict
from typing import Any, Callable

import av
import pytest
from attrs import frozen

from cmsv6.media.clip import Clip, load_clip
from cmsv6.plugins.media.fanout import (
    DeviceStream,
    StreamKey,
    TranscodedStream,
    device_error,
)
from tests.media.tones import dominant
from tests.plugins.media.support import GOP, PHONE, Collector, frames, play

KEY = StreamKey(PHONE, 1, "main")


def hevc(seconds: int = 4) -> Clip:
    """The simulator's clip in H.265 (CIF, 1 s GOPs, the 1 kHz tone in G.711A)."""
    return load_clip(seconds=seconds, gop=GOP, codec="h265")


class ThreadReactor:
    """What a transcoder needs of a reactor: calls from its thread, queued; ``run_until``
    runs them on the test's thread until ``done()`` (bounded: a call comes within
    ``timeout`` seconds or the test fails)."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        self.calls.put((f, args))

    def run_until(self, done: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        while not done():
            try:
                f, args = self.calls.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no call from the transcoder within {timeout} s waiting for {what}")
            f(*args)


@frozen
class Watched:
    """What FFmpeg made of a viewer's FLV: the video codec, picture sizes and times."""

    codec: str
    sizes: tuple[tuple[int, int], ...]
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    errors: int


def watch(data: bytes) -> Watched:
    container = av.open(io.BytesIO(data), format="flv")
    codec = container.streams.video[0].codec_context.name
    sizes, pts, keys = [], [], []
    errors = 0
    for packet in container.demux(video=0):
        if packet.size == 0:
            continue
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            errors += 1
            continue
        for f in decoded:
            sizes.append((f.width, f.height))
            pts.append(int(f.pts))
            if f.key_frame:
                keys.append(int(f.pts))
    container.close()
    return Watched(codec, tuple(sizes), tuple(pts), tuple(keys), errors)


def device_stream(reactor: Any = None, audio: bool | None = None) -> DeviceStream:
    counters: defaultdict[str, Any] = defaultdict(int)
    return DeviceStream(KEY, 4 << 20, counters, lambda: 0.0, audio, reactor=reactor)


def h264_viewer() -> Collector:
    viewer = Collector()
    viewer.codec = "h264"
    return viewer


def catch_up(reactor: ThreadReactor, stream: DeviceStream) -> None:
    """Let the transcoder take what it was given, as a device pacing its frames does: here
    it never falls behind."""
    reactor.run_until(
        lambda: stream.derived is None or not stream.derived.video_transcoder.pending,
        "the transcoder to catch up",
    )


def test_h265_is_served_as_hevc_with_its_audio() -> None:
    """A viewer of an H.265 device gets enhanced FLV: FFmpeg decodes every picture as HEVC
    at CIF, at the unit's times from 0 in order, keyframes where the clip has them, and
    the audio as AAC carrying the 1 kHz tone. No transcoder is made for it."""
    c = hevc()
    sent = frames(c, video_type=99)
    stream = device_stream(ThreadReactor())
    viewer = Collector()
    stream.add(viewer)
    for f in sent:
        stream.push(f)
    stream.finish_audio()
    got = watch(viewer.data)
    assert got.codec == "hevc" and got.errors == 0
    assert got.sizes == ((352, 288),) * len(c.video)
    assert got.pts == tuple(f.timestamp for f in c.video)
    assert got.keyframes == (0, 1000, 2000, 3000)
    played = play(viewer.data)
    assert played.audio_codec == "aac" and dominant(list(played.audio[8000:16000]), 8000) == 1000
    assert stream.derived is None and stream.video_codec == 99


def test_h264_viewers_share_one_transcoder_and_decode_h264() -> None:
    """Two viewers asking for H.264 of an H.265 stream, one as it comes: the two get the
    same H.264 (one transcoder), every picture from the first keyframe at CIF with the
    unit's times, increasing, IDR pictures where the H.265 had IRAP pictures, and AAC
    with the tone; the third gets HEVC."""
    c = hevc()
    sent = frames(c, video_type=99)
    reactor = ThreadReactor()
    stream = device_stream(reactor)
    a, b, native = h264_viewer(), h264_viewer(), Collector()
    for v in (a, b, native):
        stream.add(v)  # before the stream starts: sorted out when it does
    for f in sent:
        stream.push(f)
        catch_up(reactor, stream)
    derived = stream.derived
    assert isinstance(derived, TranscodedStream)
    assert a.stream is b.stream is derived and native.stream is stream
    reactor.run_until(lambda: derived.frames >= len(c.video) + len(c.audio), "every frame back")
    assert a.data == b.data
    got = watch(a.data)
    assert got.codec == "h264" and got.errors == 0
    assert got.sizes == ((352, 288),) * len(c.video)
    assert got.pts == tuple(f.timestamp for f in c.video)
    assert got.keyframes == (0, 1000, 2000, 3000)
    assert watch(native.data).codec == "hevc"
    played = play(a.data)
    assert played.audio_codec == "aac" and played.errors == 0
    assert dominant(list(played.audio[8000:16000]), 8000) == 1000
    assert derived.video_transcoder.codec.counters.pictures_out == len(c.video)
    assert sum(derived.video_transcoder.dropped.values()) == 0
    stream.end(device_error("the device stopped"))
    derived.video_transcoder.join(10)
    assert not derived.video_transcoder.alive and a.closed and b.closed


def test_a_late_h264_viewer_starts_at_the_next_keyframe() -> None:
    """An H.264 viewer joining a running H.265 stream gets the transcoded stream from the
    next IRAP picture on: it starts with a keyframe and decodes to the rest of the clip."""
    c = hevc()
    sent = frames(c, video_type=99)
    reactor = ThreadReactor()
    stream = device_stream(reactor)
    stream.add(Collector())
    late = h264_viewer()
    for n, f in enumerate(sent):
        if n == len(sent) // 8:  # half a second in
            stream.add(late)
        stream.push(f)
        catch_up(reactor, stream)
    derived = stream.derived
    assert derived is not None
    reactor.run_until(lambda: derived.video_transcoder.codec.counters.pictures_out == 75,
                      "the last three GOPs")  # fmt: skip
    got = watch(late.data)
    assert got.codec == "h264" and got.errors == 0
    assert got.keyframes[0] == got.pts[0] == 0
    assert len(got.pts) == 75 and list(got.pts) == sorted(set(got.pts))
    assert derived.video_transcoder.dropped["before the first keyframe"] > 0


def test_the_transcoder_ends_with_its_last_viewer() -> None:
    """The transcoder's thread is started with the first H.264 viewer and ended when the
    last leaves; a viewer asking again later gets a new one; the stream itself goes on."""
    c = hevc(seconds=2)
    sent = frames(c, video_type=99)
    reactor = ThreadReactor()
    stream = device_stream(reactor)
    native = Collector()
    stream.add(native)
    for f in sent[:10]:
        stream.push(f)
    assert stream.derived is None
    a, b = h264_viewer(), h264_viewer()
    stream.add(a)
    stream.add(b)
    first = stream.derived
    assert first is not None and first.video_transcoder.alive
    a.end()
    assert stream.derived is first and first.video_transcoder.alive
    b.end()
    assert stream.derived is None and first.video_transcoder.stopped
    first.video_transcoder.join(10)
    assert not first.video_transcoder.alive
    assert stream.watched and not native.closed
    again = h264_viewer()
    stream.add(again)
    assert stream.derived is not None and stream.derived is not first
    stream.derived.video_transcoder.stop()


def test_an_h264_viewer_of_an_h264_device_watches_the_stream_itself() -> None:
    """Asking for H.264 of a device that sends H.264: the same stream, no transcoder."""
    sent = frames(load_clip(seconds=1, gop=GOP), video_type=98)
    stream = device_stream(ThreadReactor())
    viewer = h264_viewer()
    stream.add(viewer)
    for f in sent:
        stream.push(f)
    assert viewer.stream is stream and stream.derived is None
    assert watch(viewer.data).codec == "h264"


def test_without_a_reactor_an_h264_viewer_of_h265_is_told_why() -> None:
    """A stream that cannot transcode (no reactor to hand pictures back) refuses a viewer
    asking for H.264 of H.265 in words; the others go on."""
    stream = device_stream()
    native = Collector()
    stream.add(native)
    for f in frames(hevc(seconds=1), video_type=99)[:5]:
        stream.push(f)
    viewer = h264_viewer()
    stream.add(viewer)
    assert viewer.closed and viewer.error is not None and "H.264" in viewer.error.reason
    assert not native.closed
