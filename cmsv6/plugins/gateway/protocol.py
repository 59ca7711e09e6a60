"""The thin JT/T 808 protocol: bytes in, frames to the session; the session's link out."""

from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.protocols.jt808.framing import Deframer, Frame

_log = Logger()

#: Consecutive undecodable pieces of input after which a connection is closed.
MAX_FRAME_ERRORS = 20


@implementer(IPushProducer)
class JT808Protocol(protocol.Protocol):
    """Reading stops for two independent reasons: the gateway's writer is behind
    (``pause``/``resume`` from the session's link), or the device does not read what we send
    (the transport's buffer is full and it pauses us as its producer)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.deframer = Deframer()
        self.peer = "?"
        self.session: DeviceSession | None = None
        self._errors = 0
        self._paused: set[str] = set()

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        # Our writes to a device that does not read fill the transport's buffer; as its
        # producer we are then paused, and stop reading from that device.
        self.transport.registerProducer(self, True)
        self.session = DeviceSession(self.gateway, self)
        self.gateway.connected(self.session)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Never raises: the session answers bad frames, and a bug closes this connection."""
        try:
            self._data_received(data)
        except Exception:  # noqa: BLE001 - the boundary: log with the input, count, close
            self.gateway.count("errors")
            _log.failure("{peer}: failed on input {data}; closing", Failure(), peer=self.peer,
                         data=data[:2048].hex())
            self.close()

    def _data_received(self, data: bytes) -> None:
        assert self.session is not None
        for item in self.deframer.feed(data):
            if isinstance(item, Frame):
                self._errors = 0
                self.session.frame_received(item)
            else:
                self._errors += 1
                self.gateway.count("frame_errors")
                _log.debug("{peer}: {reason}: {data}", peer=self.peer, reason=item.reason,
                           data=item.data[:64].hex())
                if self._errors >= MAX_FRAME_ERRORS:
                    _log.info("{peer}: {n} bad frames in a row; closing", peer=self.peer,
                              n=self._errors)
                    self.close()
                    return

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if self.session is not None:
            self.session.connection_lost(reason.getErrorMessage())

    # -- the session's link --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

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
        self._hold("writer", True)

    def resume(self) -> None:
        self._hold("writer", False)

    # IPushProducer, for our own transport's outgoing buffer.
    def pauseProducing(self) -> None:  # noqa: N802
        self.gateway.count("slow_readers")
        self._hold("device", True)

    def resumeProducing(self) -> None:  # noqa: N802
        self._hold("device", False)

    def stopProducing(self) -> None:  # noqa: N802
        pass


class JT808Factory(protocol.Factory):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def buildProtocol(self, addr: object) -> JT808Protocol:  # noqa: N802
        p = JT808Protocol(self.gateway)
        p.factory = self
        return p
