"""The media server over real loopback sockets: a scripted DVR pushes the test clip as JT/T
1078 packets; WS-FLV and HTTP-FLV viewers collect what they are sent, and FFmpeg decodes
it."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from cmsv6.plugins.media.fanout import (
    CLOSE_DEVICE,
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNSUPPORTED,
    StreamKey,
)
from cmsv6.protocols.jt1078.packet import DataType
from tests.media.tones import dominant
from tests.plugins.media.loopback import (
    Served,
    dvr,
    http_viewer,
    stalled_viewer,
    ws_viewer,
)
from tests.plugins.media.support import (
    PHONE,
    clip,
    frames,
    packets,
    play,
    token,
    video_times,
    wire,
)
from tests.support.device import until, within

KEY = StreamKey(PHONE, 1, "main")


def live(channel: int = 1, stream: str = "main", tok: str | None = None) -> str:
    tok = token(channel=channel, stream=stream) if tok is None else tok
    return f"/live/{PHONE}/{channel}.flv?stream={stream}&token={tok}"


class HeldOpener:
    """Answers each open when the test says (``answers``); records closes."""

    def __init__(self) -> None:
        self.answers: list[defer.Deferred[Any]] = []
        self.closes: list[tuple[str, int, str]] = []

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(d)
        return d

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        self.closes.append((phone, channel, stream))
        return defer.succeed(None)


@defer.inlineCallbacks
def serve(**changes: Any) -> Any:
    from twisted.internet import reactor

    opener = HeldOpener()
    served = yield Served(reactor, opener, **changes).start()
    return served, opener


@pytest_twisted.inlineCallbacks
def test_ws_and_http_viewers_get_every_frame_and_the_tone() -> None:
    """A WS-FLV and an HTTP-FLV viewer of one channel: the device is asked once; from the
    DVR's packets each viewer's FLV decodes to every picture at the unit's times, keyframes
    where the clip has them, nothing corrupt, and AAC carrying the 1 kHz tone. When the DVR
    hangs up, the WS viewer is closed with the device code and words."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        factory, _ = ws_viewer(reactor, served.web, live())
        http = yield http_viewer(reactor, served.web, live())
        yield until(lambda: len(served.media.viewers) == 2, "two viewers")
        assert len(opener.answers) == 1
        opener.answers[0].callback(None)
        sent = frames(clip())
        device = yield dvr(reactor, served.jt1078)
        device.send(wire(packets(sent)))
        stream = served.media.streams[KEY]
        yield until(lambda: stream.frames == len(sent), "every frame in")
        expected = video_times(sent)
        yield until(lambda: len(http.body) >= stream.counters["bytes_out"] // 2 - 4096,
                    "the HTTP viewer's bytes")  # fmt: skip
        device.transport.loseConnection()
        code, reason = yield within(factory.closed, "the WS viewer closed")
        yield within(http.lost, "the HTTP viewer closed")
        assert code == CLOSE_DEVICE and "stopped its stream" in reason and PHONE in reason
        for data in (factory.viewer.flv, http.body):
            played = play(data)
            assert list(played.video_pts) == expected
            keys = [f.timestamp - sent[0].timestamp for f in sent
                    if f.data_type == DataType.I_FRAME]  # fmt: skip
            assert list(played.keyframes) == keys
            assert played.corrupt == 0 and played.errors == 0
            assert played.audio_codec == "aac"
            assert dominant(list(played.audio[8000:16000]), 8000) == 1000
        assert b"content-type: video/x-flv" in http.headers
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_a_viewer_joining_a_running_stream_starts_at_a_keyframe() -> None:
    """An HTTP-FLV viewer who comes 1.5 s into a running stream is sent a keyframe first:
    its first decoded picture is the keyframe at 1 s, and all after it decode."""
    from twisted.internet import reactor

    sent = frames(clip())
    half = next(i for i, f in enumerate(sent) if f.timestamp - sent[0].timestamp >= 1500)
    served, opener = yield serve()
    try:
        yield http_viewer(reactor, served.web, live())
        yield until(lambda: opener.answers, "the open")
        opener.answers[0].callback(None)
        pieces = packets(sent)
        cut = sum(len(packets([f])) for f in sent[:half])
        device = yield dvr(reactor, served.jt1078)
        device.send(wire(pieces[:cut]))
        stream = yield until_stream(served)
        yield until(lambda: stream.frames == half, "the first half in")
        late = yield http_viewer(reactor, served.web, live())
        yield until(lambda: len(served.media.viewers) == 2, "the second viewer")
        device.send(wire(pieces[cut:]))
        yield until(lambda: stream.frames == len(sent), "the second half in")
        yield until(lambda: play_ok(late.body, 100 - 25), "the late viewer's pictures")
        played = play(late.body)
        assert played.video_pts[0] == 1000 and played.keyframes[0] == 1000
        assert list(played.video_pts) == [t for t in video_times(sent) if t >= 1000]
        assert played.corrupt == 0 and played.errors == 0
    finally:
        yield served.stop()


