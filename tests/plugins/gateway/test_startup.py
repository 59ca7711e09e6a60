"""``twistd gateway`` lets devices in only once its database answers: before, a
registration or an authentication could get no answer at all."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest_twisted

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import upgrade
from tests.support.device import connect, until
from tests.support.process import GatewayProcess, free_port, listening, wait_port
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
        device.transport.loseConnection()
    finally:
        if gateway is not None:
            gateway.stop()
        cluster.destroy()
