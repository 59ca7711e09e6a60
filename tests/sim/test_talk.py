"""Simulated talk-back and broadcast (0x9101 data types 2 and 4), the device's audio codec
(0x1003, live audio), PTZ and an H.265 channel: a 1 kHz tone encoded by FFmpeg in each codec goes down a
talk connection and the device reports it heard 1 kHz at the tone's level; what it sends
up decodes (FFmpeg, and the media server's own reader for IMA-ADPCM) to its 1 kHz tone."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import attrs
import av
import pytest
import pytest_twisted
from twisted.internet import protocol
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from cmsv6.media.audio import AudioTranscoder
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvAttributes,
    AvTransmissionControl,
    PlaybackRequest,
    PtzFocus,
    PtzInfraredLight,
    PtzIris,
    PtzRotate,
    PtzWiper,
    PtzZoom,
    QueryAvAttributes,
    RealtimeAvRequest,
)
from cmsv6.protocols.jt1078.packet import DataType, Packet, build_packet
from cmsv6.sim.device import Counters, DeviceConfig
from cmsv6.sim.fakeplatform import FakePlatform, phone_key
from cmsv6.sim.fleet import Fleet, FleetConfig
from cmsv6.sim.streamer import Streamer
from cmsv6.sim.video import VideoConfig, sim_digits
from tests.media.tones import chunks, decode_aac, dominant, ffmpeg_blocks, ffmpeg_encode, hisilicon, tone
from tests.sim.test_device import QUIET
from tests.sim.test_device import Rig as DeviceRig
from tests.sim.test_video import (
    FAST,
    PHONE,
    T0,
    CollectorFactory,
    Endpoint,
    _reactor,
    frames_of,
    reply,
)
from tests.support.device import until, within

CODECS = ("g711a", "g711u", "g726", "adpcm")
PAYLOAD_TYPES = {"g711a": 6, "g711u": 7, "g726": 8, "adpcm": 26}
AMPLITUDE = 8000
#: The tone's RMS level: a sine of amplitude A has an RMS of A/√2.
LEVEL = 20 * math.log10(AMPLITUDE / math.sqrt(2) / 32768)


def tone_frames(codec: str, seconds: float = 2.0) -> list[bytes]:
    """A 1 kHz tone as FFmpeg encodes it in ``codec``, cut in frames as a platform sends
    them: 40 ms of G.711 or G.726, and IMA-ADPCM blocks in the DVI4 layout (FFmpeg's
    adpcm_ima_wav blocks with their first sample taken as the state and the nibbles in
    DVI4's order)."""
    samples = tone(int(8000 * seconds), amplitude=AMPLITUDE)
    if codec == "adpcm":
        swap = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))
        blocks = ffmpeg_blocks("adpcm_ima_wav", samples, block_size="256")
        return [b[:4] + b[4:].translate(swap) for b in blocks]
    if codec == "g726":
        return chunks(ffmpeg_encode("g726le", samples, code_size="4"), 160)
    return chunks(ffmpeg_encode({"g711a": "pcm_alaw", "g711u": "pcm_mulaw"}[codec], samples), 320)


def downlink(codec: str, channel: int, header: bool, seconds: float = 2.0) -> bytes:
    """The tone as the media server sends it down: 1078 audio packets."""
    out = []
    for i, frame in enumerate(tone_frames(codec, seconds)):
        out.append(build_packet(Packet(
            sim=sim_digits(PHONE, 2013), channel=channel, data_type=DataType.AUDIO,
            payload=hisilicon(frame) if header else frame, sequence=i, timestamp=40 * i,
            payload_type=PAYLOAD_TYPES[codec], marker=True,
        )))
    return b"".join(out)


def uplink_tone(codec: str, payloads: list[bytes]) -> int:
    """The dominant frequency of what a unit sent up, decoded by the media server's reader
    (``AudioTranscoder``, FFmpeg inside) and its AAC decoded again by FFmpeg."""
    t = AudioTranscoder.for_payload_type(PAYLOAD_TYPES[codec], g726_bits=4 if codec == "g726" else None)
    out = []
    for i, p in enumerate(payloads):
        out += t.feed(p, 40 * i)
    out += t.flush()
    assert t.counters.skipped == 0, t.last_error
    samples = decode_aac((f.config, f.data) for f in out)
    return dominant(samples[2048:4096], 8000)


