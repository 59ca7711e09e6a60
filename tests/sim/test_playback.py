"""Simulated playback (0x9201) and its controls (0x9202): what reaches the media server,
read back by its parser and decoded by FFmpeg — timestamps on the recording's time line,
a keyframe first after every control — on a fake clock, then over loopback."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from cmsv6.media.clip import Clip, encode_clip
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import (
    PlaybackControl,
    PlaybackRequest,
    RealtimeAvRequest,
)
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType
from cmsv6.protocols.jt1078.stream import MediaStream, SimSeen
from cmsv6.sim.device import Counters
from cmsv6.sim.fakeplatform import FakePlatform, phone_key
from cmsv6.sim.fleet import Fleet, FleetConfig
from cmsv6.sim.streamer import Streamer
from cmsv6.sim.video import VideoConfig
from tests.sim.test_video import (
    FAST,
    PHONE,
    T0,
    CollectorFactory,
    Endpoint,
    _reactor,
    decode_video,
    frames_of,
    online,
    reply,
)
from tests.support.device import until, within

#: A whole second, and an even one: the test clip's keyframe (one a loop of 2 s) is there.
START = datetime(2025, 6, 14, 9, 30, 0, tzinfo=BEIJING)
S = int(START.timestamp() * 1000)
assert S % 2000 == 0


@pytest.fixture(scope="module")
def clips() -> dict[int, Clip]:
    """2 s clips with a keyframe at the start of each loop only: the recording's keyframes
    are at every even second."""
    return {
        0: encode_clip(seconds=2, gop=50),
        1: encode_clip(176, 144, seconds=2, fps=15, gop=30),
    }


class Rig:
    def __init__(self, clips: dict[int, Clip]) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.endpoint = Endpoint()
        self.counters = Counters()
        self.streamer = Streamer(
            self.clock, VideoConfig(audio_header="none"), self.endpoint, self.counters,
            load=lambda kind, codec: clips[kind],
        )
        self._parsers: dict[int, MediaStream] = {}

    def play(self, start: datetime = START, end: datetime | None = None, mode: int = 0,
             speed: int = 0, media: int = 0, stream: int = 0, channel: int = 1) -> Any:
        request = PlaybackRequest("10.0.0.9", 7612, 0, channel, media, stream, 0, mode, speed,
                                  start, end)
        self.streamer.playback(PHONE, 2013, request)
        return self.endpoint.connections[-1][1]

    def control(self, action: int, speed: int = 0, position: datetime | None = None,
                channel: int = 1) -> bool:
        return self.streamer.playback_control(PHONE, PlaybackControl(channel, action, speed, position))

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds * 25)):
            self.clock.advance(0.04)

    def take(self, transport: Any) -> list[Frame]:
        """The frames sent since the last call, read by one parser a connection (as the
        media server reads them); anything it drops fails the test."""
        data = transport.value()
        transport.clear()
        parser = self._parsers.setdefault(id(transport), MediaStream(PHONE))
        frames = []
        for event in parser.feed(data):
            assert isinstance(event, Frame | SimSeen), f"the parser did not take it: {event!r}"
            if isinstance(event, Frame):
                frames.append(event)
        return frames


def pictures(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.data_type != DataType.AUDIO]


def times(frames: list[Frame]) -> list[int]:
    return [f.timestamp for f in pictures(frames)]  # type: ignore[misc]


def test_normal_playback_is_on_the_recording_time_line(clips: dict[int, Clip]) -> None:
    """Normal play from ``start``: pictures and sound stamped with the recording time in ms
    (a picture and a sound frame every 40 ms from ``start``), at real time, starting with a
    keyframe; every picture decodes; the end closes the connection, not as a failure."""
    rig = Rig(clips)
    transport = rig.play(end=START + timedelta(seconds=3))
    rig.run(2.0)
    frames = rig.take(transport)
    video = pictures(frames)
    audio = [f for f in frames if f.data_type == DataType.AUDIO]
    assert video[0].data_type == DataType.I_FRAME
    assert times(frames) == [S + 40 * i for i in range(len(video))]
    assert [f.timestamp for f in audio] == [S + 40 * i for i in range(len(audio))]
    assert 48 <= len(video) <= 52
    assert len(decode_video(video)) == len(video)
    assert not transport.disconnecting
    rig.run(1.5)
    rest = rig.take(transport)
    assert times(rest)[-1] == S + 3000
    assert transport.disconnecting
    rig.endpoint.connections[-1][0].connectionLost(Failure(ConnectionDone()))
    assert rig.streamer.playbacks == {} and rig.counters.stream_failures == 0


def test_pause_resume_and_seek(clips: dict[int, Clip]) -> None:
    """Pause: nothing is sent and the time line stands still; resume: pictures again from
    the next keyframe, later than the last sent; seek to an odd second: from the keyframe
    just before it (the second before), then on at real time."""
    rig = Rig(clips)
    transport = rig.play()
    rig.run(0.5)
    before = rig.take(transport)
    assert rig.control(1)  # pause
    rig.run(3.0)
    assert transport.value() == b""
    assert rig.control(0)  # resume
    rig.run(0.5)
    resumed = pictures(rig.take(transport))
    assert resumed[0].data_type == DataType.I_FRAME
    assert resumed[0].timestamp == S + 2000  # the next keyframe, not 3 s on
    assert times(before)[-1] < resumed[0].timestamp
    target = START + timedelta(minutes=5, seconds=7)
    assert rig.control(5, position=target)
    rig.run(1.0)
    sought = rig.take(transport)
    t = int(target.timestamp() * 1000)
    assert times(sought)[0] == t - 1000 and pictures(sought)[0].data_type == DataType.I_FRAME
    assert times(sought) == [t - 1000 + 40 * i for i in range(len(pictures(sought)))]
    assert len(decode_video(pictures(sought))) == len(pictures(sought))


@pytest.mark.parametrize("code, multiple, keyframes_only", [(2, 2, False), (4, 8, True)])
def test_fast_forward(clips: dict[int, Clip], code: int, multiple: int, keyframes_only: bool) -> None:
    """Fast-forward (0x9202 3) at ×2 sends every picture and no sound, the time line moving
    twice as fast; at ×8 keyframes only (as units do), eight times as fast."""
    rig = Rig(clips)
    transport = rig.play()
    rig.run(0.2)
    rig.take(transport)
    assert rig.control(3, speed=code)
    rig.run(2.0)
    frames = rig.take(transport)
    assert all(f.data_type != DataType.AUDIO for f in frames)
    kinds = {f.data_type for f in frames}
    assert kinds == ({DataType.I_FRAME} if keyframes_only else {DataType.I_FRAME, DataType.P_FRAME})
    t = times(frames)
    assert pictures(frames)[0].data_type == DataType.I_FRAME and t[0] == S + 2000
    assert t == sorted(t) and len(set(t)) == len(t)
    assert abs((t[-1] - t[0]) - 2000 * multiple) <= 2000
    assert len(decode_video(pictures(frames))) == len(frames)


def test_rewind_and_keyframes(clips: dict[int, Clip]) -> None:
    """Keyframe rewind (4) at ×4: keyframes going back in time, 4 s of recording a second,
    holding once the start's keyframe is sent; keyframes (6): keyframes only, forwards at ×1."""
    rig = Rig(clips)
    transport = rig.play(start=START)
    assert rig.control(5, position=START + timedelta(seconds=20))
    rig.run(0.2)
    rig.take(transport)
    assert rig.control(4, speed=3)
    rig.run(2.0)
    back = rig.take(transport)
    assert {f.data_type for f in back} == {DataType.I_FRAME}
    assert times(back)[:5] == [S + 20000 - 2000 * i for i in range(5)]
    rig.run(5.0)
    assert times(rig.take(transport))[-1] == S  # held at the start
    rig.run(1.0)
    assert transport.value() == b""
    assert rig.control(6)
    rig.run(4.0)
    keys = rig.take(transport)
    assert {f.data_type for f in keys} == {DataType.I_FRAME}
    assert times(keys)[:3] == [S, S + 2000, S + 4000]
    assert len(decode_video(pictures(keys))) == len(keys)


