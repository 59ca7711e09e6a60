"""Paced accepting (``cmsv6.terminal.limits.Handshakes``): at most ``max_handshakes``
connections between accept and authentication; past it the port stops accepting and the
rest wait in the kernel's listen backlog, accepted as places free up, none lost."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, task

from cmsv6.db.devices import Device, hash_auth_code
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.messages.core import Authenticate
from cmsv6.terminal.limits import Handshakes, Limits
from cmsv6.terminal.protocol import TerminalFactory
from cmsv6.terminal.registration import Registrar, RegistrationPolicy
from cmsv6.terminal.session import TerminalSession
from tests.support.device import connect, until, within
from tests.support.link import FakeLink
from tests.support.wire import frame

SALT = b"s" * 16
CODE = "c0de"


class Lookups:
    """A database whose auth lookups wait until the test lets them through (``release``)."""

    auth_cache = None

    def __init__(self) -> None:
        self.waiting: list[tuple[defer.Deferred[Any], str]] = []

    def run_lookup(self, work: Any, phone: str) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.waiting.append((d, phone))
        return d

    def release(self, n: int | None = None) -> int:
        """Answer the first ``n`` (all) lookups: each phone's code is CODE."""
        now, self.waiting = self.waiting[:n], self.waiting[len(self.waiting[:n]):]
        for d, phone in now:
            d.callback((SALT, hash_auth_code(CODE, SALT), False, 1, phone, None, None, None, 4,
                        2013))  # fmt: skip
        return len(now)


class Host:
    open_registration = False

    def __init__(self, clock: Any, limit: int) -> None:
        self.clock = clock
        self.db = Lookups()
        self.counters: Counter[str] = Counter()
        self.limits = Limits(auth_deadline=30.0)
        self.handshakes = Handshakes(limit)
        self.registrar = Registrar(RegistrationPolicy(), clock)
        self.sessions: list[TerminalSession] = []
        #: The most handshakes seen in flight at once.
        self.most = 0

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def new_session(self, link: Any) -> TerminalSession:
        session = TerminalSession(self, link)
        self.sessions.append(session)
        self.most = max(self.most, len(self.handshakes.in_flight))
        return session


class FakePort:
    """A listening port as the pacer sees it: reading or not, ``numberAccepts``."""

    def __init__(self) -> None:
        self.reading = True
        self.numberAccepts = 100
        self.reads: list[int] = []
        self.connected = True

    def doRead(self) -> None:  # noqa: N802
        self.reads.append(self.numberAccepts)

    def stopReading(self) -> None:  # noqa: N802
        self.reading = False

    def startReading(self) -> None:  # noqa: N802
        self.reading = True


def _authenticate(session: TerminalSession, serial: int = 2) -> None:
    session.frame_received(parse_frame(frame(Authenticate(CODE), serial)))


def test_port_stops_at_the_bound_and_accepts_again_below_it() -> None:
    """With ``limit`` handshakes in flight the port stops reading; one ending resumes it;
    a read never accepts more connections than there are free places."""
    handshakes = Handshakes(3)
    port = FakePort()
    handshakes.add_port(port)
    port.doRead()
    assert port.reads == [3]  # Twisted's 100 per read, clamped to the free places
    a, b, c = object(), object(), object()
    handshakes.begin(a)
    port.doRead()
    assert port.reads[-1] == 2
    handshakes.begin(b)
    assert port.reading
    handshakes.begin(c)
    assert not port.reading and handshakes.paused
    handshakes.end(a)
    assert port.reading and not handshakes.paused
    port.numberAccepts = 120  # grown by Twisted after a busy read
    port.doRead()
    assert port.reads[-1] == 1
    handshakes.end(a)  # twice: once counted
    assert len(handshakes.in_flight) == 2
    with pytest.raises(ValueError):
        Handshakes(0)


def test_a_session_holds_its_place_until_it_authenticates_or_goes() -> None:
    """A session takes a place when it starts and gives it back when it authenticates,
    when it is closed, when its connection is lost and when its deadline closes it."""
    clock = task.Clock()
    host = Host(clock, 10)
    authenticated = TerminalSession(host, FakeLink())
    closed = TerminalSession(host, FakeLink())
    lost = TerminalSession(host, FakeLink())
    late = TerminalSession(host, FakeLink())
    assert len(host.handshakes.in_flight) == 4
    _authenticate(authenticated)
    assert authenticated in host.handshakes.in_flight  # the database has not answered yet
    host.db.release()
    assert authenticated.authenticated and authenticated not in host.handshakes.in_flight
    closed.close()
    lost.connection_lost("gone")
    assert host.handshakes.in_flight == {late}
    clock.advance(30.0)
    assert late.closed and not host.handshakes.in_flight
    assert host.counters["auth_deadline"] == 1  # only the late one: the others' deadlines went with them


def test_refused_authentication_keeps_the_place() -> None:
    """A failed authentication is still a handshake in flight (the device may try again)."""
    host = Host(task.Clock(), 10)
    session = TerminalSession(host, FakeLink())
    session.frame_received(parse_frame(frame(Authenticate("wrong"), 2)))
    host.db.release()
    assert not session.authenticated and session in host.handshakes.in_flight


@pytest_twisted.inlineCallbacks
def test_storm_over_loopback_waits_in_the_backlog() -> None:
    """Twelve devices connect at once to a port paced at 3: never more than 3 sessions
    exist unauthenticated, the others wait in the listen backlog (their TCP connections
    are up), and as lookups answer, every one of them gets in, none lost."""
    from twisted.internet import reactor

    host = Host(reactor, 3)
    factory = TerminalFactory(host, host.new_session)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, backlog=64, interface="127.0.0.1")
    port = yield host.handshakes.paced(endpoint).listen(factory)
    devices = []
    try:
        for i in range(12):
            dev = yield within(connect(reactor, port.getHost().port, f"1380000{i:04d}"),
                               "a TCP connection (the kernel's backlog takes it)")  # fmt: skip
            dev.send(Authenticate(CODE))
            devices.append(dev)
        yield until(lambda: len(host.db.waiting) == 3, "the first three lookups")
        assert len(host.sessions) == 3 and host.handshakes.paused
        answered = 0
        while answered < 12:
            yield until(lambda: host.db.waiting, "the next lookup")
            answered += host.db.release(1)
        for dev in devices:
            ack = yield dev.next(0x8001)
            assert ack.body.result == 0
        assert len(host.sessions) == 12 and all(s.authenticated for s in host.sessions)
        assert host.most == 3
        assert not host.handshakes.in_flight and not host.handshakes.paused
    finally:
        for dev in devices:
            dev.transport.loseConnection()
        yield defer.maybeDeferred(port.stopListening)
    assert port not in host.handshakes.ports
