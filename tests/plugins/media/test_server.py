"""The media server's stream lifecycle with a fake opener and a ``task.Clock`` (no
sockets): viewing tokens (live, playback and talk-back alike), asking the device, each
step's deadline, sharing one device stream, and closing it ``linger`` seconds after its
last viewer."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task

from cmsv6.media.viewing import View, sign_view, view_key
from cmsv6.plugins.media import playback, talk
from cmsv6.plugins.media.fanout import (
    CLOSE_BAD_REQUEST,
    CLOSE_DEVICE,
    CLOSE_FORBIDDEN,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHORIZED,
    StreamKey,
    ViewerError,
)
from cmsv6.plugins.media.opener import NoOpener, Opened
from cmsv6.plugins.media.server import MediaServer
from cmsv6.protocols.jt1078.frames import Track
from cmsv6.protocols.jt1078.sim import SimIdentity
from tests.plugins.media.support import (
    MEDIA_ID,
    PHONE,
    SERVER_KEY,
    SIM,
    Collector,
    clip,
    config,
    frames,
    play,
    token,
)

KEY = StreamKey(PHONE, 1, "main")


class FakeOpener:
    """Records what it is asked; each open's answer is the test's to give."""

    def __init__(self) -> None:
        self.opens: list[tuple[str, int, str]] = []
        self.closes: list[tuple[str, int, str]] = []
        self.answers: list[defer.Deferred[Any]] = []

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        self.opens.append((phone, channel, stream))
        d: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(d)
        return d

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        self.closes.append((phone, channel, stream))
        return defer.succeed(None)


class Source:
    """A device connection as the server sees one."""

    def __init__(self) -> None:
        self.released: list[Any] = []

    def release(self, stream: Any) -> None:
        self.released.append(stream)


def server(**changes: Any) -> tuple[MediaServer, FakeOpener, task.Clock]:
    clock = task.Clock()
    clock.advance(1_800_000_000)  # the tokens' clock is wall time
    opener = FakeOpener()
    return MediaServer(config(**changes), clock, SERVER_KEY, opener), opener, clock


def test_last_viewer_leaving_closes_the_stream_after_linger() -> None:
    """Two viewers share one device stream (one open); when the last leaves, the device is
    asked to close after exactly ``linger`` seconds, and its connection is released."""
    media, opener, clock = server(linger=30.0)
    a, b = Collector(), Collector()
    media.watch(a, KEY)
    media.watch(b, KEY)
    assert opener.opens == [(PHONE, 1, "main")]
    opener.answers[0].callback(None)
    source = Source()
    stream = media.bind(source, SimIdentity(SIM), 1)
    assert stream is media.streams[KEY]
    a.end()
    clock.advance(60)
    assert opener.closes == []  # b still watches
    b.end()
    clock.advance(29.9)
    assert opener.closes == [] and KEY in media.streams
    clock.advance(0.2)
    assert opener.closes == [(PHONE, 1, "main")]
    assert KEY not in media.streams and source.released == [stream]
    assert media.load() == {"streams": 0, "viewers": 0}


def test_a_viewer_coming_back_within_linger_keeps_the_stream() -> None:
    """A viewer who comes back before ``linger`` is over finds the stream running: nothing
    is closed, nothing opened again, and it starts at once from the kept GOP."""
    media, opener, clock = server(linger=30.0)
    a = Collector()
    media.watch(a, KEY)
    opener.answers[0].callback(None)
    stream = media.bind(Source(), SimIdentity(SIM), 1)
    for f in frames(clip())[:60]:
        stream.push(f)
    a.end()
    clock.advance(20)
    b = Collector()
    media.watch(b, KEY)
    clock.advance(60)
    assert opener.closes == [] and len(opener.opens) == 1
    assert play(b.data).keyframes[:1] == (1000,)


def test_open_failure_reaches_the_viewer_in_words() -> None:
    """The opener's error (which device, which step) is what the viewer is closed with."""
    media, opener, _ = server()
    a = Collector()
    media.watch(a, KEY)
    opener.answers[0].errback(RuntimeError(f"device {PHONE}: offline (no gateway has it)"))
    assert a.closed and a.error is not None and a.error.code == CLOSE_DEVICE
    assert a.error.reason == f"device {PHONE}: offline (no gateway has it)"
    assert KEY not in media.streams


