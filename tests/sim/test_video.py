"""The simulator's cameras: what a channel streams after a 0x9101, read back by the media
server's own parser (``MediaStream``) and decoded by FFmpeg.

The first tests run the cameras on a fake clock with in-memory connections (every step
deterministic, a short clip); the last ones run a simulated device over real loopback
against the fake platform and a TCP server that collects what the camera sends."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import attrs
import av
import pytest
import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from cmsv6.media.clip import Clip, ClipFrame, encode_clip, load_clip
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvAttributes,
    AvTransmissionControl,
    QueryAvAttributes,
    RealtimeAvRequest,
)
from cmsv6.protocols.jt1078.audio import has_hisilicon_header, strip_hisilicon
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import (
    MAX_BODY,
    DataType,
    Packet,
    PacketReader,
    Subpackage,
    build_packet,
)
from cmsv6.protocols.jt1078.stream import MediaStream, SimSeen
from cmsv6.sim.device import Counters, DeviceConfig
from cmsv6.sim.fakeplatform import FakePlatform, phone_key
from cmsv6.sim.fleet import Fleet, FleetConfig
from cmsv6.sim.streamer import Streamer
from cmsv6.sim.video import (
    VideoConfig,
    cut_track,
    hisilicon,
    sim_digits,
    stamp,
)
from tests.media.tones import dominant
from tests.sim.test_device import QUIET, Events
from tests.sim.test_device import Rig as DeviceRig
from tests.support.device import until, within

PHONE = "013800000007"
T0 = 1_750_000_000.0


# -- what a camera sends, read back ---------------------------------------------------------


def frames_of(data: bytes, phone: str | None = None) -> list[Frame]:
    """The whole frames the media server's parser gets from ``data``; anything it drops
    or skips fails the test."""
    stream = MediaStream(phone)
    frames = []
    for event in stream.feed(data) + stream.close():
        assert isinstance(event, Frame | SimSeen), f"the parser did not take the stream: {event!r}"
        if isinstance(event, Frame):
            frames.append(event)
    return frames


def packets_of(data: bytes) -> list[Packet]:
    reader = PacketReader()
    out = reader.feed(data) + reader.close()
    assert all(isinstance(p, Packet) for p in out), [p for p in out if not isinstance(p, Packet)]
    return out  # type: ignore[return-value]


def decode_video(frames: list[Frame]) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create("h264", "r")
    out: list[av.VideoFrame] = []
    for f in frames:
        out += ctx.decode(av.Packet(f.payload))
    return out + ctx.decode(None)


def decode_tone(frames: list[Frame]) -> int:
    """The dominant frequency of the audio frames' G.711A (HiSilicon header removed)."""
    ctx = av.CodecContext.create("pcm_alaw", "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"
    samples: list[float] = []
    for f in frames:
        data, _ = strip_hisilicon(f.payload)
        for frame in ctx.decode(av.Packet(data)):
            samples += struct.unpack(f"<{frame.samples}h", bytes(frame.planes[0])[: 2 * frame.samples])
    assert len(samples) >= 1024
    return dominant(samples[:1024], 8000)


# -- packets from templates -----------------------------------------------------------------


@pytest.mark.parametrize("version", [2013, 2019])
def test_stamped_packets_equal_the_reference(version: int) -> None:
    """A camera's packet (template plus stamped fields) is byte for byte what
    ``build_packet`` makes of the same packet: SIM of 6 or 10 bytes, first / middle / last
    marks and the marker bit on a frame of three packets, intervals on video only."""
    digits = sim_digits(PHONE, version)
    size = len(digits) // 2
    assert size == (10 if version == 2019 else 6)
    picture = bytes(range(256)) * 9  # 2304 bytes: three packets
    video = cut_track((ClipFrame(0, DataType.I_FRAME, picture),), 98, 1000, size)
    audio = cut_track((ClipFrame(0, DataType.AUDIO, b"\x55" * 320),), 6, 1000, size, hisilicon)
    sim_channel = bytes.fromhex(digits) + b"\x03"
    marks = [Subpackage.FIRST, Subpackage.MIDDLE, Subpackage.LAST]
    for i, template in enumerate(video.cuts[0].packets):
        got = stamp(template, size, 65535 - i, sim_channel, 123456789012, b"\x07\xd0\x00\x28")
        assert got == build_packet(
            Packet(
                sim=digits, channel=3, data_type=DataType.I_FRAME,
                payload=picture[i * MAX_BODY : (i + 1) * MAX_BODY], sequence=65535 - i,
                subpackage=marks[i], timestamp=123456789012, last_i_frame_interval=2000,
                last_frame_interval=40, payload_type=98, marker=i == 2,
            )
        )
    (template,) = audio.cuts[0].packets
    assert stamp(template, size, 9, sim_channel, 40, None) == build_packet(
        Packet(
            sim=digits, channel=3, data_type=DataType.AUDIO,
            payload=b"\x00\x01\xa0\x00" + b"\x55" * 320, sequence=9, timestamp=40,
            payload_type=6, marker=True,
        )
    )


# -- the device's answers (sans-IO) ---------------------------------------------------------


class Requests(Events):
    def __init__(self) -> None:
        super().__init__()
        self.streams: list[Any] = []

    def stream_requested(self, device: Any, request: RealtimeAvRequest) -> None:
        self.streams.append(request)

    def stream_control(self, device: Any, control: AvTransmissionControl) -> None:
        self.streams.append(control)


def online(channels: int = 4) -> DeviceRig:
    rig = DeviceRig(attrs.evolve(QUIET, channels=channels))
    rig.events = rig.device.events = Requests()
    rig.login()
    rig.link.take()
    return rig


@pytest.mark.parametrize(
    "body, result",
    [
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 4, 0, 1), 0),
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 3, 3, 0), 0),
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 5, 0, 0), 1),  # no channel 5
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 0, 0, 0), 1),  # channels count from 1
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 1, 0, 2), 1),  # no stream type 2
        (RealtimeAvRequest("10.0.0.9", 0, 7613, 1, 0, 0), 1),  # UDP only
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 1, 2, 0), 0),  # talk-back
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 1, 4, 0), 0),  # broadcast
        (RealtimeAvRequest("10.0.0.9", 7612, 0, 1, 5, 0), 3),  # pass-through
        (AvTransmissionControl(2, 2), 0),
        (AvTransmissionControl(5, 0), 1),
        (AvTransmissionControl(1, 5), 1),
    ],
)
def test_the_device_answers_video_commands(body: Any, result: int) -> None:
    """0x9101 and 0x9102 get a 0x0001: 0 and the stream is acted on; 1 for a channel the
    device does not have (it has 4) or a request it cannot follow; 3 for pass-through,
    which its cameras do not do."""
    rig = online()
    h = rig.platform(body)
    (answer,) = rig.link.take()
    assert answer.body == TerminalResponse(h.serial, h.msg_id, result)
    assert rig.events.streams == ([body] if result == 0 else [])


