"""Device assignment on login's jt808 endpoint: a real PostgreSQL, a real loopback socket,
a scripted device, and a directory with gateways announced by hand."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints

from cmsv6.db.service import Database
from cmsv6.protocols.jt808.messages.core import Authenticate, Register, TerminalResponse
from cmsv6.plugins.login.assignment import AssignmentFactory, Assigner
from cmsv6.plugins.login.directory import Directory
from tests.support.device import connect, within
from tests.support.link import FakeLink

LOGIN = "127.0.0.2:6608"


@pytest.fixture
def login(dsn: str) -> Any:
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2)
    db.startService()
    pytest_twisted.blockon(db.ready())
    directory = Directory(reactor)
    assigner = Assigner(db, directory, reactor, LOGIN, open_registration=True, reply_timeout=2.0)
    factory = AssignmentFactory(assigner)
    port = pytest_twisted.blockon(
        endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    )
    assigner.port = port.getHost().port  # type: ignore[attr-defined]
    yield assigner
    factory.close_all()
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(defer.maybeDeferred(db.stopService))


@defer.inlineCallbacks
def register_and_authenticate(assigner: Assigner, phone: str, version: int = 2013) -> Any:
    """A device that registers and authenticates at login; (device, what follows the
    authentication: the 0x8103 after a 0x8001 result 0, or the 0x8001 refusing it)."""
    from twisted.internet import reactor

    dev = yield connect(reactor, assigner.port, phone, version)  # type: ignore[attr-defined]
    dev.send(Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, "粤B00001"))
    reply = yield dev.next(0x8100)
    assert reply.body.result == 0
    if version == 2019:
        serial = dev.send(Authenticate(reply.body.auth_code, "860000000000001", "1.0"))
    else:
        serial = dev.send(Authenticate(reply.body.auth_code))
    answer = yield dev.next()
    assert answer.header.msg_id == 0x8001 and answer.header.version == version
    assert (answer.body.reply_serial, answer.body.reply_id) == (serial, 0x0102)
    if answer.body.result == 0:
        answer = yield dev.next()
    return dev, answer


@pytest_twisted.inlineCallbacks
def test_device_is_pointed_at_the_least_loaded_gateway(login: Assigner) -> None:
    """A 2013 device's authentication is answered with 0x8001 result 0, then 0x8103 with the
    least-loaded gateway as main server and login as backup; after its 0x0001 login
    closes, and the gateway counts it."""
    login.directory.announce(FakeLink(), "busy", "10.0.0.1:7611", "", 10)
    login.directory.announce(FakeLink(), "idle", "10.0.0.2:7612", "", 10)
    login.directory.gateways["busy"].devices.update({"a", "b"})
    dev, answer = yield register_and_authenticate(login, "13800000001")
    assert answer.header.msg_id == 0x8103 and answer.header.version == 2013
    assert answer.body.as_dict() == {0x0013: "10.0.0.2", 0x0017: "127.0.0.2", 0x0018: 7612}
    dev.send(TerminalResponse(answer.header.serial, 0x8103, 0))
    yield within(dev.lost, "login to close the connection")
    assert login.directory.gateways["idle"].pending.keys() == {"13800000001"}
    assert login.counters["acknowledged"] == 1


@pytest_twisted.inlineCallbacks
def test_2019_device_gets_2019_addresses(login: Assigner) -> None:
    """A 2019 device is answered in 2019 frames with host:port addresses."""
    login.directory.announce(FakeLink(), "gw", "10.0.0.1:7611", "", 10)
    dev, answer = yield register_and_authenticate(login, "13800000002", version=2019)
    assert answer.header.msg_id == 0x8103 and answer.header.version == 2019
    assert answer.body.as_dict() == {0x0013: "10.0.0.1:7611", 0x0017: LOGIN, 0x0018: 7611}
    dev.send(TerminalResponse(answer.header.serial, 0x8103, 0))
    yield within(dev.lost, "login to close the connection")


@pytest_twisted.inlineCallbacks
def test_no_live_gateway_refuses(login: Assigner) -> None:
    """Without a live gateway the authentication is refused (0x8001 result 1) and the
    connection closed."""
    dev, answer = yield register_and_authenticate(login, "13800000003")
    assert answer.header.msg_id == 0x8001 and answer.body.reply_id == 0x0102
    assert answer.body.result == 1
    yield within(dev.lost, "login to close the connection")
    assert login.counters["refused_no_gateway"] == 1


@pytest_twisted.inlineCallbacks
def test_silent_device_is_closed(login: Assigner) -> None:
    """A device that never answers the 0x8103 is closed after the reply timeout."""
    login.directory.announce(FakeLink(), "gw", "10.0.0.1:7611", "", 10)
    dev, answer = yield register_and_authenticate(login, "13800000004")
    assert answer.header.msg_id == 0x8103
    yield within(dev.lost, "login to close the connection")
    assert login.counters["timeouts"] == 1


@pytest_twisted.inlineCallbacks
def test_wrong_code_is_refused(login: Assigner) -> None:
    """A wrong authentication code is answered with result 1 and nothing is assigned."""
    from twisted.internet import reactor

    login.directory.announce(FakeLink(), "gw", "10.0.0.1:7611", "", 10)
    dev = yield connect(reactor, login.port, "13800000005")  # type: ignore[attr-defined]
    dev.send(Authenticate("nonsense"))
    answer = yield dev.next()
    assert (answer.header.msg_id, answer.body.result) == (0x8001, 1)
    assert login.counters["assigned"] == 0
    dev.transport.loseConnection()
    yield within(dev.lost, "login to close the connection")


@pytest_twisted.inlineCallbacks
def test_positions_are_not_taken(login: Assigner) -> None:
    """Login is no gateway: a report before assignment is refused, so the device keeps it."""
    from twisted.internet import reactor

    from tests.support.device import location

    dev = yield connect(reactor, login.port, "13800000006")  # type: ignore[attr-defined]
    serial = dev.send(location())
    answer = yield dev.next()
    assert (answer.body.reply_serial, answer.body.result) == (serial, 1)
    dev.transport.loseConnection()
    yield within(dev.lost, "login to close the connection")


@pytest_twisted.inlineCallbacks
def test_registered_phone_refused_at_login(login: Assigner) -> None:
    """Login's device port guards identity as the gateway does: a second registration of a
    phone that has a code gets 0x8100 result 3 and no code."""
    from twisted.internet import reactor

    login.directory.announce(FakeLink(), "gw", "10.0.0.1:7611", "", 10)
    first, _ = yield register_and_authenticate(login, "13800000077")
    first.transport.loseConnection()
    dev = yield connect(reactor, login.port, "013800000077")  # type: ignore[attr-defined]
    dev.send(Register(44, 300, "EVIL", "X-1", "T999999", 1, "粤B00001"))
    reply = yield dev.next(0x8100)
    assert (reply.body.result, reply.body.auth_code) == (3, None)
    dev.transport.loseConnection()