def test_device_that_never_streams_is_reported_after_open_timeout() -> None:
    """The device accepted but never connected: after ``open_timeout`` every viewer is told
    the device did not open its stream, and the device is asked to close it."""
    media, opener, clock = server(open_timeout=10.0)
    a = Collector()
    media.watch(a, KEY)
    opener.answers[0].callback(None)
    clock.advance(9.9)
    assert not a.closed
    clock.advance(0.2)
    assert a.error is not None
    assert a.error.reason == f"device {PHONE} did not open its stream (channel 1) within 10 s" \
        " of accepting the request to"
    assert opener.closes == [(PHONE, 1, "main")] and KEY not in media.streams


def test_login_that_never_answers_is_reported_after_open_timeout() -> None:
    """The request to open got no answer at all: the viewer is told after ``open_timeout``
    and the request is cancelled."""
    media, opener, clock = server(open_timeout=5.0)
    a = Collector()
    media.watch(a, KEY)
    clock.advance(5.1)
    assert a.error is not None and "no answer" in a.error.reason and PHONE in a.error.reason
    assert opener.answers[0].called  # cancelled


def test_standalone_says_no_login_server() -> None:
    """Without login (NoOpener), a viewer of a stream nobody pushes is told why."""
    media, _, _ = server()
    media.opener = NoOpener()
    a = Collector()
    media.watch(a, KEY)
    assert a.error is not None and "no login server configured" in a.error.reason


def test_an_unrequested_stream_is_kept_for_linger_then_dropped() -> None:
    """A device that pushes a stream nobody asked for: it is taken (a viewer may come) and
    dropped ``linger`` seconds later if none does."""
    media, opener, clock = server(linger=30.0)
    source = Source()
    stream = media.bind(source, SimIdentity(SIM), 2)
    assert stream.key == StreamKey(PHONE, 2, "main")
    clock.advance(31)
    assert source.released == [stream] and media.streams == {}
    assert opener.opens == []


def test_a_binary_sim_finds_the_stream_asked_for() -> None:
    """A unit writing its number in binary (00 03 36 a8 f0 f7) feeds the stream asked for
    under its phone."""
    media, _, _ = server()
    a = Collector()
    media.watch(a, KEY)
    stream = media.bind(Source(), SimIdentity(int(PHONE).to_bytes(6, "big").hex()), 1)
    assert stream.key == KEY and stream.viewers == {a}


def test_a_sim_whose_bcd_reading_is_another_phone_finds_the_stream_asked_for() -> None:
    """SIM 01 38 00 13 89 99 reads as phone 13800138999 in BCD and 1340031076761 in
    binary: a stream asked for under the binary reading takes the connection."""
    media, _, _ = server()
    key = StreamKey("1340031076761", 1, "main")
    a = Collector()
    media.watch(a, key)
    stream = media.bind(Source(), SimIdentity(SIM), 1)
    assert stream.key == key and stream.viewers == {a}
    assert StreamKey(PHONE, 1, "main") not in media.streams


def test_max_viewers() -> None:
    """Past ``max_viewers`` a viewer is refused, saying so."""
    media, _, _ = server(max_viewers=1)
    media.watch(Collector(), KEY)
    b = Collector()
    media.watch(b, KEY)
    assert b.error is not None and b.error.code == CLOSE_TOO_MANY


