"""The JT/T 1078 endpoint's thin protocol (StringTransport and a Clock): what a device
connection gets before it names its SIM, how frames reach the stream asked for, and
what ends a connection."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from cmsv6.plugins.media.fanout import StreamKey
from cmsv6.plugins.media.ingest import IDENTIFY_BYTES, MAX_CHANNELS, IngestProtocol
from cmsv6.plugins.media.server import MediaServer
from tests.plugins.media.support import (
    PHONE,
    SERVER_KEY,
    Collector,
    clip,
    config,
    frames,
    packets,
    play,
    wire,
)


class Opener:
    def __init__(self) -> None:
        self.closes: list[Any] = []

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[None]:
        return defer.succeed(None)

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[None]:
        self.closes.append((phone, channel, stream))
        return defer.succeed(None)


def connect(media: MediaServer) -> tuple[IngestProtocol, StringTransport]:
    p = IngestProtocol(media)
    transport = StringTransport()
    p.makeConnection(transport)
    return p, transport


def test_a_binary_sim_feeds_the_stream_asked_for_and_linger_closes_it() -> None:
    """A unit that writes its phone in binary streams to the viewer who asked under the
    phone; when the viewer leaves, after ``linger`` the device is asked to stop and the
    connection is closed."""
    clock = task.Clock()
    opener = Opener()
    media = MediaServer(config(linger=5.0), clock, SERVER_KEY, opener)
    viewer = Collector()
    media.watch(viewer, StreamKey(PHONE, 1, "main"))
    p, transport = connect(media)
    binary = int(PHONE).to_bytes(6, "big").hex()
    sent = frames(clip())
    p.dataReceived(wire(packets(sent, sim=binary)))
    assert len(play(viewer.data).video_pts) == 100
    viewer.end()
    clock.advance(5.1)
    assert opener.closes == [(PHONE, 1, "main")] and transport.disconnecting
    p.connectionLost()
    assert media.connections == set() and media.entries == {}


def test_a_connection_that_names_no_sim_is_closed() -> None:
    """Bytes that are no packet: closed past IDENTIFY_BYTES; silence: closed after
    ``open_timeout`` seconds."""
    clock = task.Clock()
    media = MediaServer(config(open_timeout=10.0), clock, SERVER_KEY, Opener())
    p, transport = connect(media)
    for _ in range(IDENTIFY_BYTES // 1000 + 1):
        p.dataReceived(b"x" * 1000)
    assert transport.disconnecting
    p, transport = connect(media)
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting


def test_the_device_hanging_up_tells_the_viewers() -> None:
    """The device's connection ends: its viewers are closed with words saying the device
    stopped its stream; the stream is forgotten."""
    media = MediaServer(config(), task.Clock(), SERVER_KEY, Opener())
    viewer = Collector()
    media.watch(viewer, StreamKey(PHONE, 1, "main"))
    p, _ = connect(media)
    p.dataReceived(wire(packets(frames(clip())[:20])))
    p.connectionLost()
    assert viewer.error is not None and "stopped its stream" in viewer.error.reason
    assert media.entries == {}


def test_one_connection_feeds_a_bounded_number_of_channels() -> None:
    """A connection sending frames of more than MAX_CHANNELS channels: the further
    channels' frames are dropped and counted, no stream is made for them."""
    media = MediaServer(config(), task.Clock(), SERVER_KEY, Opener())
    p, _ = connect(media)
    sent = [f for channel in range(1, MAX_CHANNELS + 3)
            for f in frames(clip(), channel=channel)[:3]]  # fmt: skip
    p.dataReceived(wire(packets(sent)))
    assert len(media.entries) == MAX_CHANNELS
    assert media.counters["dropped:too many channels on one connection"] > 0


def test_connections_past_the_bound_are_refused() -> None:
    """Past ``jt1078_max_connections`` a new device connection is closed at once."""
    media = MediaServer(config(jt1078_max_connections=1), task.Clock(), SERVER_KEY, Opener())
    connect(media)
    _, second = connect(media)
    assert second.disconnecting and len(media.connections) == 1
    assert media.counters["refused:device connections"] == 1
