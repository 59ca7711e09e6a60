"""Talk-back over real loopback sockets: a browser (autobahn) sends a tone as PCM to the
media server's /talk WebSocket; a fake unit, which connects when the fake opener's 0x9101
asks it to and sends its own tone up in G.711A, reads what comes down with MediaStream and
FFmpeg decodes it to the browser's tone, in each codec; the browser's FLV decodes as AAC
carrying the unit's tone. Refusals, the one-session rule, closing (0x9102 command 4) and
oversize messages are said in words."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import attrs
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, protocol

from cmsv6.media.viewing import View, sign_view, view_key
from cmsv6.plugins.media import talk
from cmsv6.plugins.media.fanout import (
    CLOSE_BAD_REQUEST,
    CLOSE_DEVICE,
    CLOSE_FORBIDDEN,
    CLOSE_TOO_MANY,
)
from cmsv6.plugins.media.opener import OpenFailed
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvAttributes,
    AvCodec,
    AvTransmissionControl,
    ControlCommand,
    RealtimeAvRequest,
    RequestDataType,
)
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType, Packet
from cmsv6.protocols.jt1078.stream import MediaStream, SimSeen
from tests.media.test_talk import ffmpeg_decode, rms
from tests.media.tones import (
    RATE,
    chunks,
    dominant,
    ffmpeg_encode,
    hisilicon,
    pcm16,
    tone,
)
from tests.plugins.media.loopback import Served, http_viewer
from tests.plugins.media.support import (
    MEDIA_ID,
    PHONE,
    SERVER_KEY,
    SIM,
    START,
    play,
    wire,
)
from tests.support.device import until, within

#: The browser's tone (down) and the unit's (up).
DOWN, UP = 1000, 500
#: Seconds of the browser's tone sent.
SECONDS = 1.2


def talk_token(channel: int = 1, broadcast: bool = False, stream: str = "talk") -> str:
    view = View(MEDIA_ID, PHONE, channel, stream, int(time.time() + 120),
                {"id": "talk-session-0123456789", "broadcast": broadcast})  # fmt: skip
    return sign_view(view_key(SERVER_KEY), view)


def uplink(codec: int = AvCodec.G711A, header: bool = False, seconds: int = 2, sim: str = SIM) -> bytes:
    """The unit's tone as its packets (``sim`` as it writes its SIM): 320-sample frames
    every 40 ms of its clock."""
    name = "pcm_alaw" if codec == AvCodec.G711A else "pcm_mulaw"
    frames = chunks(ffmpeg_encode(name, tone(seconds * RATE, freq=UP)), 320)
    packets = [Packet(sim=sim, channel=1, data_type=DataType.AUDIO, timestamp=START + 40 * i,
                      payload=hisilicon(f) if header else f, payload_type=codec, sequence=i)
               for i, f in enumerate(frames)]  # fmt: skip
    return wire(packets)


class Unit(protocol.Protocol):
    """The fake unit's talk-back connection: sends its audio up at once, keeps what comes
    down (MediaStream's frames and the SIM it named)."""

    def __init__(self, up: bytes) -> None:
        self.up = up
        self.stream = MediaStream()
        self.frames: list[Frame] = []
        self.sims: list[str] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.up)

    def dataReceived(self, data: bytes) -> None:
        for event in self.stream.feed(data):
            if isinstance(event, Frame):
                self.frames.append(event)
            elif isinstance(event, SimSeen):
                self.sims.append(event.identity.seen)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