class Rig:
    def __init__(self, codec: str = "g711a") -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.endpoint = Endpoint()
        self.counters = Counters()
        self.streamer = Streamer(self.clock, VideoConfig(), self.endpoint, self.counters)
        self.codec = codec

    def talk(self, channel: int = 1, data_type: int = 2) -> tuple[Any, Any]:
        request = RealtimeAvRequest("10.0.0.9", 7612, 0, channel, data_type, 0)
        self.streamer.open(PHONE, 2013, request, self.codec)
        return self.endpoint.connections[-1]

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds * 25)):
            self.clock.advance(0.04)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("header", [True, False])
def test_talk_back_hears_the_tone(codec: str, header: bool) -> None:
    """A 1 kHz tone encoded by FFmpeg in the device's codec (with the HiSilicon header or
    without) sent down the talk connection: the device reports the codec, every frame, 2 s,
    1000 Hz and the tone's level; it sends its own tone up in its codec meanwhile, which
    decodes to 1 kHz; 0x9102 command 4 closes the talk-back and keeps the final report."""
    rig = Rig(codec)
    proto, transport = rig.talk(channel=2)
    rig.run(1.0)
    proto.dataReceived(downlink(codec, 2, header))
    report = rig.streamer.talk_reports[(PHONE, 2)]
    frames = len(tone_frames(codec))
    assert (report.codec, report.frames, report.skipped) == (codec, frames, 0)
    assert report.seconds == pytest.approx(2.0, abs=0.07)
    assert report.frequency == 1000
    assert report.level_dbfs == pytest.approx(LEVEL, abs=1.0)
    assert "1000 Hz" in str(report) and "1000 Hz" in rig.streamer.status()

    up = frames_of(transport.value(), PHONE)
    assert up and {(f.data_type, f.payload_type, f.channel) for f in up} == {
        (DataType.AUDIO, PAYLOAD_TYPES[codec], 2)
    }
    assert [f.timestamp for f in up] == [40 * i for i in range(len(up))]
    rig.run(1.0)
    payloads = [f.payload for f in frames_of(transport.value(), PHONE)]
    assert uplink_tone(codec, payloads) == 1000

    rig.streamer.control(PHONE, AvTransmissionControl(2, 4))
    assert transport.disconnecting
    proto.connectionLost(Failure(ConnectionDone()))
    assert rig.streamer.talks == {} and rig.counters.stream_failures == 0
    assert rig.streamer.talk_reports[(PHONE, 2)].frames == frames


def test_broadcast_listens_only_and_garbage_is_refused() -> None:
    """A broadcast (data type 4) sends nothing up and reports what it hears; a talk-back and
    a live stream run on one channel at once; bytes that are no 1078 stream close the
    talk-back, and frames in another codec are counted as not decoded."""
    rig = Rig("g711u")
    proto, transport = rig.talk(channel=1, data_type=4)
    rig.streamer.open(PHONE, 2013, RealtimeAvRequest("10.0.0.9", 7612, 0, 1, 0, 0))
    live = rig.endpoint.connections[-1][1]
    rig.run(1.0)
    assert transport.value() == b"" and live.value()
    proto.dataReceived(downlink("g711u", 1, True, 1.0))
    report = rig.streamer.talk_reports[(PHONE, 1)]
    assert (report.frames, report.frequency) == (25, 1000)
    proto.dataReceived(downlink("adpcm", 1, False, 0.2))
    assert rig.streamer.talk_reports[(PHONE, 1)].frames == 25 + len(tone_frames("adpcm", 0.2))
    talk, _ = rig.talk(channel=3)
    talk.dataReceived(b"\x00" * 70_000)
    assert rig.endpoint.connections[-1][1].disconnecting