def test_a_device_without_cameras() -> None:
    """With no channels, 0x9003, 0x9101 and 0x9102 are not supported (3)."""
    rig = online(channels=0)
    for body in (QueryAvAttributes(), RealtimeAvRequest("10.0.0.9", 7612, 0, 1), AvTransmissionControl(1, 0)):
        h = rig.platform(body)
        (answer,) = rig.link.take()
        assert answer.body == TerminalResponse(h.serial, h.msg_id, 3)
    assert rig.events.streams == []


# -- cameras on a fake clock ----------------------------------------------------------------

SECONDS = 2
GOP = 25


@pytest.fixture(scope="module")
def clips() -> dict[int, Clip]:
    """A short main clip (2 s, an I-frame a second) and a short sub-stream clip."""
    return {
        0: encode_clip(seconds=SECONDS, gop=GOP),
        1: encode_clip(176, 144, seconds=SECONDS, fps=15, gop=15),
    }


class Endpoint:
    """Connects at once to an in-memory transport (or fails with ``refuse``)."""

    def __init__(self) -> None:
        self.connections: list[tuple[Any, StringTransport]] = []
        self.addresses: list[str] = []
        self.refuse = False

    def __call__(self, address: str) -> Endpoint:
        self.addresses.append(address)
        return self

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        if self.refuse:
            return defer.fail(ConnectionRefusedError("refused"))
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        return defer.succeed(proto)


