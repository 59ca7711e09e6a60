"""A minimal JT/T 808 platform, for running the simulator without a gateway (tests,
benchmarks, trying ``cmsv6 sim`` out): anyone may register, the code it issued
authenticates, and everything that expects a 0x8001 gets result 0 at once. It keeps counts,
the devices' answers to commands and (optionally) every position, and can send commands.

Run alone: ``python -m cmsv6.sim.fakeplatform tcp:7611``.
"""

from __future__ import annotations

import sys
from collections import Counter, deque
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.protocols.jt808.codec import Message, decode_body, decode_frame, encode_packets
from cmsv6.protocols.jt808.framing import Deframer, Frame, FrameError
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import (
    RESULT_FAILED,
    RESULT_OK,
    RESULT_UNSUPPORTED,
    PlatformResponse,
    RegisterResponse,
    ResendRequest,
)
from cmsv6.protocols.jt808.messages.location import Location
from cmsv6.protocols.jt808.messages.multimedia import MultimediaUploadResponse
from cmsv6.protocols.jt808.subpackage import Reassembler

_log = Logger()

#: Device answers kept (0x0001, 0x0104, 0x0201, 0x0805...).
MAX_REPLIES = 1000


def phone_key(phone: str) -> str:
    """A phone without its leading zeros: the same terminal in a 2013 and a 2019 header."""
    return phone.lstrip("0") or "0"


class FakePlatform(Factory):
    noisy = False

    def __init__(self, clock: IReactorTime | None = None, keep_positions: bool = False) -> None:
        self.clock = clock
        self.keep_positions = keep_positions
        #: False: 0x0200 and 0x0704 get no answer (the devices must retransmit).
        self.acknowledge_positions = True
        #: Result of 0x8001 for positions when acknowledged.
        self.position_result = RESULT_OK
        #: Issued codes by phone key.
        self.codes: dict[str, str] = {}
        #: The authenticated connection of each phone key.
        self.sessions: dict[str, FakePlatformProtocol] = {}
        #: Messages received, by id (a sub-packaged message counts once, when whole).
        self.received: Counter[int] = Counter()
        self.registrations = 0
        self.authentications = 0
        self.connections = 0
        self.open = 0
        self.errors = 0
        #: Positions received (in 0x0200 and 0x0704), and when ``keep_positions`` each as
        #: ``(phone key, msg id, Location)``.
        self.position_count = 0
        self.positions: list[tuple[str, int, Location]] = []
        #: Whole sub-packaged messages: ``(phone key, msg id, body)``.
        self.assembled: list[tuple[str, int, Any]] = []
        #: Every sub-package received: ``(phone key, msg id, serial, index, total)``.
        self.packets: list[tuple[str, int, int, int, int]] = []
        #: The devices' answers: ``(phone key, Message)``.
        self.replies: deque[tuple[str, Message]] = deque(maxlen=MAX_REPLIES)
        #: Seconds without a missing sub-package before it is asked for (again) with 0x8003.
        self.resend_after = 0.5
        #: The 0x8003 sent: ``(phone key, first serial, indexes)``.
        self.resend_requests: list[tuple[str, int, tuple[int, ...]]] = []

    def buildProtocol(self, addr: Any) -> FakePlatformProtocol:
        return FakePlatformProtocol(self)

    def send(self, phone: str, body: Any) -> int:
        """Send a command to an authenticated device; its serial number."""
        return self.sessions[phone_key(phone)].send_message(body)

    def drop(self, phone: str) -> None:
        """Close a device's connection."""
        self.sessions[phone_key(phone)].transport.loseConnection()  # type: ignore[union-attr]


