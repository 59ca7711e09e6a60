"""Real loopback sockets around an in-process media server: a scripted DVR pushing JT/T
1078, WS-FLV viewers (autobahn) and HTTP-FLV viewers (a raw socket) collecting bytes."""

from __future__ import annotations

import socket
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, protocol

from cmsv6.plugins.media.ingest import IngestFactory
from cmsv6.plugins.media.server import MediaServer
from cmsv6.plugins.media.web import make_site
from tests.plugins.media.support import SERVER_KEY, config


class Dvr(protocol.Protocol):
    """Sends what it is given; ``lost`` fires when the server closes the connection."""

    def __init__(self) -> None:
        self.lost: defer.Deferred[None] = defer.Deferred()

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)


def dvr(reactor: Any, port: int) -> defer.Deferred[Dvr]:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return endpoints.connectProtocol(endpoint, Dvr())


class WsViewer(WebSocketClientProtocol):
    """A WS-FLV viewer: every binary message's bytes in order, and how it was closed."""

    def onConnect(self, response: Any) -> None:  # noqa: N802
        self.chunks: list[bytes] = []
        self.factory.viewer = self

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        assert isBinary
        self.chunks.append(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))

    @property
    def flv(self) -> bytes:
        return b"".join(getattr(self, "chunks", []))


def ws_viewer(reactor: Any, port: int, path: str) -> tuple[WebSocketClientFactory, defer.Deferred[Any]]:
    """A WS-FLV viewer of ``path`` ("/live/...?..."); its factory's ``closed`` fires with
    (code, reason)."""
    url = f"ws://127.0.0.1:{port}{path}"
    factory = WebSocketClientFactory(url, reactor=reactor)
    factory.protocol = WsViewer
    factory.closed = defer.Deferred()
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return factory, endpoint.connect(factory)


class HttpViewer(protocol.Protocol):
    """An HTTP-FLV viewer on a plain socket: the response as it came (status line,
    headers, chunked body), decoded on demand."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.raw = bytearray()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(f"GET {self.path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.raw += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)

    @property
    def status(self) -> int | None:
        line = bytes(self.raw).split(b"\r\n", 1)[0]
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None

    @property
    def headers(self) -> bytes:
        return bytes(self.raw).partition(b"\r\n\r\n")[0].lower()

    @property
    def body(self) -> bytes:
        """The body so far, chunked encoding undone (a chunk cut short is left out)."""
        head, sep, rest = bytes(self.raw).partition(b"\r\n\r\n")
        if not sep:
            return b""
        if b"transfer-encoding: chunked" not in head.lower():
            return rest
        out = bytearray()
        at = 0
        while True:
            end = rest.find(b"\r\n", at)
            if end < 0:
                break
            size = int(rest[at:end].split(b";")[0], 16)
            if size == 0 or end + 2 + size > len(rest):
                break
            out += rest[end + 2 : end + 2 + size]
            at = end + 2 + size + 2
        return bytes(out)


def http_viewer(reactor: Any, port: int, path: str) -> defer.Deferred[HttpViewer]:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return endpoints.connectProtocol(endpoint, HttpViewer(path))


def stalled_viewer(port: int, path: str) -> socket.socket:
    """An HTTP-FLV viewer that never reads: a blocking socket with a small receive buffer."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return s


class Served:
    """A MediaServer listening on loopback ports: ``jt1078`` and ``web``."""

    def __init__(self, reactor: Any, opener: Any, **changes: Any) -> None:
        self.media = MediaServer(config(**changes), reactor, SERVER_KEY, opener)
        self.reactor = reactor
        self.ports: list[Any] = []

    @defer.inlineCallbacks
    def start(self) -> Any:
        ingest = yield endpoints.TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(
            IngestFactory(self.media))
        web = yield endpoints.TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1").listen(
            make_site(self.media, self.reactor))
        self.ports = [ingest, web]
        self.jt1078 = ingest.getHost().port
        self.web = web.getHost().port
        return self

    @defer.inlineCallbacks
    def stop(self) -> Any:
        for port in self.ports:
            yield port.stopListening()
        self.media.stop()
