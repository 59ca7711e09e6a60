"""The thin JT/T 808 protocol: bytes in, whole frames to the session; the session's link out.

Reading stops for two independent reasons: the server is behind (``pause``/``resume``
from the session), or the terminal does not read what we send (the transport's buffer is
full and it pauses us as its producer). ``MAX_FRAME_ERRORS`` undecodable pieces of input
in a row close the connection; before authentication each one also counts against the
session's frame budget (``cmsv6.terminal.limits``). No exception leaves ``dataReceived``.

The factory bounds the open connections, in total and per address (the host's
``limits``); a connection past either is closed as soon as it is accepted.
"""

from __future__ import annotations

import socket
from collections import Counter
from typing import Callable

from twisted.internet import protocol, tcp
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cmsv6.protocols.jt808.framing import Deframer, Frame
from cmsv6.terminal.session import Host, Link, TerminalSession

_log = Logger()

#: Consecutive undecodable pieces of input after which a connection is closed.
MAX_FRAME_ERRORS = 20

NewSession = Callable[[Link], TerminalSession]


@implementer(IPushProducer)
class TerminalProtocol(protocol.Protocol):
    """One terminal's TCP connection; it is its session's ``Link``."""

    def __init__(self, host: Host, new_session: NewSession) -> None:
        self.host = host
        self.new_session = new_session
        self.deframer = Deframer()
        self.peer = "?"
        self.session: TerminalSession | None = None
        self._errors = 0
        self._paused: set[str] = set()
        #: The plain TCP socket, for ``send``'s direct path (None: TLS, or not TCP).
        self._socket: socket.socket | None = None

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        # Our writes to a terminal that does not read fill the transport's buffer; as its
        # producer we are then paused, and stop reading from that terminal.
        self.transport.registerProducer(self, True)
        t = self.transport
        if isinstance(t, tcp.Connection) and not getattr(t, "TLS", True):
            self._socket = t.socket
        self.session = self.new_session(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Never raises: the session answers bad frames, and a bug closes this connection."""
        try:
            self._data_received(data)
        except Exception:  # noqa: BLE001 - the boundary: log with the input, count, close
            self.host.count("errors")
            _log.failure("{peer}: failed on input {data}; closing", Failure(), peer=self.peer,
                         data=data[:2048].hex())
            if self.session is not None:
                self.session.close()
            else:
                self.close()

    def _data_received(self, data: bytes) -> None:
        session = self.session
        assert session is not None
        for item in self.deframer.feed(data):
            if session.closed:
                return
            if isinstance(item, Frame):
                self._errors = 0
                session.frame_received(item)
            else:
                self._errors += 1
                self.host.count("frame_errors")
                if not session.authenticated and not session.input_before_auth():
                    return
                session.bad_frame(item.reason, item.data)
                if self._errors >= MAX_FRAME_ERRORS:
                    _log.info("{peer}: {n} bad frames in a row; closing", peer=self.peer,
                              n=self._errors)
                    session.close()
                    return

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if self.session is not None:
            self.session.connection_lost(reason.getErrorMessage())
        factory = getattr(self, "factory", None)
        if isinstance(factory, TerminalFactory):
            factory.release(self)

    # -- the session's link --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write ``data``. On plain TCP with nothing buffered it goes straight to the socket:
        the 0x8001 of nearly every report fits, and skips Twisted's buffered write (register
        for writing, a wake-up, the send, unregister: two ``epoll_ctl`` a report). Whatever
        the socket does not take goes to the transport's buffer, behind which every later
        write then queues, so the order holds."""
        t = self.transport
        if t is None:
            return
        sock = self._socket
        if (sock is not None and t.connected and not t.disconnecting
                and not t.dataBuffer and not t._tempDataBuffer):  # fmt: skip
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport's own write meets the error and closes
            if sent == len(data):
                return
            data = data[sent:]
        t.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def _hold(self, reason: str, on: bool) -> None:
        if self.transport is None:
            return
        was = bool(self._paused)
        if on:
            self._paused.add(reason)
        else:
            self._paused.discard(reason)
        if bool(self._paused) != was:
            if self._paused:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def pause(self) -> None:
        self._hold("server", True)

    def resume(self) -> None:
        self._hold("server", False)

    # IPushProducer, for our own transport's outgoing buffer.
    def pauseProducing(self) -> None:  # noqa: N802
        self.host.count("slow_readers")
        self._hold("terminal", True)

    def resumeProducing(self) -> None:  # noqa: N802
        self._hold("terminal", False)

    def stopProducing(self) -> None:  # noqa: N802
        pass


class TerminalFactory(protocol.Factory):
    """Builds terminal connections, at most ``max_connections`` open at a time and
    ``max_per_address`` from one address (None: no bound; by default the host's
    ``limits``); keeps them so a server stepping down can close them."""

    def __init__(self, host: Host, new_session: NewSession,
                 max_connections: int | None = None,
                 max_per_address: int | None = None) -> None:  # fmt: skip
        limits = getattr(host, "limits", None)
        self.host = host
        self.new_session = new_session
        self.max_connections = max_connections if max_connections is not None else (
            limits.max_connections if limits is not None else None)  # fmt: skip
        self.max_per_address = max_per_address if max_per_address is not None else (
            limits.max_per_address if limits is not None else None)  # fmt: skip
        self.connections: set[TerminalProtocol] = set()
        #: Open connections by peer address.
        self.by_address: Counter[str] = Counter()
        self._address: dict[TerminalProtocol, str] = {}

    def buildProtocol(self, addr: object) -> TerminalProtocol | None:  # noqa: N802
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            self.host.count("connections_refused")
            return None
        address = str(getattr(addr, "host", addr))
        if self.max_per_address is not None and self.by_address[address] >= self.max_per_address:
            self.host.count("connections_refused")
            self.host.count("connections_refused_per_address")
            return None
        p = TerminalProtocol(self.host, self.new_session)
        p.factory = self
        self.connections.add(p)
        self.by_address[address] += 1
        self._address[p] = address
        return p

    def release(self, p: TerminalProtocol) -> None:
        """``p``'s connection is gone: its place (and its address's) is free."""
        self.connections.discard(p)
        address = self._address.pop(p, None)
        if address is not None:
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]

    def close_all(self) -> None:
        for p in list(self.connections):
            if p.session is not None:
                p.session.close()
            else:
                p.close()