@attrs.define
class FakeOpener:
    """Answers the session's messages as a unit behind login would: 0x9003 with
    ``attributes`` (or fails: not answered), 0x9101 with a general response and then the
    unit connects to the address it names, 0x9102 with a general response."""

    reactor: Any
    attributes: AvAttributes | None = None
    up: bytes = b""
    #: Whether the unit connects after 0x9101 (tests on a Clock claim by hand).
    connect: bool = True
    sent: list[tuple[int, Any]] = attrs.Factory(list)
    units: list[Unit] = attrs.Factory(list)

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        return defer.fail(OpenFailed("live streams are not part of these tests"))

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        return defer.succeed(None)

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        assert phone == PHONE
        message = decode_body(msg_id, body) if body else None
        self.sent.append((msg_id, message))
        if msg_id == 0x9003:
            if self.attributes is None:
                return defer.fail(OpenFailed(f"device {phone} did not answer 0x9003"))
            return defer.succeed({"msg_id": 0x1003, "version": 2013,
                                  "body": encode_body(self.attributes)})  # fmt: skip
        if msg_id == 0x9101 and self.connect:
            self.reactor.callLater(0, self._connect, message)
        ok = encode_body(TerminalResponse(1, msg_id, 0))
        return defer.succeed({"msg_id": 0x0001, "version": 2013, "body": ok})

    def _connect(self, request: RealtimeAvRequest) -> None:
        endpoint = endpoints.TCP4ClientEndpoint(self.reactor, request.server_ip, request.tcp_port)
        unit = Unit(self.up)
        self.units.append(unit)
        endpoints.connectProtocol(endpoint, unit)

    def of(self, msg_id: int) -> list[Any]:
        return [m for i, m in self.sent if i == msg_id]


class Browser(WebSocketClientProtocol):
    """The browser's end: text messages as JSON, binary ones (the FLV) in order."""

    def onOpen(self) -> None:
        self.factory.browser = self
        self.texts: list[dict[str, Any]] = []
        self.flv = b""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.flv += payload
            return
        message = json.loads(payload)
        self.texts.append(message)
        if message.get("type") == "ready" and not self.factory.ready.called:
            self.factory.ready.callback(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))

    def send_tone(self, seconds: float = SECONDS, message: int = 640) -> None:
        """The browser's tone as PCM, ``message`` bytes a message (640: 40 ms)."""
        for piece in chunks(pcm16(tone(int(seconds * RATE), freq=DOWN)), message):
            self.sendMessage(piece, isBinary=True)


def browser(reactor: Any, port: int, path: str) -> WebSocketClientFactory:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}", reactor=reactor)
    factory.protocol = Browser
    factory.ready, factory.closed = defer.Deferred(), defer.Deferred()
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return factory


def path(channel: int = 1, **token: Any) -> str:
    return f"/talk/{PHONE}/{channel}?token={talk_token(channel, **token)}"


def attributes(codec: int = AvCodec.G711A, output: int = 1, frame: int = 320) -> AvAttributes:
    return AvAttributes(codec, 1, 0, 1, frame, output, AvCodec.H264, 1, 4)


@defer.inlineCallbacks
def serve(opener_attributes: AvAttributes | None, up: bytes) -> Any:
    from twisted.internet import reactor

    opener = FakeOpener(reactor, opener_attributes, up)
    served = yield Served(reactor, opener, open_timeout=10.0).start()
    served.media.config = attrs.evolve(served.media.config,
                                       public_jt1078=f"127.0.0.1:{served.jt1078}")  # fmt: skip
    return served, opener


#: A unit that writes its SIM in 10 bytes (JT/T 808-2019 style).
SIM10 = "00000000" + SIM
CODECS = [
    # (0x1003's codec or None: not answered, the unit's uplink codec, its HiSilicon header,
    #  its SIM, what the browser is told, the frames' size)
    (AvCodec.G711A, AvCodec.G711A, False, SIM, "g711a", 320),
    (AvCodec.G711U, AvCodec.G711A, False, SIM, "g711u", 320),
    (AvCodec.G726, AvCodec.G711A, False, SIM, "g726", 160),
    (AvCodec.ADPCMA, AvCodec.G711A, False, SIM, "adpcm", 164),
    (AvCodec.ADPCMA, AvCodec.G711A, True, SIM, "adpcm", 168),
    (None, AvCodec.G711U, False, SIM10, "g711u", 320),
]


@pytest.mark.parametrize(("said", "up", "header", "sim", "codec", "size"), CODECS,
                         ids=["g711a", "g711u", "g726", "adpcm", "adpcm-hisilicon", "no-0x1003"])  # fmt: skip
