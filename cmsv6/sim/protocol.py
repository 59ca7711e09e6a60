"""The thin Twisted protocol between a TCP connection and a simulated device: cut frames,
decode them, hand them over. No exception leaves ``dataReceived``."""

from __future__ import annotations

from typing import Protocol as Interface

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.protocols.jt808.codec import decode_frame
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Deframer, FrameError
from cmsv6.sim.device import Device

_log = Logger()


class Session(Interface):
    """What the protocol needs from whoever runs the device (the fleet)."""

    def now(self) -> float: ...

    def link_made(self, protocol: DeviceProtocol) -> None: ...

    def link_lost(self, protocol: DeviceProtocol) -> None: ...

    def changed(self, device: Device) -> None:
        """The device took input: its ``wake`` may be earlier now."""


class DeviceProtocol(Protocol):
    """One device's connection; it is the device's ``Link`` (``send``, ``close``)."""

    def __init__(self, session: Session, device: Device) -> None:
        self._session = session
        self.device = device
        self._deframer = Deframer()

    def connectionMade(self) -> None:
        self._session.link_made(self)

    def dataReceived(self, data: bytes) -> None:
        device = self.device
        now = self._session.now()
        for item in self._deframer.feed(data):
            try:
                if isinstance(item, FrameError):
                    _log.debug(
                        "{phone}: not a frame: {reason}", phone=device.phone, reason=item.reason
                    )
                    device.bad_frame(None)
                    continue
                h = item.header
                if h.packet is not None and h.packet.total > 1:
                    device.unsupported(h)
                    continue
                try:
                    message = decode_frame(item)
                except CodecError as e:
                    _log.debug(
                        "{phone}: bad 0x{msg_id:04x}: {error}",
                        phone=device.phone,
                        msg_id=h.msg_id,
                        error=str(e),
                    )
                    device.bad_frame(h)
                    continue
                device.received(message, now)
            except Exception:
                device.counters.errors += 1
                _log.failure("{phone}: handling a frame failed", phone=device.phone)
        self._session.changed(device)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._session.link_lost(self)

    # -- Link -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class DeviceFactory(Factory):
    """Builds the protocol for one connection attempt of one device."""

    noisy = False

    def __init__(self, session: Session, device: Device) -> None:
        self._session = session
        self._device = device

    def buildProtocol(self, addr: object) -> DeviceProtocol:
        return DeviceProtocol(self._session, self._device)
