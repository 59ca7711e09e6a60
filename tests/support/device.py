"""A scripted JT/T 808 device for gateway tests: sends what the test says, queues what
comes back, over a real loopback TCP connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet import defer, endpoints, protocol

from cmsv6.protocols.jt808.codec import Message, decode_frame, encode, encode_packets
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.framing import Deframer, Frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import Authenticate, Register
from cmsv6.protocols.jt808.messages.location import Location
from cmsv6.protocols.jt808.model import RawBody


def location(
    lat: float = 22.5431,
    lon: float = 114.0579,
    alarm: int = 0,
    time: datetime | None = None,
    speed: float = 36.5,
    extras: dict[int, Any] | None = None,
) -> Location:
    return Location(
        alarm=alarm,
        status=0x3,
        latitude=lat,
        longitude=lon,
        altitude=12,
        speed=speed,
        direction=90,
        time=time or datetime(2026, 11, 25, 10, 0, 0, tzinfo=BEIJING),
        extras={0x01: 1234, 0x31: 9} if extras is None else extras,
    )


class DeviceProtocol(protocol.Protocol):
    def __init__(self, phone: str, version: int = 2013) -> None:
        self.phone = phone
        self.version = version
        self.serial = 0
        self.deframer = Deframer()
        self.received: defer.DeferredQueue[Message] = defer.DeferredQueue()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.raw: list[Frame] = []

    def header(self, msg_id: int) -> Header:
        self.serial += 1
        if self.version == 2019:
            return Header(msg_id, self.phone.rjust(20, "0"), self.serial, 2019, 1)
        return Header(msg_id, self.phone.rjust(12, "0"), self.serial)

    def send(self, body: Any, msg_id: int | None = None) -> int:
        """Send one message; its serial."""
        h = self.header(msg_id if msg_id is not None else type(body).MSG_ID)
        self.transport.write(encode(h, body))
        return h.serial

    def send_packets(self, msg_id: int, body: bytes, size: int, skip: tuple[int, ...] = ()) -> list[bytes]:
        h = self.header(msg_id)
        frames = encode_packets(h, RawBody(body), max_body=size)
        self.serial += len(frames) - 1
        for i, f in enumerate(frames, 1):
            if i not in skip:
                self.transport.write(f)
        return frames

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        for item in self.deframer.feed(data):
            if isinstance(item, Frame):
                self.raw.append(item)
                self.received.put(decode_frame(item))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)

    @defer.inlineCallbacks
    def next(self, msg_id: int | None = None, timeout: float = 30.0) -> Any:
        """The next message from the platform (of ``msg_id``, skipping others); fails
        after ``timeout`` seconds rather than hang the test."""
        from twisted.internet import reactor

        while True:
            d = self.received.get()
            d.addTimeout(timeout, reactor)
            m = yield d
            if msg_id is None or m.header.msg_id == msg_id:
                return m

    @defer.inlineCallbacks
    def login(self, plate: str = "粤B00001") -> Any:
        """Register and authenticate; the auth code."""
        self.send(Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, plate))
        reply = yield self.next(0x8100)
        assert reply.body.result == 0, reply
        if self.version == 2019:
            serial = self.send(Authenticate(reply.body.auth_code, "860000000000001", "1.0"))
        else:
            serial = self.send(Authenticate(reply.body.auth_code))
        ack = yield self.next(0x8001)
        assert ack.body.reply_serial == serial and ack.body.result == 0, ack
        return reply.body.auth_code


@defer.inlineCallbacks
def connect(reactor: Any, port: int, phone: str, version: int = 2013) -> Any:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    device = yield endpoints.connectProtocol(endpoint, DeviceProtocol(phone, version))
    return device


@defer.inlineCallbacks
def until(
    predicate: Any, what: str, timeout: float = 30.0, every: float = 0.05, in_thread: bool = False
) -> Any:
    """Wait until ``predicate()`` is true, checking every ``every`` s for at most ``timeout``
    seconds of the reactor's time; then fail with ``what``. A predicate that blocks (a
    database query, say) runs ``in_thread`` so that the reactor carries on meanwhile."""
    from twisted.internet import reactor, task, threads

    deadline = reactor.seconds() + timeout
    while True:
        if in_thread:
            done = yield threads.deferToThread(predicate)
        else:
            done = predicate()
        if done:
            return
        if reactor.seconds() >= deadline:
            raise AssertionError(f"gave up waiting {timeout:g} s for {what}")
        yield task.deferLater(reactor, every, lambda: None)


def within(d: defer.Deferred[Any] | None, what: str, timeout: float = 30.0) -> defer.Deferred[Any]:
    """``d``, or an AssertionError naming ``what`` if it has not fired within ``timeout``
    seconds (``d`` is then cancelled) rather than a hanging test. ``None`` (what
    ``stopService`` and ``stopListening`` may return) is done already."""
    from twisted.internet import reactor

    if d is None:
        return defer.succeed(None)

    def timed_out(f: Any) -> Any:
        f.trap(defer.TimeoutError)
        raise AssertionError(f"gave up waiting {timeout:g} s for {what}")

    return d.addTimeout(timeout, reactor).addErrback(timed_out)


def shipping_writer(db: Any, reactor: Any) -> Any:
    """The position writer as ``twistd gateway`` builds it, over ``db`` (a ``Database``
    with ``writer_threads``: batches written on its threads); returns (writer, stop)."""
    from cmsv6.plugins.gateway.writer import PositionWriter

    assert db.writer_threads, "twistd gateway's database has writer threads"
    writer = PositionWriter(db, reactor)
    return writer, writer.stop
