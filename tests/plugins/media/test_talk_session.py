"""A talk-back session on a Clock, without sockets: the browser's audio goes down one frame
per frame length (the unit plays it in real time), and the end releases the unit's
connection and tells the browser why."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.testing import StringTransport

from cmsv6.plugins.media.fanout import CLOSE_GOING_AWAY, ViewerError
from cmsv6.plugins.media.server import MediaServer
from cmsv6.plugins.media.talk import TalkHub
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvCodec,
    AvTransmissionControl,
    ControlCommand,
)
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType
from cmsv6.protocols.jt1078.sim import SimIdentity
from cmsv6.protocols.jt1078.stream import MediaStream
from tests.media.tones import RATE, pcm16, tone
from tests.plugins.media.support import PHONE, SERVER_KEY, SIM, config
from tests.plugins.media.test_talk import FakeOpener, attributes


class FakeBrowser:
    def __init__(self) -> None:
        self.texts: list[dict[str, Any]] = []
        self.data = b""
        self.closed: list[ViewerError | None] = []
        self.full = False

    def text(self, message: dict[str, Any]) -> None:
        self.texts.append(message)

    def binary(self, data: bytes) -> None:
        self.data += data

    def close(self, error: ViewerError | None) -> None:
        self.closed.append(error)


class FakeConnection:
    """What the session uses of an IngestProtocol."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.peer = "unit"
        self.released: list[Any] = []
        self.timeout: float | None = 10.0

    def setTimeout(self, seconds: float | None) -> None:
        self.timeout = seconds

    def release(self, stream: Any) -> None:
        self.released.append(stream)


def talking(broadcast: bool = False) -> tuple[task.Clock, Any, FakeBrowser, FakeConnection, FakeOpener]:
    clock = task.Clock()
    opener = FakeOpener(clock, attributes(AvCodec.G711A), connect=False)
    media = MediaServer(config(), clock, SERVER_KEY, opener)
    hub = TalkHub(media, clock)
    browser = FakeBrowser()
    session = hub.begin(browser, PHONE, 1, "session-0123456789abcdef", broadcast)
    assert session.state == "waiting"
    connection = FakeConnection()
    stream = media.bind(connection, SimIdentity(SIM), 1)
    assert stream is session.stream
    stream.push(Frame(1, DataType.AUDIO, 1000, bytes(320), AvCodec.G711A))
    assert browser.texts == [{"type": "ready", "codec": "g711a", "frame_samples": 320}]
    return clock, session, browser, connection, opener


def frames_down(connection: FakeConnection) -> int:
    return sum(isinstance(e, Frame) for e in MediaStream().feed(connection.transport.value()))


def test_audio_goes_down_one_frame_per_frame_length() -> None:
    """A second of PCM at once: one 40 ms frame goes at once, then one every 40 ms of the
    clock, not sooner; all 25 within the second."""
    clock, session, _, connection, _ = talking()
    pcm = pcm16(tone(RATE))
    for at in range(0, len(pcm), 640):
        session.pcm(pcm[at : at + 640])
    assert frames_down(connection) == 1
    clock.advance(0.039)
    assert frames_down(connection) == 1
    clock.advance(0.001)
    assert frames_down(connection) == 2
    for _ in range(23):
        clock.advance(0.04)
    assert frames_down(connection) == 25
    clock.advance(1.0)
    assert frames_down(connection) == 25 and not session.down


def test_the_browser_leaving_closes_talk_back_and_releases_the_connection() -> None:
    """The browser gone: 0x9102 command 4, the unit's connection released, nothing more sent
    down, the hub forgets the session."""
    clock, session, browser, connection, opener = talking()
    session.pcm(pcm16(tone(RATE // 2)))
    session.browser_gone()
    assert opener.of(0x9102) == [AvTransmissionControl(1, ControlCommand.CLOSE_TALK)]
    assert connection.released == [session.stream]
    assert browser.closed == [None]
    sent = connection.transport.value()
    clock.advance(1.0)
    assert connection.transport.value() == sent
    assert session.hub.sessions == {}


def test_a_broadcast_connection_is_not_timed_out_for_silence() -> None:
    """A unit listening to a broadcast may send nothing up: its connection's silence
    deadline is lifted; a talk-back's is kept."""
    assert talking(broadcast=True)[3].timeout is None
    assert talking()[3].timeout == 10.0


def test_stopping_the_server_ends_sessions_in_words() -> None:
    """The media server stopping ends a session with 4000 and 0x9102 command 4."""
    _, session, browser, _, opener = talking()
    session.media.stop()
    assert [e.code for e in browser.closed if e is not None] == [CLOSE_GOING_AWAY]
    assert len(opener.of(0x9102)) == 1
