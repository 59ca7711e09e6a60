"""Playback sessions without sockets: the token's params, the playback timeline, what a
control does to the output, and each step's deadline (``task.Clock``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from twisted.internet import defer, task

from cmsv6.plugins.media.fanout import CLOSE_DEVICE
from cmsv6.plugins.media.playback import (
    BadControl,
    ControlTimeout,
    Playbacks,
    PlaybackTimeline,
    parse_control,
    parse_params,
)
from cmsv6.plugins.media.server import MediaServer
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType
from cmsv6.protocols.jt1078.sim import SimIdentity
from tests.plugins.media.support import PHONE, SERVER_KEY, SIM, Collector, clip, config

CST = timezone(timedelta(hours=8))
PARAMS = {"id": "s" * 16, "from": "2024-05-01T02:00:00+00:00", "to": "2024-05-01T10:10:00+08:00",
          "mode": "normal", "speed": 1, "media": "audio_video", "stream": "any", "storage": "any"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"id": "short"}, "16 to 64 URL-safe characters"),
        ({"id": "s" * 15 + "/"}, "16 to 64 URL-safe characters"),
        ({"from": "2024-05-01T10:00:00"}, "has no UTC offset"),
        ({"from": None}, "from is not an ISO 8601 time"),
        ({"to": "2024-05-01T09:00:00+08:00"}, "is not after from"),
        ({"mode": "slow"}, "mode 'slow' is not one of normal, fast_forward"),
        ({"speed": 3}, "speed '3' is not one of 1, 2, 4, 8, 16"),
        ({"speed": True}, "speed 'True' is not one of"),
        ({"media": "audio"}, "audio-only playback is not served"),
        ({"storage": "cloud"}, "storage 'cloud' is not one of any, main, backup"),
        ({"from": "1999-12-31T23:00:00+08:00"}, "not between 2000 and 2099"),
    ],
)
def test_params_that_are_no_playback_are_refused_in_words(change: dict[str, Any], words: str) -> None:
    """A token's params that do not name a playback: BadControl saying which and why."""
    with pytest.raises(BadControl, match=words.replace("(", r"\(")):
        parse_params({**PARAMS, **change})


def test_params_read_with_defaults() -> None:
    """Only id and from are needed; times keep their offset; "to" may be null."""
    p = parse_params({"id": "a-b_c" * 4, "from": "2024-05-01T02:00:00Z", "to": None})
    assert (p.mode, p.speed, p.media, p.stream, p.storage, p.end) == ("normal", 1, "audio_video", "any", "any", None)
    assert p.start == datetime(2024, 5, 1, 10, tzinfo=CST)


def test_controls_are_0x9202_with_the_standard_speed_codes() -> None:
    """×1..×16 are speed codes 1..5; seek carries its time; a missing speed or time, an
    unknown action are BadControl in words."""
    for speed, code in ((1, 1), (2, 2), (4, 3), (8, 4), (16, 5)):
        c = parse_control(3, "fast_forward", speed)
        assert (c.message.channel, c.message.action, c.message.speed, c.speed, c.rewind) == (3, 3, code, speed, False)
    c = parse_control(1, "rewind", 16)
    assert (c.message.action, c.message.speed, c.rewind) == (4, 5, True)
    c = parse_control(1, "seek", time="2024-05-01T02:00:05Z")
    body = encode_body(c.message)
    assert body == bytes((1, 5, 0)) + bytes.fromhex("240501100005")
    assert parse_control(1, "pause").message.action == 1
    assert parse_control(1, "keyframes").message.action == 6
    for args, words in (((1, "rewind"), "needs a speed"), ((1, "seek"), "needs a time"),
                        ((1, "jump"), "'jump' is not one of"), ((1, "fast_forward", 32), "'32'")):  # fmt: skip
        with pytest.raises(BadControl, match=words):
            parse_control(*args)


# -- the timeline -------------------------------------------------------------------------------


def test_timeline_follows_the_device_and_reanchors_on_controls_and_jumps() -> None:
    """Device time is followed while it steps forward; a control (re-anchored at the next
    frame), a step back (seek back) or a leap forward (past MAX_GAP) each come one usual
    step after the last output; video strictly increasing, audio never backwards."""
    t = PlaybackTimeline()
    base = 1_700_000_000_000
    assert [t.map("video", base + i * 40) for i in range(3)] == [0, 40, 80]
    assert t.map("audio", base + 70) == 70
    t.reanchor()
    assert t.map("video", base + 100_000) == 120  # a seek forward: 40 after the last
    assert t.map("audio", base + 99_990) == 110  # audio just before the anchor
    assert t.map("video", base + 100_040) == 160
    assert t.map("video", base + 5_000) == 200  # back, unannounced: a jump
    assert t.map("video", base + 9_000) == 240  # 4 s forward: a jump too
    assert t.map("video", base + 11_000) == 2240  # 2 s forward: under MAX_GAP, followed
    assert t.jumps == 2 and t.anchors == 3