def test_stop_modes_and_channels(clips: dict[int, Clip]) -> None:
    """Stop (2) closes the connection; a control for a channel without playback fails; a
    channel streams live and plays back at once, on two connections; a 0x9201 in keyframe
    rewind mode goes back from its end."""
    rig = Rig(clips)
    assert not rig.control(1)
    rig.streamer.open(PHONE, 2013, RealtimeAvRequest("10.0.0.9", 7612, 0, 1))
    live = rig.endpoint.connections[-1][1]
    transport = rig.play(stream=2)
    assert live is not transport
    rig.run(1.0)
    assert pictures(rig.take(live)) and pictures(rig.take(transport))
    assert rig.control(2)
    assert transport.disconnecting and not live.disconnecting
    rewinding = rig.play(end=START + timedelta(seconds=10), mode=2, speed=2, channel=2)
    rig.run(1.2)
    assert times(rig.take(rewinding))[:2] == [S + 10000, S + 8000]


def test_the_device_answers_playback_commands() -> None:
    """0x9201 gets 0 and the playback is asked for, 1 for a channel the device lacks or a
    request without a start; 0x9202 gets 1 when the channel has no playback."""
    rig = online()
    ok = PlaybackRequest("10.0.0.9", 7612, 0, 1, 0, 0, 0, 0, 0, START, None)
    for body, result in [
        (ok, 0),
        (attrs.evolve(ok, channel=5), 1),
        (attrs.evolve(ok, start=None), 1),
        (attrs.evolve(ok, end=START), 1),
        (PlaybackControl(1, 1), 1),
        (PlaybackControl(7, 1), 1),
    ]:
        h = rig.platform(body)
        (answer,) = rig.link.take()
        assert answer.body == TerminalResponse(h.serial, h.msg_id, result)
    assert rig.events.streams == []  # playback requests are their own event


