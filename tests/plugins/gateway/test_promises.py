"""Gateway promises that had no test: the idle timeout, 0x0201 replies stored, three failed
authentications and a phone change closing the connection. A real PostgreSQL, a real
loopback socket, a scripted device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, task

from cmsv6.db.service import Database
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.messages.core import Authenticate, Heartbeat
from cmsv6.protocols.jt808.messages.location import LocationQueryResponse
from tests.support.database import query
from tests.support.device import connect, location, shipping_writer, within
from tests.support.process import GatewayProcess, free_port
from tests.support.ready import database_connected

PHONE = "13800000021"
OTHER = "13800000022"
#: Only a guard against hanging: nothing here takes more than a fraction of it.
WAIT = 10.0



def _serve(dsn: str, tmp_path: Path, clock: Any = None, idle_timeout: float = 180.0) -> Any:
    """A gateway on a loopback port (sessions read time from ``clock``, the writer and the
    database from the reactor); (gateway, stop)."""
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2, writer_threads=2)
    db.startService()
    writer, stop_writer = shipping_writer(db, reactor)
    gw = Gateway(db, clock or reactor, "gw-promises", "127.0.0.1:7611", open_registration=True,
                 idle_timeout=idle_timeout, media_dir=tmp_path / "media", writer=writer)  # fmt: skip
    port = None
    try:
        pytest_twisted.blockon(within(db.ready(), "the database service to connect"))
        port = pytest_twisted.blockon(
            endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(JT808Factory(gw))
        )
    except BaseException:
        stop_writer()
        pytest_twisted.blockon(defer.maybeDeferred(db.stopService))
        raise
    gw.port = port.getHost().port  # type: ignore[attr-defined]

    def stop() -> None:
        for session in list(gw.connections):
            session.link.close()
        stop_writer()
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        pytest_twisted.blockon(defer.maybeDeferred(db.stopService))

    return gw, stop


@pytest.fixture
def gateway(dsn: str, tmp_path: Path) -> Any:
    gw, stop = _serve(dsn, tmp_path)
    gw.dsn = dsn  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        stop()


@pytest.fixture
def clocked(dsn: str, tmp_path: Path) -> Any:
    """A gateway whose sessions read a ``task.Clock`` (its ``clock``), idle timeout 60 s."""
    clock = task.Clock()
    gw, stop = _serve(dsn, tmp_path, clock=clock, idle_timeout=60.0)
    try:
        yield gw
    finally:
        stop()


def _device(gw: Gateway, phone: str = PHONE) -> Any:
    from twisted.internet import reactor

    return connect(reactor, gw.port, phone)  # type: ignore[attr-defined]


@pytest_twisted.inlineCallbacks
def test_idle_device_is_closed_and_a_heartbeating_one_is_not(clocked: Gateway) -> None:
    """Past the idle timeout a silent authenticated device is disconnected, while a device
    that heartbeats within it keeps its session."""
    silent = yield _device(clocked, PHONE)
    yield silent.login()
    beating = yield _device(clocked, OTHER)
    yield beating.login()
    clock = clocked.clock
    for _ in range(5):  # 5 × 20 s: well past the 60 s timeout for the silent one
        clock.advance(20)
        beating.send(Heartbeat())
        ack = yield beating.next(0x8001, timeout=WAIT)
        assert ack.body.result == 0
        clocked.tick()
    yield within(silent.lost, "the idle connection to close")
    assert clocked.counters["idle_closed"] == 1
    assert PHONE not in clocked.sessions and OTHER in clocked.sessions
    assert not beating.lost.called
    beating.send(Heartbeat())
    ack = yield beating.next(0x8001, timeout=WAIT)
    assert ack.body.result == 0
    beating.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_twistd_gateway_idle_timeout_option(dsn: str, tmp_path: Path) -> None:
    """``twistd gateway --idle_timeout 1`` disconnects a silent authenticated device (here
    within a generous 20 s)."""
    from twisted.internet import reactor

    port = free_port()
    gateway = GatewayProcess(dsn, port, tmp_path, "--idle_timeout", "1")
    gateway.start()
    try:
        yield database_connected(gateway)
        dev = yield connect(reactor, port, PHONE)
        yield dev.login()
        yield within(dev.lost, "the idle connection to close", 20)
    finally:
        gateway.stop()


@pytest_twisted.inlineCallbacks
def test_position_query_reply_is_stored_then_acknowledged(gateway: Gateway) -> None:
    """A 0x0201 answering a 0x8201 reaches the command's caller and its position is in the
    database by the time the gateway acknowledges it."""
    dev = yield _device(gateway)
    yield dev.login()
    d = gateway.send_command(PHONE, 0x8201, b"", timeout=WAIT)
    request = yield dev.next(0x8201)
    where = location(lat=-33.8688, lon=151.2093, speed=12.5)
    serial = dev.send(LocationQueryResponse(request.header.serial, where))
    reply = yield within(d, "the reply")
    assert reply["msg_id"] == 0x0201
    assert decode_body(0x0201, reply["body"]).location.latitude == where.latitude
    ack = yield dev.next(0x8001)
    assert (ack.body.reply_serial, ack.body.reply_id, ack.body.result) == (serial, 0x0201, 0)
    stored = query(gateway.dsn, "SELECT p.latitude, p.longitude, p.speed, p.time, p.blind"  # type: ignore[attr-defined]
                  " FROM positions p JOIN devices d ON d.id = p.device_id WHERE d.phone = %s",
                  (PHONE,))  # fmt: skip
    assert stored == [(where.latitude, where.longitude, where.speed, where.time, False)]
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_three_failed_authentications_close_the_connection(gateway: Gateway) -> None:
    """Each wrong auth code is answered with result 1; the connection stays open after two
    and is closed after the third."""
    dev = yield _device(gateway)
    for attempt in range(2):
        serial = dev.send(Authenticate("wrong"))
        ack = yield dev.next(0x8001)
        assert (ack.body.reply_serial, ack.body.result) == (serial, 1)
    serial = dev.send(Heartbeat())  # still served (refused: not authenticated)
    ack = yield dev.next(0x8001)
    assert (ack.body.reply_serial, ack.body.result) == (serial, 1)
    assert not dev.lost.called
    serial = dev.send(Authenticate("wrong"))
    ack = yield dev.next(0x8001)
    assert (ack.body.reply_serial, ack.body.result) == (serial, 1)
    yield within(dev.lost, "the gateway to close the connection")
    assert gateway.counters["auth_failed"] == 3
    # Closed for the third failure, not by the authentication deadline.
    assert gateway.counters["auth_deadline"] == 0


@pytest_twisted.inlineCallbacks
def test_phone_change_closes_the_session(gateway: Gateway) -> None:
    """A frame with another phone on an authenticated connection closes it unanswered, and
    the device's session ends (it is no longer online)."""
    dev = yield _device(gateway)
    yield dev.login()
    assert PHONE in gateway.sessions
    dev.phone = OTHER
    dev.send(Heartbeat())
    yield within(dev.lost, "the gateway to close the connection")
    assert not [m for m in dev.received.pending if m.header.msg_id == 0x8001]
    assert PHONE not in gateway.sessions and OTHER not in gateway.sessions
    assert gateway.counters["phone_changed"] == 1