class Rig:
    def __init__(self, clips: dict[int, Clip], audio_header: str = "none") -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.endpoint = Endpoint()
        self.counters = Counters()
        self.idle = 0
        self.streamer = Streamer(
            self.clock, VideoConfig(audio_header=audio_header), self.endpoint, self.counters,
            idle=self._idle, load=lambda kind, codec: clips[kind],
        )

    def _idle(self) -> None:
        self.idle += 1

    def open(self, channel: int = 1, data_type: int = 0, stream_type: int = 0) -> Any:
        request = RealtimeAvRequest("10.0.0.9", 7612, 0, channel, data_type, stream_type)
        self.streamer.open(PHONE, 2013, request)
        return self.endpoint.connections[-1][1] if self.endpoint.connections else None

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds * 25)):
            self.clock.advance(0.04)

    def take(self, transport: StringTransport) -> bytes:
        data = transport.value()
        transport.clear()
        return data

    def control(self, channel: int, command: int, close_type: int = 0, switch: int = 0) -> None:
        self.streamer.control(PHONE, AvTransmissionControl(channel, command, close_type, switch))


def test_the_clip_loops_with_timestamps_increasing(clips: dict[int, Clip]) -> None:
    """5 s of a 2 s clip: a picture and an audio frame every 40 ms, timestamps going on
    across loops, an I-frame every GOP, the interval fields right, the phone as a 6-byte
    SIM, one sequence counter for the connection without a gap, bodies of at most 950
    bytes; the second loop sends the clip's pictures again."""
    rig = Rig(clips)
    transport = rig.open(channel=2)
    rig.run(5)
    data = rig.take(transport)
    packets = packets_of(data)
    assert [p.sequence for p in packets] == list(range(len(packets)))
    assert {(p.sim, p.channel) for p in packets} == {(PHONE, 2)}
    assert max(len(p.payload) for p in packets) == MAX_BODY
    frames = frames_of(data, PHONE)
    video = [f for f in frames if f.data_type != DataType.AUDIO]
    audio = [f for f in frames if f.data_type == DataType.AUDIO]
    assert len(video) >= 125 and len(audio) >= 125
    assert [f.timestamp for f in video] == [40 * i for i in range(len(video))]
    assert [f.timestamp for f in audio] == [40 * i for i in range(len(audio))]
    keys = [i for i, f in enumerate(video) if f.data_type == DataType.I_FRAME]
    assert keys == list(range(0, len(video), GOP))
    assert [f.last_frame_interval for f in video] == [0] + [40] * (len(video) - 1)
    assert [f.last_i_frame_interval for f in video[: GOP + 2]] == [0] + [
        40 * i for i in range(1, GOP + 1)
    ] + [40]
    assert {(f.payload_type, len(f.payload)) for f in audio} == {(6, 320)}
    per_loop = SECONDS * 25
    assert [f.payload for f in video[per_loop : 2 * per_loop]] == [
        f.payload for f in clips[0].video
    ]
    assert rig.counters.streams_open == 1
    assert 0 < rig.counters.video_bytes < rig.counters.stream_bytes == len(data)
    assert " | streams 1 open, " in rig.streamer.status()


@pytest.mark.parametrize(
    "data_type, kinds",
    [(0, {DataType.I_FRAME, DataType.P_FRAME, DataType.AUDIO}),
     (1, {DataType.I_FRAME, DataType.P_FRAME}),
     (3, {DataType.AUDIO})],
)
def test_what_the_request_asks_for(clips: dict[int, Clip], data_type: int, kinds: set[int]) -> None:
    """0x9101 data type 0 gets audio and video, 1 video only, 3 (listen) audio only."""
    rig = Rig(clips)
    transport = rig.open(data_type=data_type)
    rig.run(1.2)
    assert {f.data_type for f in frames_of(rig.take(transport))} == kinds


