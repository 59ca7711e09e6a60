"""Login's assignment port keeps the gateway's limits: three failed authentications, or a
phone change, close the connection. A real PostgreSQL, a real loopback socket, a scripted
device."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints

from cmsv6.db.service import Database
from cmsv6.protocols.jt808.messages.core import Authenticate, Heartbeat
from cmsv6.plugins.login.assignment import AssignmentFactory, Assigner
from cmsv6.plugins.login.directory import Directory
from tests.support.device import connect, within
from tests.support.link import FakeLink

PHONE = "13800000031"
#: Only a guard against hanging.
WAIT = 10.0


@pytest.fixture
def login(dsn: str) -> Any:
    """An assignment port with one live gateway in its directory."""
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2)
    db.startService()
    factory = port = None
    try:
        pytest_twisted.blockon(within(db.ready(), "the database service to connect"))
        directory = Directory(reactor)
        directory.announce(FakeLink(), "gw", "10.0.0.1:7611", "", 10)
        assigner = Assigner(db, directory, reactor, "127.0.0.2:6608", open_registration=True)
        factory = AssignmentFactory(assigner)
        port = pytest_twisted.blockon(
            endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        )
        assigner.port = port.getHost().port  # type: ignore[attr-defined]
        yield assigner
    finally:
        if factory is not None:
            factory.close_all()
        if port is not None:
            pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        pytest_twisted.blockon(defer.maybeDeferred(db.stopService))


@pytest_twisted.inlineCallbacks
def test_three_failed_authentications_close_the_connection(login: Assigner) -> None:
    """Each wrong auth code is answered with result 1; the connection stays open after two
    and is closed after the third, with nothing assigned."""
    from twisted.internet import reactor

    dev = yield connect(reactor, login.port, PHONE)  # type: ignore[attr-defined]
    for attempt in range(2):
        serial = dev.send(Authenticate("wrong"))
        ack = yield dev.next(0x8001, timeout=WAIT)
        assert (ack.body.reply_serial, ack.body.result) == (serial, 1)
    serial = dev.send(Heartbeat())
    ack = yield dev.next(0x8001, timeout=WAIT)
    assert (ack.body.reply_serial, ack.body.result) == (serial, 0)
    assert not dev.lost.called
    serial = dev.send(Authenticate("wrong"))
    ack = yield dev.next(0x8001, timeout=WAIT)
    assert (ack.body.reply_serial, ack.body.result) == (serial, 1)
    yield within(dev.lost, "login to close the connection")
    assert login.counters["auth_failed"] == 3 and login.counters["assigned"] == 0
    # Closed for the failures, not by the authentication deadline, which would close it too.
    assert login.counters["auth_deadline"] == 0


@pytest_twisted.inlineCallbacks
def test_phone_change_closes_the_connection(login: Assigner) -> None:
    """A frame with another phone on the same connection closes it unanswered."""
    from twisted.internet import reactor

    dev = yield connect(reactor, login.port, PHONE)  # type: ignore[attr-defined]
    serial = dev.send(Heartbeat())
    ack = yield dev.next(0x8001, timeout=WAIT)
    assert (ack.body.reply_serial, ack.body.result) == (serial, 0)
    dev.phone = "13800000032"
    dev.send(Heartbeat())
    yield within(dev.lost, "login to close the connection")
    assert not dev.received.pending