def test_timeline_scales_fast_forward_and_counts_rewind_forwards() -> None:
    """At ×4 a 40 ms device step is 10 ms out; rewinding ×2, keyframes 1 s back each
    come 500 ms later; back at ×1, 40 ms again; never a step back."""
    t = PlaybackTimeline()
    out = [t.map("video", i * 40) for i in range(2)]
    t.reanchor(speed=4)
    out += [t.map("video", 10_000 + i * 40) for i in range(3)]
    t.reanchor(speed=2, rewind=True)
    out += [t.map("video", 8_000 - i * 1000) for i in range(3)]
    t.reanchor(speed=1, rewind=False)
    out += [t.map("video", 3_000 + i * 40) for i in range(2)]
    steps = [b - a for a, b in zip(out, out[1:])]
    # A new anchor is one step (the last one, scaled as it was) after the last picture.
    assert steps == [40, 40, 10, 10, 10, 500, 500, 500, 40]


def test_fast_steps_never_collide() -> None:
    """×16 on 40 ms pictures (2.5 ms apart) still gives strictly increasing milliseconds."""
    t = PlaybackTimeline(speed=16)
    out = [t.map("video", i * 40) for i in range(50)]
    assert all(b > a for a, b in zip(out, out[1:])) and out[-1] == round(49 * 2.5)


# -- sessions, with a clock -------------------------------------------------------------------


