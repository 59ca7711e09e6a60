"""What a device port grants a peer that has not authenticated yet.

Anyone who can reach a JT/T 808 port can connect, so until a terminal has proved who it is
(0x0102 accepted) it gets little: a place among at most ``max_connections`` connections and
``max_per_address`` from its address, ``max_frames_before_auth`` frames (registration,
authentication and their retransmissions; a device needs two to four), no sub-packaged
messages (nothing goes into the reassembler), and ``auth_deadline`` seconds, after which
the connection is closed. Only an authenticated terminal's frames keep its connection
from the idle timeout. The same on every server (gateway and login's assignment port),
set in each one's section (``cmsv6.config``).

Accepting is paced (``Handshakes``): at most ``max_handshakes`` connections are between
their accept and their authentication at a time. At the bound the listening port stops
accepting, so a reconnect storm waits in the kernel's listen backlog (give the endpoint a
``backlog=``), not in our memory and not in the turns of a reactor serving the devices
already in; it accepts again as handshakes end (authenticated, closed, or past
``auth_deadline``). None is lost: a connection waiting in the backlog is accepted later.
"""

from __future__ import annotations

from typing import Any, Callable

from attrs import frozen
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

_log = Logger()


@frozen
class Limits:
    """A device port's bounds for peers (None: no bound)."""

    #: Open connections at most; past it a new one is closed at once.
    max_connections: int | None = 20_000
    #: Open connections from one address at most (devices behind one NAT or private APN
    #: share an address: raise it for them).
    max_per_address: int | None = 500
    #: Seconds a connection has to authenticate before it is closed.
    auth_deadline: float = 30.0
    #: Frames (and undecodable pieces of input) taken before authentication; the next
    #: one closes the connection.
    max_frames_before_auth: int = 8
    #: Connections between accept and authentication at most (None: no bound); past it
    #: the port stops accepting (``Handshakes``).
    max_handshakes: int | None = None

    @classmethod
    def of(cls, section: Any) -> Limits:
        """The limits of a server's configuration section (``[gateway]``, ``[login]``)."""
        return cls(
            max_connections=section.jt808_max_connections,
            max_per_address=section.jt808_max_per_address,
            auth_deadline=section.auth_deadline,
            max_frames_before_auth=section.max_frames_before_auth,
            max_handshakes=getattr(section, "max_handshakes", None),
        )


class Handshakes:
    """The handshakes in flight on a server's device ports (accepted, not yet
    authenticated), at most ``limit``: at the bound its ports stop accepting, below it
    they accept again, never more at once than there are free places.

    A session says ``begin`` when its connection is made and ``end`` once, when it
    authenticates or goes (``cmsv6.terminal.session``); ``paced(endpoint)`` is the
    endpoint whose ports this paces.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_handshakes must be at least 1")
        self.limit = limit
        self.in_flight: set[object] = set()
        self.ports: list[Any] = []
        #: Times the ports stopped accepting (the metrics' ``accept_paused``).
        self.pauses = 0
        self.paused = False

    @property
    def free(self) -> int:
        return max(0, self.limit - len(self.in_flight))

    def begin(self, who: object) -> None:
        self.in_flight.add(who)
        if not self.free:
            self._pause()

    def end(self, who: object) -> None:
        if who in self.in_flight:
            self.in_flight.discard(who)
            if self.paused and self.free:
                self._resume()

    def paced(self, endpoint: IStreamServerEndpoint) -> IStreamServerEndpoint:
        """``endpoint``, its listening ports paced by this."""
        return _PacedEndpoint(endpoint, self)

    def add_port(self, port: Any) -> None:
        """Pace ``port``: a Twisted listening port that reads (``stopReading``,
        ``startReading``) and accepts at most ``numberAccepts`` per read (TCP and UNIX
        ports, adopted ones too)."""
        accept = port.doRead

        def do_read() -> Any:
            # Twisted accepts up to numberAccepts connections per read, and grows it in a
            # storm: never more than there are free places.
            free = self.free
            if not free:
                self._pause()
                return None
            port.numberAccepts = max(1, min(port.numberAccepts, free))
            return accept()

        port.doRead = do_read
        self.ports.append(port)
        if self.paused:
            port.stopReading()

    def remove_port(self, port: Any) -> None:
        if port in self.ports:
            self.ports.remove(port)

    def _pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.pauses += 1
            for port in self.ports:
                port.stopReading()

    def _resume(self) -> None:
        self.paused = False
        for port in self.ports:
            if getattr(port, "connected", True) and not getattr(port, "disconnecting", False):
                port.startReading()


@implementer(IStreamServerEndpoint)
class _PacedEndpoint:
    def __init__(self, endpoint: IStreamServerEndpoint, handshakes: Handshakes) -> None:
        self.endpoint = endpoint
        self.handshakes = handshakes

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        def listening(port: Any) -> Any:
            self.handshakes.add_port(port)
            stop: Callable[[], Any] = port.stopListening

            def stop_listening() -> Any:
                self.handshakes.remove_port(port)
                return stop()

            port.stopListening = stop_listening
            return port

        return self.endpoint.listen(factory).addCallback(listening)