@pytest.fixture
def gated(dsn: str, tmp_path: Path) -> Any:
    """A gateway whose position writer holds each write until the test releases it
    (``gw.held``: one Deferred per write waiting to start)."""
    from twisted.internet import reactor

    from cmsv6.db import positions as store
    from cmsv6.plugins.gateway.writer import PositionWriter

    held: list[defer.Deferred[None]] = []

    @defer.inlineCallbacks
    def write(db: Database, rows: Any, alarms: Any) -> Any:
        gate: defer.Deferred[None] = defer.Deferred()
        held.append(gate)
        yield gate
        yield store.write(db, rows, alarms)

    db = Database(dsn, reactor, size=2)
    db.startService()
    writer = PositionWriter(db, reactor, write=write)
    gw = Gateway(db, reactor, "gw-gated", "127.0.0.1:7611", open_registration=True,
                 media_dir=tmp_path / "media", writer=writer)  # fmt: skip
    gw.held = held  # type: ignore[attr-defined]
    gw.dsn = dsn  # type: ignore[attr-defined]
    port = None
    try:
        pytest_twisted.blockon(within(db.ready(), "the database service to connect"))
        port = pytest_twisted.blockon(
            endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(JT808Factory(gw))
        )
        gw.port = port.getHost().port  # type: ignore[attr-defined]
        yield gw
    finally:
        for session in list(gw.connections):
            session.link.close()
        writer.stop()
        for gate in held:
            if not gate.called:
                gate.callback(None)
        if port is not None:
            pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        pytest_twisted.blockon(defer.maybeDeferred(db.stopService))


@pytest_twisted.inlineCallbacks
def test_report_acknowledged_only_after_commit(gated: Gateway) -> None:
    """While a report's write has not committed it is not acknowledged (a later heartbeat
    is answered first); once it commits the 0x8001 follows and the row is there."""
    from tests.support.device import until

    dev = yield _device(gated)
    yield dev.login()
    serial = dev.send(location())
    held = gated.held  # type: ignore[attr-defined]
    yield until(lambda: held, "the report's write to start")
    beat = dev.send(Heartbeat())
    ack = yield dev.next(0x8001)
    assert (ack.body.reply_serial, ack.body.reply_id) == (beat, 0x0002), "acknowledged before commit"
    assert not dev.received.pending
    assert query(gated.dsn, "SELECT count(*) FROM positions") == [(0,)]  # type: ignore[attr-defined]
    held[0].callback(None)
    ack = yield dev.next(0x8001)
    assert (ack.body.reply_serial, ack.body.reply_id, ack.body.result) == (serial, 0x0200, 0)
    assert query(gated.dsn, "SELECT count(*) FROM positions") == [(1,)]  # type: ignore[attr-defined]
    dev.transport.loseConnection()
