"""Bad frames in the log: one debug line each, without their bytes in the text, at most one
a minute per connection (the first at once), the ones left out counted in the next."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent

from cmsv6.protocols.jt808.codec import encode
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import Heartbeat
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.terminal.protocol import TerminalFactory, TerminalProtocol
from cmsv6.terminal.session import BAD_FRAME_LOG_EVERY, TerminalSession
from tests.support.wire import frame
from tests.terminal.test_session import Host

#: Bytes no line may show: inside a piece the deframer refuses, and a body that does not
#: decode (a 0x0200 cut short).
SECRET = bytes.fromhex("c0ffeec0ffee")
JUNK = b"\x7e" + SECRET + b"\x7e"
BAD_BODY = encode(Header(0x0200, "013800000001", 9), RawBody(SECRET))


def connection(host: Host, peer_port: int = 5000) -> TerminalProtocol:
    """An authenticated terminal's connection (the frame budget before authentication is
    another matter), over a StringTransport."""
    factory = TerminalFactory(host, lambda link: TerminalSession(host, link))
    proto = factory.buildProtocol(None)
    assert proto is not None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", peer_port))
    proto.makeConnection(transport)
    assert proto.session is not None
    proto.session.device = object()  # type: ignore[assignment]
    return proto


def lines(logged: list[dict[str, Any]], proto: TerminalProtocol) -> list[tuple[LogLevel, str]]:
    """(level, text) of the lines about ``proto``'s connection."""
    return [(e["log_level"], formatEvent(e)) for e in logged
            if e.get("peer") == proto.peer]  # fmt: skip


def test_bad_frames_are_one_debug_line_a_minute_without_hex(logged: list[dict[str, Any]]) -> None:
    """A burst of bad frames (refused by the deframer, a wrong check code, a body that does
    not decode) is one debug line without the bytes; a minute later the next says how many
    were left out; every one is still answered and counted."""
    host = Host()
    proto = connection(host)
    bad_checksum = bytearray(frame(Heartbeat(), 3))
    bad_checksum[-2] ^= 0xFF
    proto.dataReceived(JUNK * 3 + bytes(bad_checksum) + BAD_BODY + frame(Heartbeat(), 4))
    first = lines(logged, proto)
    assert len(first) == 1, first
    assert first[0][0] == LogLevel.debug
    assert SECRET.hex() not in first[0][1] and "suppressed" not in first[0][1]
    assert host.counters["frame_errors"] == 3 and host.counters["bad_checksum"] == 1
    assert host.counters["bad_body"] == 1

    host.clock.advance(BAD_FRAME_LOG_EVERY - 1)
    proto.dataReceived(JUNK)
    assert len(lines(logged, proto)) == 1
    host.clock.advance(1)
    proto.dataReceived(BAD_BODY)
    (level, text), = lines(logged, proto)[1:]
    assert level == LogLevel.debug and SECRET.hex() not in text
    assert text.endswith("(5 more suppressed)"), text
    assert host.counters["bad_body"] == 2


def test_each_connection_has_its_own_limit(logged: list[dict[str, Any]]) -> None:
    """A second connection's first bad frame is logged while the first's are held back;
    what a connection held back is told when it closes."""
    host = Host()
    a, b = connection(host, 5001), connection(host, 5002)
    a.dataReceived(JUNK * 2)
    b.dataReceived(JUNK)
    assert len(lines(logged, a)) == 1 and len(lines(logged, b)) == 1
    a.connectionLost()
    last = lines(logged, a)[-1]
    assert last[0] == LogLevel.debug and "1 more bad frames suppressed" in last[1], last
    assert all(level < LogLevel.info for level, _ in lines(logged, a) + lines(logged, b))