class Opener:
    """Records what is sent; each answer is the test's (``answers``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, Any]] = []
        self.answers: list[defer.Deferred[Any]] = []

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        self.sent.append((msg_id, decode_body(msg_id, body)))
        d: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(d)
        return d

    def open(self, *a: Any) -> Any:
        return defer.Deferred()

    def close(self, *a: Any) -> Any:
        return defer.succeed(None)


def ok(msg_id: int) -> dict[str, Any]:
    return {"msg_id": 1, "version": 2013, "body": encode_body(TerminalResponse(1, msg_id, 0))}


class Source:
    """A device connection as the session sees it."""

    def __init__(self) -> None:
        self.timeouts: list[float | None] = []
        self.released = 0

    def setTimeout(self, t: float | None) -> None:  # noqa: N802
        self.timeouts.append(t)

    def release(self, stream: Any) -> None:
        self.released += 1


def setup(**params: Any) -> tuple[Any, Playbacks, Opener, task.Clock]:
    clock = task.Clock()
    opener = Opener()
    media = MediaServer(config(open_timeout=5.0, public_jt1078="media.example:7612"), clock,
                        SERVER_KEY, opener)  # fmt: skip
    return media, Playbacks(media), opener, clock


def test_0x9201_says_where_and_when_in_device_time_and_each_step_has_a_deadline() -> None:
    """0x9201 carries the media server's public host and port, the channel, the codes of
    the params and the times in +08:00; no answer within open_timeout, then no connection
    within it, each end the viewer with words naming the device and the step."""
    media, playbacks, opener, clock = setup()
    viewer = Collector()
    playbacks.watch(viewer, PHONE, 2, parse_params({**PARAMS, "mode": "fast_forward", "speed": 8,
                                                    "media": "video", "storage": "backup"}))  # fmt: skip
    ((msg_id, request),) = opener.sent
    assert msg_id == 0x9201
    assert (request.server_ip, request.tcp_port, request.udp_port, request.channel) == ("media.example", 7612, 0, 2)
    assert (request.media_type, request.stream_type, request.storage_type, request.mode, request.speed) == (2, 0, 2, 1, 4)
    assert bytes.fromhex("240501100000") + bytes.fromhex("240501101000") == encode_body(request)[-12:]
    clock.advance(5.0)
    assert viewer.error is not None and viewer.error.code == CLOSE_DEVICE
    assert viewer.error.reason == (f"device {PHONE} channel 2: 0x9201 (channel 2 from"
                                   " 2024-05-01T02:00:00+00:00) got no answer within 5 s")  # fmt: skip
    assert opener.answers[0].called  # cancelled
    assert playbacks.sessions == {}

    viewer = Collector()
    playbacks.watch(viewer, PHONE, 2, parse_params(PARAMS))
    opener.answers[1].callback(ok(0x9201))
    clock.advance(4.9)
    assert not viewer.closed
    clock.advance(0.1)
    assert viewer.error is not None and "did not open its playback connection (channel 2)" in viewer.error.reason
    assert [m for m, _ in opener.sent] == [0x9201, 0x9201, 0x9202]
    assert opener.sent[-1][1].action == 2


def test_a_control_drops_to_the_next_keyframe_and_a_pause_holds_the_connection() -> None:
    """After a control the session's stream muxes nothing until a video keyframe (audio and
    P-frames dropped); while paused, the device connection's silence timeout is off, and
    back on after resume; a control the device does not answer is ControlTimeout in words
    and the speed stays as it was."""
    media, playbacks, opener, clock = setup()
    viewer = Collector()
    session = playbacks.watch(viewer, PHONE, 1, parse_params(PARAMS))
    assert session is not None
    opener.answers[0].callback(ok(0x9201))
    source = Source()
    assert playbacks.claim(source, SimIdentity(SIM), 2) is None  # another channel
    assert playbacks.claim(source, SimIdentity(SIM), 1) is session.stream
    c = clip()
    frames = [Frame(1, int(f.data_type), 1000 + f.timestamp, f.payload, 98) for f in c.video]
    audio = [Frame(1, int(DataType.AUDIO), 1000 + f.timestamp, f.payload, 6) for f in c.audio]
    stream = session.stream
    for f in frames[:10]:
        stream.push(f)
    muxed = stream.muxer.counters.video_tags
    assert muxed == 10
    d = session.control("pause")
    assert source.timeouts == [None]
    opener.answers[1].callback(ok(0x9202))
    assert d.called
    unanswered: list[Any] = []
    session.control("resume").addErrback(unanswered.append)
    assert source.timeouts == [None, 5.0]
    for f in [*frames[10:20], *audio[10:20]]:
        stream.push(f)
    assert stream.muxer.counters.video_tags == muxed  # mid-GOP: dropped
    stream.push(frames[25])
    assert stream.muxer.counters.video_tags == muxed + 1
    assert stream.counters["dropped:awaiting keyframe after a control"] == 20
    failed: list[Any] = []
    session.control("fast_forward", 4).addErrback(failed.append)
    assert stream.timeline.speed == 4
    clock.advance(5.0)
    assert failed and failed[0].check(ControlTimeout)
    assert "0x9202 (fast_forward the playback of channel 1) got no answer within 5 s" in failed[0].getErrorMessage()
    assert stream.timeline.speed == 1
    assert unanswered and unanswered[0].check(ControlTimeout)
    viewer.end()
    assert playbacks.sessions == {}
    assert opener.sent[-1][1].action == 2
    # The connection is released once the device answered the stop, not before: closed
    # first, a unit ends the playback itself and refuses the stop.
    assert source.released == 0
    opener.answers[-1].callback(ok(0x9202))
    assert source.released == 1
    clock.advance(60)
    assert source.released == 1


def test_a_stop_that_is_not_answered_releases_the_connection_all_the_same() -> None:
    media, playbacks, opener, clock = setup()
    viewer = Collector()
    session = playbacks.watch(viewer, PHONE, 1, parse_params(PARAMS))
    assert session is not None
    opener.answers[0].callback(ok(0x9201))
    source = Source()
    assert playbacks.claim(source, SimIdentity(SIM), 1) is session.stream
    viewer.end()
    assert opener.sent[-1][1].action == 2 and source.released == 0
    clock.advance(4.9)
    assert source.released == 0
    clock.advance(0.1)
    assert source.released == 1


def test_the_connection_may_come_before_the_answer_and_the_answer_may_be_a_list() -> None:
    """A unit connects as soon as it reads 0x9201, and its answer comes through login and
    its gateway: the connection is the session's all the same, and the answer (a general
    response, or the resource list JT/T 1078 §5.6.3 says) does not end it. A unit that
    answers with a list before connecting starts the wait for its connection."""
    media, playbacks, opener, clock = setup()
    viewer = Collector()
    session = playbacks.watch(viewer, PHONE, 1, parse_params(PARAMS))
    assert session is not None and session.state == "opening"
    source = Source()
    assert playbacks.claim(source, SimIdentity(SIM), 1) is session.stream
    assert session.state == "playing"
    opener.answers[0].callback(ok(0x9201))
    clock.advance(60)
    assert not viewer.closed and session.state == "playing"

    listed = Collector()
    other = playbacks.watch(listed, PHONE, 2, parse_params({**PARAMS, "id": "another-session-0001"}))
    assert other is not None
    from cmsv6.protocols.jt808.messages.jt1078 import ResourceList

    opener.answers[-1].callback({"msg_id": 0x1205, "version": 2013,
                                 "body": encode_body(ResourceList(1, ()))})  # fmt: skip
    assert other.state == "waiting" and not listed.closed
