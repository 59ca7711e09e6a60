"""The gateway through database failures: a restart, and a primary → standby promotion.
Nothing is acknowledged that is not stored, and the gateway carries on by itself."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from typing import Any, Iterator

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import defer, endpoints

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.service import Database
from cmsv6.db.upgrade import upgrade
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.protocols.jt808.fields import BEIJING
from tests.support.device import connect, location, shipping_writer, until, within

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=BEIJING)


def count(dsn: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(DISTINCT time) FROM positions")
        total, distinct = cur.fetchone()
    conn.close()
    assert total == distinct, "a report stored twice"
    return int(total)


@pytest.fixture
def cluster() -> Iterator[EmbeddedPostgres]:
    c = EmbeddedPostgres(tempfile.mkdtemp(prefix="cmsv6-test-fail-"))
    c.init()
    try:
        c.start()
        upgrade(c.create_database("cmsv6"))
        yield c
    finally:
        c.destroy()


@defer.inlineCallbacks
def start_gateway(dsn: str) -> Any:
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2, writer_threads=2)
    db.startService()
    yield within(db.ready(), "the database service to connect")
    writer, stop_writer = shipping_writer(db, reactor)
    gw = Gateway(db, reactor, "gw-fail", "127.0.0.1:7611", open_registration=True,
                 writer=writer)
    gw.stop_writer = stop_writer  # type: ignore[attr-defined]
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        JT808Factory(gw)
    )
    return db, gw, port


@defer.inlineCallbacks
def stop_gateway(db: Database, gw: Gateway, port: Any) -> Any:
    for session in list(gw.connections):
        session.link.close()
    gw.stop_writer()  # type: ignore[attr-defined]
    yield within(port.stopListening(), "the device port to close")
    yield within(db.stopService(), "the database service to stop")


@pytest_twisted.inlineCallbacks
def test_database_restart(cluster: EmbeddedPostgres) -> None:
    """While the database is down a report is not acknowledged; once it is back the
    gateway reconnects, stores it and acknowledges it, exactly once."""
    from twisted.internet import reactor

    dsn = cluster.dsn("cmsv6")
    db, gw, port = yield start_gateway(dsn)
    try:
        dev = yield connect(reactor, port.getHost().port, "13900000001")
        yield dev.login()
        dev.send(location(time=T0))
        yield dev.next(0x8001)
        cluster.stop()
        serial = dev.send(location(time=T0 + timedelta(seconds=1)))
        yield until(lambda: gw.writer.failures > 0, "a failed write")
        assert dev.received.pending == [] and gw.writer.pending == 1
        cluster.start()
        ack = yield dev.next(0x8001)
        assert ack.body.reply_serial == serial and ack.body.result == 0
        assert count(dsn) == 2
    finally:
        yield stop_gateway(db, gw, port)


@pytest_twisted.inlineCallbacks
def test_standby_promotion(cluster: EmbeddedPostgres) -> None:
    """With a synchronous streaming standby and a multi-host DSN, the primary is killed,
    the standby promoted, and the gateway carries on there: every acknowledged report is
    on the new primary."""
    from twisted.internet import reactor

    cluster.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    cluster.psql("SELECT pg_reload_conf()")
    standby = cluster.standby(tempfile.mkdtemp(prefix="cmsv6-test-standby-"))
    try:
        standby.start()
        dsn = (
            f"host=127.0.0.1,127.0.0.1 port={cluster.port},{standby.port} dbname=cmsv6"
            " user=cmsv6 target_session_attrs=read-write connect_timeout=2"
        )
        db, gw, port = yield start_gateway(dsn)
        try:
            dev = yield connect(reactor, port.getHost().port, "13900000002")
            yield dev.login()
            acked = 0
            for i in range(5):
                dev.send(location(time=T0 + timedelta(seconds=i)))
                ack = yield dev.next(0x8001)
                acked += ack.body.result == 0
            cluster.kill()
            standby.promote()
            # The new primary inherited synchronous_standby_names from the old one
            # (through pg_basebackup) and has no standby of its own yet: an operator
            # clears it at failover, or every commit would wait.
            standby.psql("ALTER SYSTEM RESET synchronous_standby_names")
            standby.psql("SELECT pg_reload_conf()")
            for i in range(5, 10):
                dev.send(location(time=T0 + timedelta(seconds=i)))
                ack = yield dev.next(0x8001)
                acked += ack.body.result == 0
            assert acked == 10
            assert count(standby.dsn("cmsv6")) == 10
        finally:
            yield stop_gateway(db, gw, port)
    finally:
        standby.destroy()