@pytest.mark.parametrize(("given", "code", "words"), [
    ("", CLOSE_UNAUTHORIZED, "no viewing token"),
    ("garbage", CLOSE_UNAUTHORIZED, "not signed"),
    ("expired", CLOSE_UNAUTHORIZED, "expired"),
    ("other-media", CLOSE_UNAUTHORIZED, "not signed"),
    ("other-vehicle", CLOSE_FORBIDDEN, "grants device 13900000000"),
    ("other-channel", CLOSE_FORBIDDEN, "channel 2"),
])  # fmt: skip
def test_tokens_that_do_not_grant_the_stream_are_refused(given: str, code: int, words: str) -> None:
    """No token, a forged, expired or another server's one, or one for another vehicle or
    channel: refused with the reason in words."""
    media, _, clock = server()
    now = clock.seconds()
    tokens = {
        "": "",
        "garbage": "abc.def",
        "expired": token(expires=now - 1),
        "other-media": token(key=b"k" * 32, expires=now + 60),
        "other-vehicle": token("13900000000", expires=now + 60),
        "other-channel": token(channel=2, expires=now + 60),
    }
    with pytest.raises(ViewerError) as e:
        media.authorize(PHONE, "1", "main", tokens[given])
    assert e.value.code == code and words in e.value.reason


def test_a_good_token_and_bad_urls() -> None:
    """A token for the stream grants it (the phone's zero padding aside); a channel or
    stream that is not one is a bad request."""
    media, _, clock = server()
    good = token(expires=clock.seconds() + 60)
    assert media.authorize("0" + PHONE, "1", "main", good) == KEY
    for channel, stream in (("x", "main"), ("0", "main"), ("300", "main"), ("1", "hd")):
        with pytest.raises(ViewerError) as e:
            media.authorize(PHONE, channel, stream, good)
        assert e.value.code == CLOSE_BAD_REQUEST


#: The paths whose tokens carry params (``MediaServer.grant`` checks them all): each one's
#: ``authorize``, URL, its tokens' params, what they grant, and the words refusing a token
#: for channel 2 on channel 1.
PATHS = {
    "playback": (playback.authorize, "/playback/{}/{}.flv",
                 {"id": "s" * 16, "from": "2024-05-01T10:00:00+08:00"},
                 (playback.parse_params({"id": "s" * 16, "from": "2024-05-01T10:00:00+08:00"}),),
                 f"the viewing token grants device {PHONE} channel 2 (playback stream), not a"
                 f" playback of device {PHONE} channel 1"),
    "talk": (talk.authorize, "/talk/{}/{}", {"id": "talk-0123", "broadcast": True},
             ("talk-0123", True),
             f"the token grants device {PHONE} channel 2 (talk), not talk-back with device"
             f" {PHONE} channel 1"),
}  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("given", "code", "words"), [
    ("", CLOSE_UNAUTHORIZED, "no viewing token"),
    ("other-media", CLOSE_UNAUTHORIZED, "not signed"),
    ("expired", CLOSE_UNAUTHORIZED, "expired"),
    ("other-vehicle", CLOSE_FORBIDDEN, "grants device 13900000000 channel 1"),
    ("other-channel", CLOSE_FORBIDDEN, f"grants device {PHONE} channel 2"),
    ("live", CLOSE_FORBIDDEN, "channel 1 (main"),
    ("channel-0", CLOSE_BAD_REQUEST, "channel 0 is not 1-255"),
    ("bad-phone", CLOSE_BAD_REQUEST, "'phone' is not a device phone number"),
])  # fmt: skip
def test_playback_and_talk_back_want_their_own_token(path: str, given: str, code: int,
                                                     words: str) -> None:  # fmt: skip
    """A playback or talk-back URL without a token, or with a forged or expired one: 4001;
    with one for another vehicle or channel, or a live one: 4003 in the path's words; one
    that names no device channel: 4004."""
    authorize, url, params, _, refusal = PATHS[path]
    media, _, clock = server()
    now = clock.seconds()

    def grant(phone: str = PHONE, channel: int = 1, stream: str = path,
              key: bytes = SERVER_KEY, expires: float = now + 60) -> str:  # fmt: skip
        return sign_view(view_key(key), View(MEDIA_ID, phone, channel, stream, int(expires),
                                             params))  # fmt: skip

    tokens = {
        "": "",
        "other-media": grant(key=b"k" * 32),
        "expired": grant(expires=now - 1),
        "other-vehicle": grant("13900000000"),
        "other-channel": grant(channel=2),
        "live": grant(stream="main"),
    }
    where = {"channel-0": (PHONE, 0), "bad-phone": ("phone", 1)}.get(given, (PHONE, 1))
    with pytest.raises(ViewerError) as e:
        authorize(media, url.format(*where), {"token": [tokens.get(given, grant())]})
    assert e.value.code == code and words in e.value.reason
    if given == "other-channel":
        assert e.value.reason == refusal