def test_pause_and_resume(clips: dict[int, Clip]) -> None:
    """0x9102 pause: nothing is sent; resume: audio goes on at the current time and the
    pictures from the next I-frame, the sequence unbroken; every picture decodes."""
    rig = Rig(clips)
    transport = rig.open()
    rig.run(0.6)
    before = rig.take(transport)
    rig.control(1, 2)  # pause
    rig.run(1.5)
    assert transport.value() == b""
    rig.control(1, 3)  # resume
    rig.run(1.5)
    after = rig.take(transport)
    assert after
    packets = packets_of(before + after)
    assert [p.sequence for p in packets] == list(range(len(packets)))
    frames = frames_of(before + after)
    first = frames_of(before)[-1].timestamp
    resumed = [f for f in frames if f.timestamp is not None and f.timestamp > first]
    assert resumed[0].data_type == DataType.AUDIO and resumed[0].timestamp >= first + 1500
    pictures = [f for f in resumed if f.data_type != DataType.AUDIO]
    assert pictures[0].data_type == DataType.I_FRAME and pictures[0].timestamp % 1000 == 0
    video = [f for f in frames if f.data_type != DataType.AUDIO]
    assert len(decode_video(video)) == len(video)


def test_a_full_connection_holds_the_camera_back(clips: dict[int, Clip]) -> None:
    """While the transport pauses the camera (its buffer is full) nothing is written; on
    resume the pictures start again at an I-frame, as a live unit's do."""
    rig = Rig(clips)
    transport = rig.open()
    rig.run(0.5)
    rig.take(transport)
    transport.producer.pauseProducing()
    rig.run(1.0)
    assert transport.value() == b""
    transport.producer.resumeProducing()
    rig.run(1.2)
    frames = frames_of(rig.take(transport))
    pictures = [f for f in frames if f.data_type != DataType.AUDIO]
    assert pictures and pictures[0].data_type == DataType.I_FRAME


def test_a_late_camera_skips_ahead(clips: dict[int, Clip]) -> None:
    """A camera the reactor could not serve for 5 s does not send 5 s of frames at once:
    it goes on from the current time, pictures at the next I-frame."""
    rig = Rig(clips)
    transport = rig.open()
    rig.take(transport)
    rig.clock.advance(5.0)
    frames = frames_of(rig.take(transport))
    assert len(frames) <= 2
    assert [f.timestamp for f in frames] == [5000] * len(frames)
    assert {f.data_type for f in frames} <= {DataType.I_FRAME, DataType.AUDIO}


def test_close_audio_then_video(clips: dict[int, Clip]) -> None:
    """0x9102 close with close type 1 stops the audio and keeps the pictures; close type
    2 then leaves nothing, so the connection is closed: the stream is gone, not counted
    as a failure."""
    rig = Rig(clips)
    transport = rig.open()
    rig.run(0.5)
    rig.take(transport)
    rig.control(1, 0, close_type=1)
    rig.run(0.5)
    assert {p.data_type for p in packets_of(rig.take(transport))} == {DataType.P_FRAME}
    assert not transport.disconnecting
    rig.control(1, 0, close_type=2)
    assert transport.disconnecting
    proto = rig.endpoint.connections[-1][0]
    proto.connectionLost(Failure(ConnectionDone()))
    rig.run(0.5)
    assert transport.value() == b""
    assert rig.streamer.cameras == {} and rig.idle == 1
    assert rig.counters.streams_open == 0 and rig.counters.stream_failures == 0
    assert "ended" not in rig.streamer.status()


def test_a_new_request_replaces_the_stream(clips: dict[int, Clip]) -> None:
    """A second 0x9101 for a channel closes its stream and opens one to the new address."""
    rig = Rig(clips)
    first = rig.open()
    second = rig.open()
    assert first.disconnecting and not second.disconnecting
    rig.endpoint.connections[0][0].connectionLost(Failure(ConnectionDone()))
    assert len(rig.streamer.cameras) == 1 and rig.counters.streams_open == 1