class FakePlatformProtocol(Protocol):
    def __init__(self, platform: FakePlatform) -> None:
        self.platform = platform
        self.header: Header | None = None
        self._deframer = Deframer()
        self._reassembler: Reassembler | None = None
        self._serial = 0
        self._overdue: Any = None

    @property
    def phone(self) -> str | None:
        return None if self.header is None else phone_key(self.header.phone)

    def connectionMade(self) -> None:
        self.platform.connections += 1
        self.platform.open += 1

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._overdue is not None and self._overdue.active():
            self._overdue.cancel()
        self.platform.open -= 1
        phone = self.phone
        if phone is not None and self.platform.sessions.get(phone) is self:
            del self.platform.sessions[phone]

    def dataReceived(self, data: bytes) -> None:
        for item in self._deframer.feed(data):
            if isinstance(item, FrameError):
                self.platform.errors += 1
                continue
            try:
                self._frame(item)
            except Exception:
                self.platform.errors += 1
                _log.failure("fake platform: frame failed")

    def send_message(self, body: Any) -> int:
        assert self.header is not None
        serial = self._serial
        frames = encode_packets(self.header.reply_header(body.MSG_ID, serial), body)
        self._serial = (serial + len(frames)) & 0xFFFF
        for frame in frames:
            self.transport.write(frame)  # type: ignore[union-attr]
        return serial

    def _answer(self, h: Header, result: int = RESULT_OK) -> None:
        self.send_message(PlatformResponse(h.serial, h.msg_id, result))

    def _resend(self, first_serial: int, indexes: tuple[int, ...]) -> None:
        assert self.header is not None
        self.platform.resend_requests.append((phone_key(self.header.phone), first_serial, indexes))
        self.send_message(ResendRequest(first_serial, indexes))

    def _watch(self) -> None:
        """Ask again for packets still missing ``resend_after`` seconds on (needs a clock
        that can call later)."""
        clock = self.platform.clock
        if clock is None or (self._overdue is not None and self._overdue.active()):
            return
        self._overdue = clock.callLater(self.platform.resend_after, self._check_overdue)

    def _check_overdue(self) -> None:
        self._overdue = None
        if self._reassembler is None or self.transport is None:
            return
        now = self.platform.clock.seconds()  # type: ignore[union-attr]
        self._reassembler.expire(now, 60.0)
        for missing in self._reassembler.overdue(now, self.platform.resend_after):
            self._resend(missing.first_serial, missing.indexes)
        if self._reassembler.pending_bytes:
            self._watch()

    def _frame(self, frame: Frame) -> None:
        h = frame.header
        self.header = h
        p = self.platform
        if h.packet is not None and h.packet.total > 1:
            packet = (phone_key(h.phone), h.msg_id, h.serial, h.packet.index, h.packet.total)
            p.packets.append(packet)
            self._answer(h)
            if self._reassembler is None:
                self._reassembler = Reassembler()
            now = p.clock.seconds() if p.clock is not None else 0.0
            whole = self._reassembler.add(frame, now)
            if whole is None:
                missing = self._reassembler.ask_now(frame, now)
                if missing is not None:
                    self._resend(missing.first_serial, missing.indexes)
                self._watch()
                return
            h = whole.header
            message = Message(h, decode_body(h.msg_id, whole.body, h.version))
        else:
            message = decode_frame(frame)
        p.received[h.msg_id] += 1
        body = message.body
        phone = phone_key(h.phone)
        if h.msg_id == 0x0100:
            code = p.codes.setdefault(phone, f"AUTH{phone}")
            p.registrations += 1
            self.send_message(RegisterResponse(h.serial, 0, code))
        elif h.msg_id == 0x0102:
            ok = p.codes.get(phone) == body.auth_code
            if ok:
                p.authentications += 1
                p.sessions[phone] = self
            self._answer(h, RESULT_OK if ok else RESULT_FAILED)
        elif h.msg_id in (0x0200, 0x0704):
            locations = [body] if h.msg_id == 0x0200 else list(body.locations)
            p.position_count += len(locations)
            if p.keep_positions:
                p.positions.extend((phone, h.msg_id, loc) for loc in locations)
            if p.acknowledge_positions:
                self._answer(h, p.position_result)
        elif h.msg_id in (0x0002, 0x0003):
            self._answer(h)
        elif h.msg_id == 0x0801:
            p.assembled.append((phone, h.msg_id, body))
            self.send_message(MultimediaUploadResponse(body.media_id))
        elif h.msg_id in (0x0001, 0x0104, 0x0201, 0x0805, 0x1003, 0x1205):
            p.replies.append((phone, message))
        else:
            self._answer(h, RESULT_UNSUPPORTED)


def main(argv: list[str] | None = None) -> int:
    """Serve on an endpoint string and print counts every five seconds."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.task import LoopingCall

    args = sys.argv[1:] if argv is None else argv
    platform = FakePlatform(reactor)  # type: ignore[arg-type]
    serverFromString(reactor, args[0] if args else "tcp:7611").listen(platform)

    def report() -> None:
        sys.stderr.write(
            f"fake platform: {platform.open} open, {platform.authentications} authentications, "
            f"{platform.position_count} positions, {platform.errors} errors\n"
        )

    LoopingCall(report).start(5.0, now=False)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