def play_ok(data: bytes, pictures: int) -> bool:
    try:
        return len(play(data).video_pts) >= pictures
    except Exception:  # noqa: BLE001 - not enough bytes for FFmpeg yet
        return False


@defer.inlineCallbacks
def until_stream(served: Served) -> Any:
    yield until(lambda: KEY in served.media.streams
                and served.media.streams[KEY].source is not None, "the device's stream")  # fmt: skip
    return served.media.streams[KEY]


@pytest_twisted.inlineCallbacks
def test_lost_packets_never_make_a_corrupt_picture() -> None:
    """Packets lost inside a P-frame and inside an I-frame: the viewer never gets a picture
    that decodes corrupt; what is missing is whole pictures, up to the next keyframe."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        viewer = yield http_viewer(reactor, served.web, live())
        yield until(lambda: opener.answers, "the open")
        opener.answers[0].callback(None)
        sent = frames(clip())
        pieces = packets(sent)
        # A piece of a P-frame at ~0.5 s and the second piece of the keyframe at 2 s.
        p_frame = next(i for i, p in enumerate(pieces) if p.data_type == DataType.P_FRAME
                       and p.timestamp - sent[0].timestamp >= 500 and p.subpackage == 1)
        i_frame = next(i for i, p in enumerate(pieces) if p.data_type == DataType.I_FRAME
                       and p.timestamp - sent[0].timestamp == 2000 and p.subpackage == 3)
        kept = [p for i, p in enumerate(pieces) if i not in (p_frame, i_frame)]
        device = yield dvr(reactor, served.jt1078)
        device.send(wire(kept))
        stream = yield until_stream(served)
        yield until(lambda: play_ok(viewer.body, 25), "pictures")
        yield until(lambda: served.media.counters["dropped:lost"] == 2, "two frames lost")
        device.transport.loseConnection()
        yield within(viewer.lost, "the viewer closed")
        played = play(viewer.body)
        assert played.corrupt == 0 and played.errors == 0
        times = set(played.video_pts)
        assert 0 in times and 3000 in times and 3960 in times
        assert not any(500 <= t < 1000 for t in times)  # the rest of that GOP
        assert not any(2000 <= t < 3000 for t in times)
        assert stream.counters["dropped:awaiting keyframe"] > 0
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_urls_without_a_valid_token_are_refused_in_words() -> None:
    """No token, an expired one, one for another vehicle: HTTP-FLV answers 403 with the
    reason as text; WS-FLV closes with 4001/4003 and the reason. No device is asked."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        cases = [
            (f"/live/{PHONE}/1.flv?stream=main", CLOSE_UNAUTHORIZED, "no viewing token"),
            (live(tok=token(expires=1)), CLOSE_UNAUTHORIZED, "expired"),
            (f"/live/13900000000/1.flv?stream=main&token={token()}", CLOSE_FORBIDDEN,
             f"grants device {PHONE}"),
        ]  # fmt: skip
        for path, code, words in cases:
            viewer = yield http_viewer(reactor, served.web, path)
            yield within(viewer.lost, "the refusal")
            assert viewer.status == 403 and words in viewer.body.decode(), viewer.raw
            factory, _ = ws_viewer(reactor, served.web, path)
            got = yield within(factory.closed, "the WS refusal")
            assert got[0] == code and words in got[1]
        assert opener.answers == [] and served.media.viewers == set()
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_a_codec_flv_does_not_carry_is_a_clear_error_to_the_viewer() -> None:
    """A device streaming a codec FLV output does not carry (AVS, table 12's 100; H.265
    is served, tests/plugins/media/test_hevc_loopback.py): the WS-FLV viewer is closed
    with 4015 and words naming it; an HTTP-FLV viewer who has had nothing yet gets 415
    with them."""
    from twisted.internet import reactor

    served, opener = yield serve()
    try:
        factory, _ = ws_viewer(reactor, served.web, live())
        http = yield http_viewer(reactor, served.web, live())
        yield until(lambda: len(served.media.viewers) == 2, "two viewers")
        opener.answers[0].callback(None)
        device = yield dvr(reactor, served.jt1078)
        device.send(wire(packets(frames(clip(), video_type=100)[:40])))
        code, reason = yield within(factory.closed, "the WS viewer closed")
        assert code == CLOSE_UNSUPPORTED and "video coding type 100" in reason
        yield within(http.lost, "the HTTP viewer answered")
        assert http.status == 415 and "video coding type 100" in http.body.decode()
    finally:
        yield served.stop()