@pytest_twisted.inlineCallbacks
def test_the_browsers_tone_arrives_at_the_unit_and_the_units_comes_back(
    said: int | None, up: int, header: bool, sim: str, codec: str, size: int
) -> None:
    """The session asks 0x9003, then 0x9101 (talk, our JT/T 1078 address, the channel); the
    browser is told the codec (the 0x1003's, else the unit's packets') and 320-sample
    frames; its 1 kHz PCM arrives at the unit as audio packets in that codec (HiSilicon
    header when the unit's own audio has one), the unit's SIM and channel, sequence
    numbers and timestamps counting on (its SIM as it writes it: 6 or 10 bytes), that FFmpeg decodes to the tone at its level; the
    browser's FLV decodes as AAC carrying the unit's 500 Hz tone."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(said) if said else None, uplink(up, header, sim=sim))
    try:
        factory = browser(reactor, served.web, path())
        ready = yield within(factory.ready, "the ready message")
        assert ready == {"type": "ready", "codec": codec, "frame_samples": 320}
        request = opener.of(0x9101)[0]
        assert (request.server_ip, request.tcp_port, request.channel, request.data_type,
                request.stream_type) == ("127.0.0.1", served.jt1078, 1, RequestDataType.TALK, 0)  # fmt: skip
        factory.browser.send_tone()
        unit = opener.units[0]
        yield until(lambda: len(unit.frames) >= 24, "the browser's audio at the unit")
        frames = unit.frames
        assert unit.sims == [sim]
        assert {f.payload_type for f in frames} == {{"g711a": 6, "g711u": 7, "g726": 8, "adpcm": 26}[codec]}
        assert {(f.channel, f.data_type, len(f.payload)) for f in frames} == {(1, DataType.AUDIO, size)}
        assert [f.sequence - frames[0].sequence for f in frames] == list(range(len(frames)))
        assert [f.timestamp - frames[0].timestamp for f in frames] == [40 * i for i in range(len(frames))]  # type: ignore[operator]
        if header:
            assert all(f.payload[:2] == b"\x00\x01" and f.payload[2] * 2 == size - 4 for f in frames)
        decoded = ffmpeg_decode(codec, [f.payload for f in frames])
        middle = decoded[RATE // 5 : 7 * RATE // 8]
        assert dominant(middle, RATE) == DOWN
        assert rms(middle) == pytest.approx(8000 / math.sqrt(2), rel=0.1)
        yield until(lambda: len(factory.browser.flv) > 2000, "the unit's audio at the browser")
        played = play(factory.browser.flv)
        assert played.audio_codec == "aac" and played.errors == 0
        assert dominant(list(played.audio[RATE // 4 : RATE]), RATE) == UP
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_closing_the_socket_closes_talk_back_on_the_unit() -> None:
    """The browser closing its WebSocket sends 0x9102 command 4 (close talk-back) for the
    channel and closes the unit's connection; the channel is free for a new session."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(), uplink())
    try:
        factory = browser(reactor, served.web, path())
        yield within(factory.ready, "the ready message")
        assert opener.of(0x9102) == []
        factory.browser.sendClose(1000)
        yield within(opener.units[0].lost, "the unit's connection closed")
        assert opener.of(0x9102) == [AvTransmissionControl(1, ControlCommand.CLOSE_TALK)]
        again = browser(reactor, served.web, path())
        yield within(again.ready, "a new session's ready message")
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_the_unit_going_ends_the_session_in_words() -> None:
    """The unit's connection closing ends the browser's session with 4502 and words (an
    error message, then the close), and 0x9102 command 4 is sent."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(), uplink())
    try:
        factory = browser(reactor, served.web, path())
        yield within(factory.ready, "the ready message")
        opener.units[0].transport.loseConnection()
        code, reason = yield within(factory.closed, "the browser closed")
        assert code == CLOSE_DEVICE and "closed its talk-back connection" in reason
        assert factory.browser.texts[-1]["type"] == "error"
        assert "closed its talk-back connection" in factory.browser.texts[-1]["error"]
        assert opener.of(0x9102) == [AvTransmissionControl(1, ControlCommand.CLOSE_TALK)]
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_a_unit_without_audio_output_is_refused_in_words() -> None:
    """A 0x1003 that says no audio output ends the session before any 0x9101: 4502, in
    words."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(output=0), uplink())
    try:
        factory = browser(reactor, served.web, path())
        code, reason = yield within(factory.closed, "the browser closed")
        assert code == CLOSE_DEVICE and "no audio output" in reason and PHONE in reason
        assert factory.browser.texts == [{"type": "error", "error": reason}]
        assert opener.of(0x9101) == [] and opener.of(0x9102) == []
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_a_second_session_on_the_channel_is_refused_and_the_first_goes_on() -> None:
    """While a session talks on a channel, a second one is closed with 4029 saying so; the
    first still gets its audio to the unit."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(), uplink())
    try:
        first = browser(reactor, served.web, path())
        yield within(first.ready, "the ready message")
        second = browser(reactor, served.web, path())
        code, reason = yield within(second.closed, "the second closed")
        assert code == CLOSE_TOO_MANY and "talk-back session already" in reason
        assert len(opener.of(0x9101)) == 1
        first.browser.send_tone(0.4)
        yield until(lambda: len(opener.units[0].frames) >= 8, "the first's audio at the unit")
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_broadcast_opens_data_type_4() -> None:
    """A broadcast token asks the unit for data type 4 (broadcast) rather than talk."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(), uplink())
    try:
        factory = browser(reactor, served.web, path(broadcast=True))
        yield within(factory.ready, "the ready message")
        assert opener.of(0x9101)[0].data_type == RequestDataType.BROADCAST
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_oversize_message_closes_with_a_reason() -> None:
    """A message over 4096 bytes closes the socket with 1009 saying the limit, and the
    unit's talk-back is closed (0x9102 command 4)."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(), uplink())
    try:
        factory = browser(reactor, served.web, path())
        yield within(factory.ready, "the ready message")
        factory.browser.sendMessage(bytes(4098), isBinary=True)
        code, reason = yield within(factory.closed, "the browser closed")
        assert code == 1009 and "4096" in reason
        yield within(opener.units[0].lost, "the unit's connection closed")
        assert opener.of(0x9102) == [AvTransmissionControl(1, ControlCommand.CLOSE_TALK)]
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_too_much_audio_waiting_is_dropped_and_counted() -> None:
    """PCM sent much faster than real time: what would make more than 2 s wait is dropped
    and counted; the rest goes down."""
    from twisted.internet import reactor

    served, _ = yield serve(attributes(), uplink())
    try:
        factory = browser(reactor, served.web, path())
        yield within(factory.ready, "the ready message")
        factory.browser.send_tone(4.0, message=4000)
        session = next(iter(_sessions(served).values()))
        yield until(lambda: session.dropped + session.encoder.buffered
                    + 320 * (len(session.down) + session.frames_down) >= 4 * RATE,
                    "every message handled")  # fmt: skip
        assert 1.5 * RATE <= session.dropped <= 2.5 * RATE
        assert any(k.startswith("dropped:talk-back audio more than 2 s") for k in served.media.counters)
    finally:
        yield served.stop()


def _sessions(served: Served) -> dict[Any, Any]:
    hub = next(c.__self__ for c in served.media.claimants if isinstance(c.__self__, talk.TalkHub))
    return hub.sessions


@pytest_twisted.inlineCallbacks
def test_refusals_in_words() -> None:
    """A plain GET is answered 400 saying it is a WebSocket; a live viewing token, or one
    for another channel, is refused (4003) in words; a text message ends a session with
    4004 saying talk-back takes PCM."""
    from twisted.internet import reactor

    served, opener = yield serve(attributes(), uplink())
    try:
        plain = yield http_viewer(reactor, served.web, path())
        yield within(plain.lost, "the plain GET answered")
        assert plain.status == 400 and b"talk-back is a WebSocket" in plain.body
        for bad in (f"/talk/{PHONE}/1?token={talk_token(stream='main')}",
                    f"/talk/{PHONE}/2?token={talk_token(1)}"):  # fmt: skip
            factory = browser(reactor, served.web, bad)
            code, reason = yield within(factory.closed, "refused")
            assert code == CLOSE_FORBIDDEN and "not talk-back with device" in reason
        assert opener.sent == []
        factory = browser(reactor, served.web, path())
        yield within(factory.ready, "the ready message")
        factory.browser.sendMessage(b"hello", isBinary=False)
        code, reason = yield within(factory.closed, "closed for a text message")
        assert code == CLOSE_BAD_REQUEST and "no text" in reason
        assert opener.of(0x9102) == [AvTransmissionControl(1, ControlCommand.CLOSE_TALK)]
    finally:
        yield served.stop()