def test_switch_to_the_sub_stream(clips: dict[int, Clip]) -> None:
    """0x9102 switch to the sub stream: its pictures (QCIF) from its next I-frame."""
    rig = Rig(clips)
    transport = rig.open()
    rig.run(0.5)
    before = [f for f in frames_of(rig.take(transport)) if f.data_type != DataType.AUDIO]
    rig.control(1, 1, switch=1)
    rig.run(2.0)
    after = [f for f in frames_of(rig.take(transport)) if f.data_type != DataType.AUDIO]
    sub = {f.payload for f in clips[1].video}
    assert after[0].data_type == DataType.I_FRAME and all(f.payload in sub for f in after)
    assert after[0].timestamp > before[-1].timestamp
    sizes = {(p.width, p.height) for p in decode_video(after)}
    assert sizes == {(176, 144)}


def test_failures_say_why(clips: dict[int, Clip]) -> None:
    """A stream that cannot connect, and one the media server closes, end; the status
    line says why, and the open count goes back down."""
    rig = Rig(clips)
    rig.endpoint.refuse = True
    rig.open(channel=1)
    assert rig.streamer.cameras == {}
    rig.endpoint.refuse = False
    rig.open(channel=2)
    rig.run(0.2)
    rig.endpoint.connections[-1][0].connectionLost(Failure(ConnectionDone()))
    status = rig.streamer.status()
    assert "streams 0 open" in status and "streams ended: 2 (" in status
    assert "cannot connect to 10.0.0.9:7612" in status
    assert "closed by the media server 10.0.0.9:7612 ×1" in status
    assert rig.counters.stream_failures == 2 and rig.streamer.cameras == {}


# -- a simulated device over loopback -------------------------------------------------------

FAST = DeviceConfig(
    interval=1.0, heartbeat=5.0, timeout=5.0, alarm_probability=0.0, gap_probability=0.0,
    reconnect_initial=0.2, reconnect_max=1.0, channels=2,
)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class Collector(protocol.Protocol):
    """The media server's end: keeps every byte."""

    def __init__(self, factory: CollectorFactory) -> None:
        self.factory = factory
        self.data = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class CollectorFactory(protocol.Factory):
    def __init__(self) -> None:
        self.connections: list[Collector] = []

    def buildProtocol(self, addr: Any) -> Collector:
        return Collector(self)


def reply(platform: FakePlatform, phone: str, msg_id: int, serial: int | None = None) -> Any:
    for who, m in platform.replies:
        if (
            who == phone_key(phone)
            and m.header.msg_id == msg_id
            and (serial is None or m.body.reply_serial == serial)
        ):
            return m.body
    return None


def video_frames(data: bytes) -> int:
    return sum(1 for f in frames_of(data) if f.data_type != DataType.AUDIO)