@pytest.mark.deadline(240)
@pytest.mark.parametrize("kind", ["http", "ws"])
@pytest_twisted.inlineCallbacks
def test_a_stalled_viewer_does_not_hold_up_another(kind: str) -> None:
    """One viewer (HTTP-FLV or WS-FLV) stops reading while the DVR sends 24 s of video as
    fast as it can: the WS-FLV viewer beside it gets every picture; the stalled one's queue
    never holds more than ``viewer_queue`` bytes and it skips to keyframes (or is closed as
    hopeless), so the server's memory for it stays within that bound."""
    from twisted.internet import reactor

    limit = 64 * 1024
    served, opener = yield serve(viewer_queue=limit)
    stalled = None
    try:
        if kind == "http":
            stalled = stalled_viewer(served.web, live())
        else:
            stalled_factory, _ = ws_viewer(reactor, served.web, live())
            yield until(lambda: hasattr(stalled_factory, "viewer"), "the stalled socket")
            client = stalled_factory.viewer.transport
            client.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.pauseProducing()  # reads nothing more
        yield until(lambda: len(served.media.viewers) == 1, "the stalled viewer")
        (slow,) = served.media.viewers
        # A slow link: the kernel holds little for it (loopback would buffer megabytes).
        transport = (slow.request.channel.transport if kind == "http"
                     else slow.protocol.transport)  # fmt: skip
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        factory, _ = ws_viewer(reactor, served.web, live())
        yield until(lambda: len(served.media.viewers) == 2, "two viewers")
        opener.answers[0].callback(None)
        sent = frames(clip(), loops=6)
        device = yield dvr(reactor, served.jt1078)
        device.send(wire(packets(sent)))
        stream = yield until_stream(served)
        yield until(lambda: stream.frames == len(sent), "every frame in", timeout=120)
        yield until(lambda: play_ok(factory.viewer.flv, 600), "the WS viewer's pictures",
                    timeout=120)  # fmt: skip
        played = play(factory.viewer.flv)
        assert list(played.video_pts) == video_times(sent) and played.corrupt == 0
        assert slow.skips >= 1
        assert 0 < slow.max_queued <= limit
        # What it was sent (the kernel's small buffer, Twisted's 64 KiB, then it paused):
        # a small part of the stream.
        assert slow.sent < stream.counters["bytes_out"] // 4
    finally:
        if stalled is not None:
            stalled.close()
        yield served.stop()