@pytest_twisted.ensureDeferred
async def test_playback_over_loopback(tmp_path: Path) -> None:
    """A simulated device answers 0x9201 with 0x0001 (0), connects to the address given
    and plays back; 0x9202 pause, seek and fast-forward ×8 are answered 0 and each is
    followed by a keyframe on the connection, the timestamps jumping to the position
    asked for; FFmpeg decodes every picture; a control for another channel is refused;
    stop closes the connection."""
    reactor = _reactor()
    platform = FakePlatform(reactor)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(platform)
    media = CollectorFactory()
    media_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(media)
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{port.getHost().port}", devices=1, first_phone=PHONE,
        seed=5, status_interval=0, device=FAST,
        video=VideoConfig(pace=4.0, cache_dir=str(tmp_path)),
    )
    fleet = Fleet(reactor, config)
    done = fleet.start()

    async def command(body: Any) -> int:
        serial = platform.send(PHONE, body)
        await until(lambda: reply(platform, PHONE, 0x0001, serial), f"the answer to {body}")
        return int(reply(platform, PHONE, 0x0001, serial).result)

    def seen() -> list[Frame]:
        return pictures(frames_of(bytes(collector.data), PHONE))

    try:
        await until(lambda: phone_key(PHONE) in platform.sessions, "the device to log in")
        where = ("127.0.0.1", media_port.getHost().port, 0)
        assert await command(PlaybackRequest(*where, 2, 0, 1, 0, 0, 0, START, None)) == 0
        await until(lambda: len(media.connections) == 1, "the playback's connection")
        collector = media.connections[0]
        await until(lambda: len(seen()) >= 60, "60 pictures")
        assert await command(PlaybackControl(2, 1)) == 0  # pause
        paused = len(seen())
        target = START + timedelta(hours=1, seconds=30)
        assert await command(PlaybackControl(2, 5, 0, target)) == 0  # seek
        await until(lambda: len(seen()) >= paused + 30, "pictures after the seek")
        assert await command(PlaybackControl(2, 3, 4)) == 0  # fast-forward ×8
        fast_at = len(seen())
        await until(lambda: len(seen()) >= fast_at + 3, "keyframes fast-forwarding")
        assert await command(PlaybackControl(1, 1)) == 1  # channel 1 plays nothing back
        assert await command(PlaybackControl(2, 2)) == 0  # stop
        await within(collector.lost, "the playback to be closed")
    finally:
        await fleet.stop()
        await done
        await port.stopListening()
        await media_port.stopListening()

    video = seen()
    t = int(target.timestamp() * 1000)
    assert video[0].data_type == DataType.I_FRAME and video[0].timestamp == S
    before_seek = [f for f in video if f.timestamp < t - 2000]  # type: ignore[operator]
    after_seek = video[len(before_seek):]
    assert len(before_seek) >= 60
    assert after_seek[0].data_type == DataType.I_FRAME and after_seek[0].timestamp == t
    fast = [f for f in after_seek if f.data_type == DataType.I_FRAME][1:]
    assert fast and all(b.timestamp - a.timestamp >= 2000 for a, b in zip(fast, fast[1:]))  # type: ignore[operator]
    assert len(decode_video(video)) == len(video)
    assert {f.channel for f in video} == {2}
