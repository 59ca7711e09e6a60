"""H.265 through the media server over real loopback sockets, judged by FFmpeg: a scripted
DVR pushes the H.265 clip as JT/T 1078 packets (payload type 99); a viewer as it comes
decodes HEVC (enhanced FLV), viewers asking ``codec=h264`` decode H.264 from the one
transcoder they share; a codec the server does not give is refused in words."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer

from cmsv6.plugins.media.fanout import CLOSE_BAD_REQUEST, CLOSE_DEVICE, StreamKey
from cmsv6.protocols.jt1078.packet import DataType
from tests.media.tones import dominant
from tests.plugins.media.loopback import dvr, http_viewer, ws_viewer
from tests.plugins.media.support import PHONE, frames, packets, play, token, wire
from tests.plugins.media.test_hevc_fanout import hevc, watch
from tests.plugins.media.test_loopback import serve
from tests.support.device import until, within

KEY = StreamKey(PHONE, 1, "main")


def live(codec: str | None = None) -> str:
    extra = f"&codec={codec}" if codec is not None else ""
    return f"/live/{PHONE}/1.flv?stream=main{extra}&token={token()}"


@pytest_twisted.inlineCallbacks
def test_h265_as_hevc_and_as_h264_to_each_viewer_who_asks() -> None:
    """One WS-FLV viewer as it comes, a WS-FLV and an HTTP-FLV viewer asking codec=h264:
    the first decodes every picture as HEVC, the other two every picture as H.264 (the
    same bytes: one transcoder), at the unit's times, increasing, keyframes where the clip
    has them, AAC with the tone in all. When the DVR hangs up they are closed in words
    and the transcoder's thread ends."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        native, _ = ws_viewer(reactor, served.web, live())
        ws264, _ = ws_viewer(reactor, served.web, live("h264"))
        http264 = yield http_viewer(reactor, served.web, live("H264"))
        yield until(lambda: len(served.media.viewers) == 3, "three viewers")
        opener.answers[0].callback(None)
        c = hevc()
        sent = frames(c, video_type=99)
        device = yield dvr(reactor, served.jt1078)
        stream = served.media.streams[KEY]
        # a second of the clip at a time, as a device paces it: the transcoder keeps up
        cut = packets(sent)
        for second in range(4):
            device.send(wire(p for p in cut if p.timestamp - sent[0].timestamp in range(second * 1000, second * 1000 + 1000)))
            yield until(lambda: stream.frames >= 50 * (second + 1) - 1, "a second of the clip in")
            yield until(lambda: stream.derived is not None and not stream.derived.video_transcoder.pending,
                        "the transcoder to catch up")  # fmt: skip
        derived = stream.derived
        transcoder = derived.video_transcoder
        yield until(lambda: transcoder.codec.counters.pictures_out == len(c.video)
                    and derived.frames == len(c.video) + len(c.audio), "every frame transcoded")  # fmt: skip
        yield until(lambda: len(http264.body) >= len(ws264.viewer.flv) > 0
                    and len(native.viewer.flv) > 0, "the viewers' bytes")  # fmt: skip
        device.transport.loseConnection()
        for factory in (native, ws264):
            code, reason = yield within(factory.closed, "a WS viewer closed")
            assert code == CLOSE_DEVICE and "stopped its stream" in reason
        yield within(http264.lost, "the HTTP viewer closed")
        yield until(lambda: not transcoder.alive, "the transcoder's thread to end")
        times = tuple(f.timestamp for f in c.video)
        keys = tuple(f.timestamp for f in c.video if f.data_type == DataType.I_FRAME)
        assert http264.body == ws264.viewer.flv
        for data, codec in ((native.viewer.flv, "hevc"), (ws264.viewer.flv, "h264")):
            got = watch(data)
            assert got.codec == codec and got.errors == 0
            assert got.sizes == ((352, 288),) * len(c.video)
            assert got.pts == times and got.keyframes == keys
            played = play(data)
            assert played.audio_codec == "aac"
            assert dominant(list(played.audio[8000:16000]), 8000) == 1000
        assert sum(transcoder.dropped.values()) == 0
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_an_unknown_codec_is_refused_in_words() -> None:
    """codec=vp9: the HTTP-FLV viewer gets 400 and the WS-FLV viewer close code 4004, both
    with words saying what may be asked; the device is not asked to stream."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        factory, _ = ws_viewer(reactor, served.web, live("vp9"))
        http = yield http_viewer(reactor, served.web, live("vp9"))
        code, reason = yield within(factory.closed, "the WS viewer closed")
        yield within(http.lost, "the HTTP viewer answered")
        assert code == CLOSE_BAD_REQUEST and "'vp9'" in reason and "h264" in reason
        assert http.status == 400 and "codec 'vp9' is not one this server gives" in http.body.decode()
        assert opener.answers == [] and served.media.viewers == set()
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_the_last_h264_viewer_leaving_ends_the_transcoder_not_the_stream() -> None:
    """An H.264 viewer leaving an H.265 stream another viewer watches as it comes: the
    transcoder's thread ends, the stream and its viewer go on (no linger, no close)."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        native, _ = ws_viewer(reactor, served.web, live())
        h264, _ = ws_viewer(reactor, served.web, live("h264"))
        yield until(lambda: len(served.media.viewers) == 2, "two viewers")
        opener.answers[0].callback(None)
        sent = frames(hevc(), video_type=99)
        device = yield dvr(reactor, served.jt1078)
        cut = packets(sent)
        device.send(wire(cut[:120]))
        stream = served.media.streams[KEY]
        yield until(lambda: stream.derived is not None and len(h264.viewer.flv) > 0, "H.264 out")
        transcoder = stream.derived.video_transcoder
        h264.viewer.sendClose(1000)
        yield within(h264.closed, "the H.264 viewer gone")
        yield until(lambda: not transcoder.alive, "the transcoder's thread to end")
        assert stream.derived is None and served.media.entries[KEY].linger is None
        device.send(wire(cut[120:]))
        yield until(lambda: stream.frames == len(sent), "the rest of the clip")
        assert not native.closed.called and len(served.media.viewers) == 1
    finally:
        yield served.stop()
