"""The media server's JT/T 1078 endpoint: one thin protocol per device connection.

Bytes go into a ``MediaStream`` (packets cut and checked, frames reassembled, all bounded);
what comes out is handed to the ``MediaServer``: the SIM once, then each frame to the
stream of its channel. Until its first packet names its SIM, a connection gets
``IDENTIFY_BYTES`` bytes and ``open_timeout`` seconds; after that, ``open_timeout``
seconds of silence close it. Nothing a device sends escapes ``dataReceived``: what is not
a stream is logged (rate-limited) and counted, and a connection that sends nothing else
is closed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from cmsv6.plugins.media.fanout import DeviceStream
from cmsv6.plugins.media.server import MediaServer
from cmsv6.protocols.jt1078.frames import Frame, FrameDropped
from cmsv6.protocols.jt1078.sim import SimIdentity
from cmsv6.protocols.jt1078.stream import (
    ForeignPacket,
    Garbage,
    MediaStream,
    SimSeen,
    StreamFailed,
)

_log = Logger()

#: Bytes a connection may send before a packet names its SIM (a packet is under 1 KiB).
IDENTIFY_BYTES = 16 * 1024
#: Channels one connection may feed (a unit opens one connection per 0x9101; a few
#: units put several channels on one): frames of further channels are dropped, so that
#: one connection cannot make the server keep a GOP for every channel number there is.
MAX_CHANNELS = 16
#: Seconds between two log lines about one connection's garbage.
GARBAGE_LOG_EVERY = 30.0


class IngestProtocol(protocol.Protocol, TimeoutMixin):
    """One device's JT/T 1078 connection."""

    def __init__(self, server: MediaServer) -> None:
        self.server = server
        self.callLater = server.reactor.callLater
        self.stream = MediaStream(max_frame=server.config.max_frame)
        self.identity: SimIdentity | None = None
        #: Streams fed, by channel.
        self.bound: dict[int, DeviceStream] = {}
        self.peer = "?"
        self._garbage_logged = float("-inf")
        self._accepted = False

    def connectionMade(self) -> None:  # noqa: N802
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        if not self.server.connection_made(self):
            _log.warn("device connection from {peer} refused: {n} open already",
                      peer=self.peer, n=self.server.config.jt1078_max_connections)
            self.transport.abortConnection()
            return
        self._accepted = True
        self.setTimeout(self.server.config.open_timeout)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self._accepted:
            return
        self.resetTimeout()
        self.server.counters["bytes_in"] += len(data)
        try:
            for event in self.stream.feed(data):
                self._event(event)
                if not self._accepted:
                    return
            if self.identity is None and self.stream.counters.bytes > IDENTIFY_BYTES:
                self._give_up(f"{self.stream.counters.bytes} bytes and no packet naming a SIM")
        except Exception:  # noqa: BLE001 - one connection's trouble never reaches the reactor
            _log.failure("device connection from {peer}: closing", peer=self.peer)
            self._give_up("internal error")

    def _event(self, event: Any) -> None:
        if isinstance(event, Frame):
            stream = self._stream_of(event.channel)
            if stream is not None:
                self.server.frame(stream, event)
        elif isinstance(event, FrameDropped):
            self.server.dropped(event)
            self._stream_of(event.channel)
            _log.debug("{peer}: frame dropped: {why}", peer=self.peer, why=event.reason)
        elif isinstance(event, SimSeen):
            self.identity = event.identity
            _log.info("device stream from {peer}: {what}", peer=self.peer, what=event.reason)
        elif isinstance(event, ForeignPacket):
            self.server.counters["foreign_packets"] += 1
            _log.debug("{peer}: {why}", peer=self.peer, why=event.reason)
        elif isinstance(event, Garbage):
            self.server.counters["garbage_bytes"] += event.size
            now = self.server.now()
            if now - self._garbage_logged >= GARBAGE_LOG_EVERY:
                self._garbage_logged = now
                _log.warn("{peer}: {n} bytes skipped: {why} ({hex}...)", peer=self.peer,
                          n=event.size, why=event.reason, hex=event.sample[:16].hex())
        elif isinstance(event, StreamFailed):
            self._give_up(event.reason)

    def _stream_of(self, channel: int) -> DeviceStream | None:
        stream = self.bound.get(channel)
        if stream is None and len(self.bound) >= MAX_CHANNELS:
            self.server.counters["dropped:too many channels on one connection"] += 1
            return None
        if stream is None and self.identity is not None:
            stream = self.server.bind(self, self.identity, channel)
            self.bound[channel] = stream
        return stream

    def release(self, stream: DeviceStream) -> None:
        """The server no longer wants ``stream`` from this connection (closed, or another
        connection took it); with nothing left to feed, the connection is closed."""
        for channel, s in list(self.bound.items()):
            if s is stream:
                del self.bound[channel]
        if not self.bound and self.transport is not None:
            self.setTimeout(None)
            self.transport.loseConnection()

    def _give_up(self, reason: str) -> None:
        _log.warn("device connection from {peer} closed: {reason}", peer=self.peer,
                  reason=reason)  # fmt: skip
        self.server.counters["device_connections_failed"] += 1
        self._accepted = False
        self.setTimeout(None)
        self.transport.abortConnection()

    def timeoutConnection(self) -> None:  # noqa: N802
        s = self.server.config.open_timeout
        if self.identity is None:
            self._give_up(f"no packet naming a SIM within {s:g} s")
        else:
            self._give_up(f"no data for {s:g} s")

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.setTimeout(None)
        if not self._accepted and not self.bound:
            self.server.connection_lost(self)
            return
        self._accepted = False
        self.stream.close()
        why = reason.getErrorMessage() if reason is not None else "connection closed"
        for stream in list(self.bound.values()):
            self.server.unbound(self, stream, why)
        self.bound.clear()
        self.server.connection_lost(self)


class IngestFactory(protocol.Factory):
    def __init__(self, server: MediaServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> IngestProtocol:  # noqa: N802
        p = IngestProtocol(self.server)
        p.factory = self
        return p
