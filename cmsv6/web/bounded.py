"""A twisted.web site bounded before anyone authenticates: at most ``max_connections`` open
connections (a connection upgraded to a WebSocket still counts until it closes), and a
deadline for each request's headers (slowloris). Login's web endpoint and the media
server's viewers' endpoint are both this; their WebSockets are bounded by
``bounded_socket``."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.python.failure import Failure
from twisted.web import http, server

_log = Logger()


class BoundedChannel(http.HTTPChannel):
    """An HTTP/1.1 channel that must send each request's headers within the site's
    ``header_timeout`` (the idle timeout is reset by every byte, so it does not stop a
    client that trickles them)."""

    site: BoundedSite
    _header_call: IDelayedCall | None = None

    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self._await_headers()

    def allHeadersReceived(self) -> None:  # noqa: N802
        self._stop_waiting()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:  # noqa: N802
        # Before the base class: it may go on at once with a pipelined request's headers.
        if self.persistent:
            self._await_headers()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._stop_waiting()
        super().connectionLost(reason)

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._header_call = self.callLater(self.site.header_timeout, self._headers_late)

    def _stop_waiting(self) -> None:
        call, self._header_call = self._header_call, None
        if call is not None and call.active():
            call.cancel()

    def _headers_late(self) -> None:
        self._header_call = None
        self.site.counters["header_timeouts"] += 1
        _log.debug("{peer}: no request headers in {s:g} s; closing",
                   peer=self.transport.getPeer(), s=self.site.header_timeout)
        self.timeoutConnection()  # closes, and aborts if the client does not let go


class _Open:
    """The site's open connections (``policies.ProtocolWrapper`` registers with it; the
    wrapper stays the transport's protocol after a WebSocket upgrade, so an upgraded
    connection is counted until it closes)."""

    def __init__(self) -> None:
        self.protocols: set[Any] = set()

    def registerProtocol(self, p: Any) -> None:  # noqa: N802
        self.protocols.add(p)

    def unregisterProtocol(self, p: Any) -> None:  # noqa: N802
        self.protocols.discard(p)


class BoundedSite(server.Site):
    """A Site with at most ``max_connections`` open connections (past it a new one is
    closed at once and counted) and ``header_timeout`` seconds for each request's headers."""

    protocol = BoundedChannel
    #: Open connections at most (None: no bound).
    max_connections: int | None = None
    #: Seconds for a request's headers.
    header_timeout: float = 20.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open = _Open()
        self.counters: dict[str, int] = {"connections_refused": 0, "header_timeouts": 0}

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        if self.max_connections is not None and len(self.open.protocols) >= self.max_connections:
            self.counters["connections_refused"] += 1
            return None
        channel = super().buildProtocol(addr)
        return policies.ProtocolWrapper(self.open, channel)  # type: ignore[arg-type]


def bounded_socket(factory: WebSocketServerFactory, max_message: int) -> None:
    """A WebSocket factory's bounds (login's /ws, the media server's viewers and talk-back):
    messages (and frames) of ``max_message`` bytes at most either way, pings every 30 s
    answered within 15, the opening handshake within 10 s; a peer breaking the rules (a
    message too big, not UTF-8, ...) is sent a close frame with autobahn's code and reason
    before the TCP close, not just dropped."""
    factory.setProtocolOptions(
        maxFramePayloadSize=max_message,
        maxMessagePayloadSize=max_message,
        failByDrop=False,
        autoPingInterval=30,
        autoPingTimeout=15,
        openHandshakeTimeout=10,
    )