@pytest.mark.parametrize("path", PATHS)
def test_playback_and_talk_back_tokens_grant_what_they_say(path: str) -> None:
    """A token for the path grants its device, channel and params (the phone's zero
    padding aside)."""
    authorize, url, params, granted, _ = PATHS[path]
    media, _, clock = server()
    view = View(MEDIA_ID, PHONE, 1, path, int(clock.seconds()) + 60, params)
    asked = {"token": [sign_view(view_key(SERVER_KEY), view)]}
    assert authorize(media, url.format("0" + PHONE, 1), asked) == (PHONE, 1, *granted)


def opened_stream(answer: Any) -> tuple[MediaServer, Collector, Any]:
    """A viewer's stream, opened with the opener's ``answer``; (server, viewer, stream)."""
    media, opener, _ = server()
    viewer = Collector()
    media.watch(viewer, KEY)
    opener.answers[0].callback(answer)
    return media, viewer, media.bind(Source(), SimIdentity(SIM), 1)


def test_the_devices_audio_decides_the_flv_audio_track_at_once() -> None:
    """When the device's 0x1003 says audio browsers can get (G.711A), the FLV announces
    audio from the first keyframe even before any audio frame; when it says a codec that
    has no transcoder (G.729), the FLV is video only."""
    media, viewer, stream = opened_stream(Opened("h264", "g711a"))
    assert stream.audio_hint is True
    media.frame(stream, frames(clip(1), audio=False)[0])
    assert stream.muxer is not None and stream.muxer.audio
    media, viewer, stream = opened_stream(Opened("h264", "code 5"))
    assert stream.audio_hint is False
    for frame in frames(clip(1)):
        media.frame(stream, frame)
    assert stream.muxer is not None and not stream.muxer.audio
    assert play(viewer.data).audio_codec is None and media.counters["dropped:audio not announced"] > 0


def test_a_packet_in_another_codec_than_announced_wins_and_is_logged_once() -> None:
    """A device whose 0x1003 says H.265 and G.726 but whose packets carry H.264 and G.711A
    is played as its packets say (video and AAC audio), and each mismatch is logged once,
    in words; a device whose packets match is not logged at all."""
    from twisted.logger import formatEvent, globalLogPublisher

    said: list[str] = []

    def observer(event: Any) -> None:
        said.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    try:
        media, viewer, stream = opened_stream(Opened("h265", "g726"))
        for frame in frames(clip(2)):
            media.frame(stream, frame)
        matching, _, same = opened_stream(Opened("h264", "g711a"))
        for frame in frames(clip(1)):
            matching.frame(same, frame)
    finally:
        globalLogPublisher.removeObserver(observer)
    played = play(viewer.data)
    assert played.video_pts and played.audio_codec == "aac" and played.audio
    mismatches = [s for s in said if "announced" in s]
    assert media.counters["codec_mismatches"] == 2 and len(mismatches) == 2
    assert (f"device {PHONE} channel 1: its 0x1003 announced video in H.265 but its packets"
            " carry H.264 (payload type 98): going by the packets") in mismatches
    assert any("announced audio in G.726 but its packets carry G.711A" in s for s in mismatches)
    assert matching.counters["codec_mismatches"] == 0
    assert matching.announced == {same: {Track.VIDEO: 98, Track.AUDIO: 6}}
    assert media.announced == {}