@pytest.mark.parametrize("codec", CODECS)
def test_live_audio_and_attributes_in_the_codec(codec: str) -> None:
    """The device's 0x1003 names its codec and a loudspeaker; its live audio is in that
    codec (payload type), 40 ms frames, and decodes to the 1 kHz tone in the media server's
    reader."""
    rig = DeviceRig(attrs.evolve(QUIET, audio_codec=codec))
    rig.login()
    rig.link.take()
    rig.platform(QueryAvAttributes())
    (answer,) = rig.link.take()
    assert answer.body == AvAttributes(PAYLOAD_TYPES[codec], 1, 0, 1, 320, 1, 98, 4, 4)
    streamer = Rig(codec)
    streamer.streamer.open(PHONE, 2013, RealtimeAvRequest("10.0.0.9", 7612, 0, 1, 3, 0), codec)
    streamer.run(1.2)
    audio = frames_of(streamer.endpoint.connections[-1][1].value(), PHONE)
    assert {f.payload_type for f in audio} == {PAYLOAD_TYPES[codec]}
    assert [f.timestamp for f in audio] == [40 * i for i in range(len(audio))]
    assert uplink_tone(codec, [f.payload for f in audio]) == 1000


def test_no_audio_output() -> None:
    """``audio_output`` off: 0x1003 says there is no loudspeaker, and talk-back and
    broadcast are refused (3) while listening is served."""
    rig = DeviceRig(attrs.evolve(QUIET, audio_output=False))
    rig.login()
    rig.link.take()
    rig.platform(QueryAvAttributes())
    (answer,) = rig.link.take()
    assert answer.body.audio_output == 0
    for data_type, result in ((2, 3), (4, 3), (3, 0)):
        h = rig.platform(RealtimeAvRequest("10.0.0.9", 7612, 0, 1, data_type, 0))
        (answer,) = rig.link.take()
        assert answer.body == TerminalResponse(h.serial, h.msg_id, result)


def test_codec_names_are_checked() -> None:
    """A codec the simulator does not have is refused in words."""
    with pytest.raises(ValueError, match="audio codec 'aac'"):
        DeviceConfig(audio_codec="aac")


def test_ptz_is_acknowledged_and_kept() -> None:
    """0x9301-0x9306 are answered 0 and change the channel's state (a channel the device
    lacks: 1); the state says what was done last, in words."""
    rig = DeviceRig(QUIET)
    rig.login()
    rig.link.take()
    for body, result in [
        (PtzRotate(1, 3, 10), 0),
        (PtzFocus(1, 0), 0),
        (PtzIris(1, 1), 0),
        (PtzZoom(1, 0), 0),
        (PtzZoom(1, 0), 0),
        (PtzWiper(1, 1), 0),
        (PtzInfraredLight(2, 1), 0),
        (PtzRotate(9, 1, 1), 1),
    ]:
        h = rig.platform(body)
        (answer,) = rig.link.take()
        assert answer.body == TerminalResponse(h.serial, h.msg_id, result)
    one = rig.device.ptz[1]
    assert (one.direction, one.speed, one.focus, one.iris, one.zoom, one.wiper) == (3, 10, 1, -1, 2, True)
    assert one.last == "wiper on" and not one.infrared
    assert rig.device.ptz[2].infrared and rig.device.ptz[2].last == "infrared light on"
    assert 9 not in rig.device.ptz
    rig.platform(PtzRotate(1, 3, 10))
    assert rig.device.ptz[1].last == "rotate left at speed 10"
    rig.platform(PtzRotate(1, 0, 0))
    assert rig.device.ptz[1].direction == 0 and rig.device.ptz[1].last == "rotation stopped"


class Talker(protocol.Protocol):
    """The media server's end of a talk-back: sends the tone down once connected, keeps
    what comes up."""

    def __init__(self, factory: TalkerFactory) -> None:
        self.factory = factory
        self.data = bytearray()

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        self.transport.write(downlink(self.factory.codec, 1, True))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class TalkerFactory(protocol.Factory):
    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.connections: list[Talker] = []

    def buildProtocol(self, addr: Any) -> Talker:
        return Talker(self)


