"""The advisory lock that makes one login server active, on a real PostgreSQL."""

from __future__ import annotations

import psycopg2
import pytest_twisted

from cmsv6.db.service import Database
from cmsv6.plugins.login.standby import ActiveLock
from tests.support.device import until, within
from tests.support.process import listening

KEY = 424242


class Server:
    """Records what an ActiveLock tells it."""

    def __init__(self, dsn: str) -> None:
        from twisted.internet import reactor

        self.events: list[str] = []
        # The lock's session is the database's, apart from its pool (which is not started).
        self.lock = ActiveLock(Database(dsn, reactor), reactor, self.activate, self.deactivate, key=KEY, poll=0.05,
                               check=0.2)  # fmt: skip

    def activate(self) -> None:
        self.events.append("active")

    def deactivate(self, reason: str) -> None:
        self.events.append("standby")

    @property
    def active(self) -> bool:
        return bool(self.events) and self.events[-1] == "active"


def lock_holder(dsn: str) -> list[int]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
                    " AND granted", (KEY,))  # fmt: skip
        pids = [r[0] for r in cur.fetchall()]
    conn.close()
    return pids


def terminate(dsn: str, pid: int) -> None:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    conn.close()


@pytest_twisted.inlineCallbacks
def test_one_active_and_takeover_when_its_session_ends(dsn: str) -> None:
    """Of two servers one is active; when its database session is ended it steps down, and
    then exactly one of them (the other, or it again) holds the lock."""
    first, second = Server(dsn), Server(dsn)
    first.lock.startService()
    yield until(lambda: first.active, "the first to be active")
    second.lock.startService()
    try:
        yield until(lambda: second.lock._conn is not None and second.lock._waiting_logged,
                    "the second to stand by")
        assert not second.active
        (pid,) = lock_holder(dsn)
        terminate(dsn, pid)
        yield until(lambda: first.events[-1:] == ["standby"] or second.active, "a change")
        yield until(lambda: first.active != second.active, "exactly one active again")
        assert first.events[:2] == ["active", "standby"]
        assert len(lock_holder(dsn)) == 1
    finally:
        first.lock.stopService()
        second.lock.stopService()
    assert not first.active and not second.active


@pytest_twisted.inlineCallbacks
def test_stopping_releases_the_lock(dsn: str) -> None:
    """An active server that stops gives up the lock and says so."""
    server = Server(dsn)
    server.lock.startService()
    yield until(lambda: server.active, "active")
    server.lock.stopService()
    assert server.events == ["active", "standby"]
    yield until(lambda: lock_holder(dsn) == [], "the lock released", in_thread=True)


@pytest_twisted.inlineCallbacks
def test_login_stops_serving_when_its_session_ends(dsn: str) -> None:
    """``twistd login``'s service tree listens only while it holds the lock: when its lock
    session is ended it stops listening and drops its gateway links, and listens again once
    it has the lock back."""
    from twisted.internet import endpoints, reactor

    from cmsv6.plugins.login import tap
    from cmsv6.rpc.commands import AnnounceGateway
    from cmsv6.rpc.link import ClusterLink
    from tests.support.process import free_port, master_key

    jt808, cluster = free_port(), free_port()
    options = tap.Options()
    options.parseOptions([
        "--dsn", dsn, "--jt808", f"tcp:{jt808}:interface=127.0.0.1",
        "--cluster", f"tcp:{cluster}:interface=127.0.0.1", "--web", "",
        "--cluster_key", str(master_key()),
    ])  # fmt: skip
    top = tap.makeService(options, reactor)
    top.lock.key = KEY
    top.startService()
    try:
        yield until(lambda: listening(jt808) and listening(cluster), "login listening")
        link = yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", cluster), ClusterLink()
        )
        from cmsv6.rpc import keys

        yield link.authenticate("gw", keys.load(master_key()).key_for("gw"))
        yield link.callRemote(AnnounceGateway, id="gw", public_jt808="127.0.0.1:1", cluster="",
                              capacity=1)  # fmt: skip
        assert list(top.directory.gateways) == ["gw"]
        (pid,) = lock_holder(dsn)
        terminate(dsn, pid)
        yield until(lambda: not top.lock.active or top.serving.activations == 2, "stepping down")
        assert top.directory.gateways == {}
        yield until(lambda: link.transport is None or link.transport.disconnected, "link closed")
        yield until(lambda: top.lock.active and listening(jt808) and listening(cluster),
                    "serving again")
        assert top.serving.activations == 2
    finally:
        yield within(top.stopService(), "login to stop")
    assert not listening(jt808)