@pytest.mark.parametrize("version, header", [(2013, "hisilicon"), (2019, "none")])
@pytest_twisted.ensureDeferred
async def test_a_device_streams_over_loopback(tmp_path: Path, version: int, header: str) -> None:
    """A simulated device answers 0x9003 with its attributes, refuses a channel it does not
    have, and after a 0x9101 streams the clip to the address given: the phone as a SIM of 6
    (2013) or 10 (2019) bytes, bodies of at most 950 bytes, an I-frame every 50 pictures,
    every picture decoded by FFmpeg, the 1 kHz tone in G.711A with or without the HiSilicon
    header; a 0x9102 close ends the connection and nothing more is sent; stopping the
    fleet closes the stream still open (a sub stream)."""
    reactor = _reactor()
    platform = FakePlatform(reactor)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(platform)
    media = CollectorFactory()
    media_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(media)
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{port.getHost().port}", devices=1, first_phone=PHONE,
        version=str(version), seed=5, status_interval=0, device=FAST,
        video=VideoConfig(audio_header=header, pace=8.0, cache_dir=str(tmp_path)),
    )
    fleet = Fleet(reactor, config)
    done = fleet.start()
    try:
        await until(lambda: phone_key(PHONE) in platform.sessions, "the device to log in")
        platform.send(PHONE, QueryAvAttributes())
        await until(lambda: reply(platform, PHONE, 0x1003), "the 0x1003")
        assert reply(platform, PHONE, 0x1003) == AvAttributes(6, 1, 0, 1, 320, 1, 98, 2, 2)

        where = ("127.0.0.1", media_port.getHost().port, 0)
        refused = platform.send(PHONE, RealtimeAvRequest(*where, 3, 0, 0))
        await until(lambda: reply(platform, PHONE, 0x0001, refused), "the refusal")
        assert reply(platform, PHONE, 0x0001, refused) == TerminalResponse(refused, 0x9101, 1)

        asked = platform.send(PHONE, RealtimeAvRequest(*where, 1, 0, 0))
        await until(lambda: reply(platform, PHONE, 0x0001, asked), "the answer to 0x9101")
        assert reply(platform, PHONE, 0x0001, asked) == TerminalResponse(asked, 0x9101, 0)
        await until(lambda: len(media.connections) == 1, "the stream's connection")
        collector = media.connections[0]
        await until(lambda: video_frames(bytes(collector.data)) >= 110, "110 pictures")
        assert "streams 1 open" in fleet.status_line()

        closing = platform.send(PHONE, AvTransmissionControl(1, 0))
        await within(collector.lost, "the stream to be closed after 0x9102")
        await until(lambda: reply(platform, PHONE, 0x0001, closing), "the answer to 0x9102")
        assert reply(platform, PHONE, 0x0001, closing) == TerminalResponse(closing, 0x9102, 0)
        data = bytes(collector.data)
        await until(lambda: fleet.counters.streams_open == 0, "the camera to stop")
        await defer_later(reactor, 0.3)
        assert len(media.connections) == 1 and bytes(collector.data) == data
        assert fleet.streamer.cameras == {} and fleet.counters.stream_failures == 0

        platform.send(PHONE, RealtimeAvRequest(*where, 2, 0, 1))  # channel 2's sub stream
        await until(
            lambda: len(media.connections) == 2 and video_frames(bytes(media.connections[1].data)),
            "channel 2's pictures",
        )
        await within(fleet.stop(), "the fleet to stop")
        await within(done, "the fleet to finish")
        await within(media.connections[1].lost, "the fleet's stop to close the stream")
        sub = [f for f in frames_of(bytes(media.connections[1].data)) if f.data_type != 3]
        assert {f.channel for f in sub} == {2}
        assert {(p.width, p.height) for p in decode_video(sub)} == {(176, 144)}
    finally:
        await port.stopListening()
        await media_port.stopListening()

    digits = sim_digits(PHONE, version)
    assert len(digits) == (20 if version == 2019 else 12)
    packets = packets_of(data)
    assert {(p.sim, p.channel) for p in packets} == {(digits, 1)}
    assert max(len(p.payload) for p in packets) <= MAX_BODY
    assert any(p.subpackage == Subpackage.MIDDLE for p in packets)

    frames = frames_of(data, PHONE)
    video = [f for f in frames if f.data_type != DataType.AUDIO]
    audio = [f for f in frames if f.data_type == DataType.AUDIO]
    clip = load_clip(cache_dir=tmp_path)
    assert [f.payload for f in video] == [f.payload for f in clip.video[: len(video)]]
    keys = [i for i, f in enumerate(video) if f.data_type == DataType.I_FRAME]
    assert keys == list(range(0, len(video), 50)) and len(keys) >= 3
    pictures = decode_video(video)
    assert len(pictures) == len(video)
    assert [i for i, p in enumerate(pictures) if p.key_frame] == keys
    assert {(p.width, p.height) for p in pictures} == {(352, 288)}
    assert audio and {has_hisilicon_header(f.payload) for f in audio} == {header == "hisilicon"}
    assert decode_tone(audio) == 1000


def defer_later(reactor: Any, seconds: float) -> defer.Deferred[None]:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)
