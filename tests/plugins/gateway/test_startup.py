"""``twistd gateway`` lets devices in only once its database answers: before, a
registration or an authentication could get no answer at all. Login hears of it only
then too."""

from __future__ import annotations

import tempfile
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest_twisted

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import upgrade
from tests.support.device import connect, until
from tests.support.process import GatewayProcess, LoginProcess, free_port, listening, wait_port
from tests.support.ready import logged


@pytest_twisted.inlineCallbacks
def test_listens_for_devices_once_the_database_answers(tmp_path: Path) -> None:
    """With its database down, the gateway runs and retries but its device port is closed;
    once the database is up, the port opens and a device registers and authenticates."""
    from twisted.internet import reactor

    cluster = EmbeddedPostgres(tempfile.mkdtemp(prefix="cmsv6-test-startup-"))
    gateway = None
    try:
        cluster.init()
        cluster.start()
        upgrade(cluster.create_database("cmsv6"))
        cluster.stop()
        gateway = GatewayProcess(cluster.dsn("cmsv6"), free_port(), tmp_path)
        gateway.start(wait=False)
        yield until(lambda: logged(gateway, "database not reachable"), "the gateway to retry")
        assert not listening(gateway.port)
        cluster.start()
        wait_port(gateway.port)
        device = yield connect(reactor, gateway.port, "013900000077")
        yield device.login()
        # Running, it keeps the garbage collector off the hot path (tap.quiet_collector).
        assert logged(gateway, "start-up objects frozen, thresholds (20000, 10, 10)")
        device.transport.loseConnection()
    finally:
        if gateway is not None:
            gateway.stop()
        cluster.destroy()


@pytest_twisted.inlineCallbacks
def test_announces_itself_to_login_once_it_listens(dsn: str, tmp_path: Path) -> None:
    """Login hears of a gateway only once its device port accepts: with the start-up's
    first query held behind a lock, the database answers but the port is closed, and login
    must not have been told of it (it would send devices to a port that refuses them, or
    with ``--processes`` all of them to the workers already listening)."""
    from twisted.internet import reactor, task

    login = LoginProcess(dsn, tmp_path, "login")
    gateway = GatewayProcess(dsn, free_port(), tmp_path, "--login", login.client_cluster)
    lock = psycopg2.connect(dsn)
    try:
        login.start()
        with lock.cursor() as cur:  # the gateway closes its last run's sessions first
            cur.execute("LOCK TABLE device_sessions IN ACCESS EXCLUSIVE MODE")
        gateway.start(wait=False)

        def waiting() -> bool:
            with closing(psycopg2.connect(dsn)) as c, c.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE 'UPDATE device_sessions%%'")  # fmt: skip
                return bool(cur.fetchone()[0])

        yield until(waiting, "the gateway's start-up query to wait on the lock", in_thread=True)
        for _ in range(20):  # its database answers; an early announcement would come now
            assert "gateway gw-1 is live" not in login.log.read_text()
            yield task.deferLater(reactor, 0.1, lambda: None)
        assert not listening(gateway.port)
        lock.rollback()
        wait_port(gateway.port)
        yield until(lambda: "gateway gw-1 is live" in login.log.read_text(),
                    "the gateway to announce itself")
    finally:
        lock.close()
        gateway.stop()
        login.stop()