@pytest_twisted.ensureDeferred
async def test_talk_back_over_loopback() -> None:
    """A simulated G.726 device answers a talk-back 0x9101 (0), connects, sends its audio
    up and reports the 1 kHz tone the server sent down; 0x9102 command 4 closes it."""
    reactor = _reactor()
    platform = FakePlatform(reactor)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(platform)
    media = TalkerFactory("g726")
    media_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(media)
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{port.getHost().port}", devices=1, first_phone=PHONE,
        seed=5, status_interval=0, device=attrs.evolve(FAST, audio_codec="g726"),
    )
    fleet = Fleet(reactor, config)
    done = fleet.start()
    key = (PHONE, 1)
    try:
        await until(lambda: phone_key(PHONE) in platform.sessions, "the device to log in")
        asked = platform.send(PHONE, RealtimeAvRequest("127.0.0.1", media_port.getHost().port, 0, 1, 2, 0))
        await until(lambda: reply(platform, PHONE, 0x0001, asked), "the answer to 0x9101")
        assert reply(platform, PHONE, 0x0001, asked).result == 0
        sent = len(tone_frames("g726"))
        await until(lambda: key in fleet.streamer.talk_reports
                    and fleet.streamer.talk_reports[key].frames == sent, "the tone to be heard")
        await until(lambda: len(frames_of(bytes(media.connections[0].data))) >= 10, "audio up")
        closing = platform.send(PHONE, AvTransmissionControl(1, 4))
        await until(lambda: key not in fleet.streamer.talks, "the talk-back to close")
        assert reply(platform, PHONE, 0x0001, closing).result == 0
    finally:
        await within(fleet.stop(), "the fleet to stop")
        await done
        await port.stopListening()
        await media_port.stopListening()
    report = fleet.streamer.talk_reports[key]
    assert (report.codec, report.frequency) == ("g726", 1000)
    up = frames_of(bytes(media.connections[0].data))
    assert {f.payload_type for f in up} == {8}
    assert uplink_tone("g726", [f.payload for f in up]) == 1000


# -- H.265 ------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_h265_channel_over_loopback(tmp_path: Any) -> None:
    """With ``h265_channels`` {2}, 0x1003 says H.265, channel 2 streams the clip in H.265
    (payload type 99, every picture decoded by FFmpeg's HEVC decoder, keyframes first) and
    channel 1 stays H.264 (98); a playback of channel 2 is H.265 too."""
    reactor = _reactor()
    platform = FakePlatform(reactor)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(platform)
    media = CollectorFactory()
    media_port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(media)
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{port.getHost().port}", devices=1, first_phone=PHONE,
        seed=5, status_interval=0, device=attrs.evolve(FAST, h265_channels=frozenset({2})),
        video=VideoConfig(pace=4.0, cache_dir=str(tmp_path)),
    )
    fleet = Fleet(reactor, config)
    done = fleet.start()
    where = ("127.0.0.1", media_port.getHost().port, 0)
    try:
        await until(lambda: phone_key(PHONE) in platform.sessions, "the device to log in")
        platform.send(PHONE, QueryAvAttributes())
        await until(lambda: reply(platform, PHONE, 0x1003), "the 0x1003")
        assert reply(platform, PHONE, 0x1003).video_codec == 99
        platform.send(PHONE, RealtimeAvRequest(*where, 2, 1, 0))
        await until(lambda: len(media.connections) == 1, "channel 2's connection")
        platform.send(PHONE, RealtimeAvRequest(*where, 1, 1, 0))
        await until(lambda: len(media.connections) == 2, "channel 1's connection")
        start = datetime(2025, 6, 14, 9, 30, tzinfo=BEIJING)
        platform.send(PHONE, PlaybackRequest(*where, 2, 2, 1, 0, 0, 0, start, None))
        await until(lambda: len(media.connections) == 3, "the playback's connection")
        await until(lambda: all(len(frames_of(bytes(c.data))) >= 60 for c in media.connections),
                    "60 pictures on each")
    finally:
        await within(fleet.stop(), "the fleet to stop")
        await done
        await port.stopListening()
        await media_port.stopListening()
    by_channel = {}
    for c in media.connections:
        frames = frames_of(bytes(c.data))
        by_channel.setdefault(frames[0].channel, []).append(frames)
    h264 = by_channel[1][0]
    assert {f.payload_type for f in h264} == {98}
    for frames in by_channel[2]:
        assert {f.payload_type for f in frames} == {99}
        assert frames[0].data_type == DataType.I_FRAME
        ctx = av.CodecContext.create("hevc", "r")
        pictures = []
        for f in frames:
            pictures += ctx.decode(av.Packet(f.payload))
        pictures += ctx.decode(None)
        assert len(pictures) == len(frames) and pictures[0].key_frame
        assert {(p.width, p.height) for p in pictures} == {(352, 288)}
