"""What a device port grants a peer before it authenticates (``cmsv6.terminal.limits``):
connection caps, no sub-packages, a frame budget, a deadline, and an idle clock that only
an authenticated terminal moves. No database, no sockets."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.protocols.jt808.codec import encode, encode_packets
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import Heartbeat
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.terminal.limits import Limits
from cmsv6.terminal.protocol import TerminalFactory
from cmsv6.terminal.session import TerminalSession
from tests.support.link import FakeLink
from tests.terminal.test_session import PHONE, Host

LIMITS = Limits(max_connections=3, max_per_address=2, auth_deadline=30.0, max_frames_before_auth=4)


class LimitedHost(Host):
    limits = LIMITS


def _heartbeat(serial: int) -> Any:
    return parse_frame(encode(Header(0x0002, PHONE, serial), Heartbeat()))


def _peer(host: str, port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


def test_subpackages_refused_before_authentication() -> None:
    """A sub-packaged registration from a peer that has not authenticated is answered with
    result 1 and nothing of it is kept for reassembly."""
    gateway = Gateway(db=None, clock=task.Clock(), gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    link = FakeLink()
    session = DeviceSession(gateway, link)
    frames = encode_packets(Header(0x0100, PHONE, 1), RawBody(b"\x00" * 3000), max_body=500)
    assert len(frames) == 6
    for f in frames[:4]:
        session.frame_received(parse_frame(f))
    answers = link.take()
    assert [(a.header.msg_id, a.body.result) for a in answers] == [(0x8001, 1)] * 4
    assert session.reassembler.pending_bytes == 0
    assert gateway.counters["packets_before_auth"] == 4


def test_frame_budget_before_authentication() -> None:
    """Past ``max_frames_before_auth`` frames without authenticating the connection is
    closed; the frames within the budget are answered."""
    host = LimitedHost()
    link = FakeLink()
    session = TerminalSession(host, link)
    for serial in range(1, 5):
        session.frame_received(_heartbeat(serial))
    assert not link.closed and len(link.take()) == 4
    session.frame_received(_heartbeat(5))
    assert link.closed and link.take() == []
    assert host.counters["too_many_frames_before_auth"] == 1


def test_no_budget_once_authenticated() -> None:
    """An authenticated terminal is not held to the budget before authentication."""
    host = LimitedHost()
    link = FakeLink()
    session = TerminalSession(host, link)
    session.device = object()  # type: ignore[assignment]
    for serial in range(1, 20):
        session.frame_received(_heartbeat(serial))
    assert not link.closed and len(link.take()) == 19


def test_deadline_closes_an_unauthenticated_connection() -> None:
    """A connection not authenticated ``auth_deadline`` seconds after it opened is closed;
    an authenticated one is left alone."""
    host = LimitedHost()
    late, fine = FakeLink(), FakeLink()
    waiting = TerminalSession(host, late)
    done = TerminalSession(host, fine)
    done.device = object()  # type: ignore[assignment]
    host.clock.advance(29.0)
    assert not late.closed
    host.clock.advance(1.0)
    assert late.closed and not fine.closed and waiting.closed
    assert host.counters["auth_deadline"] == 1
    assert host.clock.getDelayedCalls() == []


def test_only_authenticated_frames_reset_the_idle_clock() -> None:
    """Frames from a peer that has not authenticated do not move ``last_seen`` (the idle
    timeout's clock); an authenticated terminal's do."""
    host = LimitedHost()
    session = TerminalSession(host, FakeLink())
    opened = session.last_seen
    host.clock.advance(10.0)
    session.frame_received(_heartbeat(1))
    assert session.last_seen == opened
    session.device = object()  # type: ignore[assignment]
    session.frame_received(_heartbeat(2))
    assert session.last_seen == opened + 10.0


def test_garbage_counts_against_the_budget() -> None:
    """Undecodable input before authentication spends the same budget as frames: a peer
    sending garbage is closed after a few pieces, not after MAX_FRAME_ERRORS."""
    host = LimitedHost()
    factory = TerminalFactory(host, lambda link: TerminalSession(host, link))
    proto = factory.buildProtocol(_peer("10.0.0.1"))
    assert proto is not None
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"\x7e\x01\x7e" * 4)
    assert not transport.disconnecting
    proto.dataReceived(b"\x7e\x01\x7e")
    assert transport.disconnecting


def test_connection_caps_total_and_per_address() -> None:
    """The factory refuses a connection past ``max_per_address`` from one address, or past
    ``max_connections`` in all; a closed connection frees its places."""
    host = LimitedHost()
    factory = TerminalFactory(host, lambda link: TerminalSession(host, link))
    a1 = factory.buildProtocol(_peer("10.0.0.1", 1))
    a2 = factory.buildProtocol(_peer("10.0.0.1", 2))
    assert a1 is not None and a2 is not None
    assert factory.buildProtocol(_peer("10.0.0.1", 3)) is None
    assert host.counters["connections_refused_per_address"] == 1
    b1 = factory.buildProtocol(_peer("10.0.0.2", 1))
    assert b1 is not None
    assert factory.buildProtocol(_peer("10.0.0.3", 1)) is None  # three open in all
    assert host.counters["connections_refused"] == 2
    for p in (a1, b1):
        p.makeConnection(StringTransport())
        p.connectionLost()
    assert factory.buildProtocol(_peer("10.0.0.1", 4)) is not None
    assert factory.buildProtocol(_peer("10.0.0.3", 2)) is not None
    assert dict(factory.by_address) == {"10.0.0.1": 2, "10.0.0.3": 1}
