"""Hot standby: the active login server is the one holding a PostgreSQL advisory lock.

Two login servers share one database. Each keeps a dedicated connection (not the pool's)
and polls ``pg_try_advisory_lock``; the one that gets it is active and serves, the other
keeps polling. The lock lives as long as the session that took it: when the active server
dies (kill -9, host down) PostgreSQL ends its session and the standby's next poll gets
the lock. The active server watches its own session (the socket closing, and a periodic
``SELECT 1`` with a deadline) and steps down at once when it ends, because from then on
the other server may take the lock.

Queries on this connection are never cancelled (psycopg2's cancel opens a blocking
connection); a query past its deadline is abandoned with its connection.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.db.service import HostRotation, RotatingConnection

_log = Logger()

#: The advisory lock key of the active login server ("cmsv6log" as a bigint).
LOCK_KEY = int.from_bytes(b"cmsv6log", "big")


class _LockConnection(RotatingConnection):
    """A connection that says when its socket goes away (the session has ended)."""

    def __init__(self, reactor: Any, on_lost: Callable[[Any, Failure], None]) -> None:
        super().__init__(reactor=reactor)
        self.on_lost: Callable[[Any, Failure], None] | None = on_lost

    def doRead(self) -> Any:  # noqa: N802
        # When the server ends the session, txpostgres's doRead fails (psycopg2's poll
        # raises, or the socket is gone and re-adding it as a reader fails); the reactor
        # would log that as unhandled before calling connectionLost. Say it is lost instead.
        try:
            super().doRead()
        except Exception as e:  # noqa: BLE001
            return error.ConnectionLost(f"database session ended: {str(e).strip()}")
        return None

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        try:
            super().connectionLost(reason)
        finally:
            if self.on_lost is not None:
                on_lost, self.on_lost = self.on_lost, None
                on_lost(self, reason)


class ActiveLock(Service):
    """Calls ``activate()`` when this server gets the lock and ``deactivate(reason)`` when
    it loses it (or stops)."""

    name = "active-lock"

    def __init__(
        self,
        dsn: str,
        clock: IReactorTime,
        activate: Callable[[], None],
        deactivate: Callable[[str], None],
        key: int = LOCK_KEY,
        poll: float = 0.25,
        check: float = 1.0,
        deadline: float = 3.0,
    ) -> None:
        self.dsn = dsn
        self._hosts = HostRotation(dsn)
        self.clock = clock
        self.activate = activate
        self.deactivate = deactivate
        self.key = key
        self.poll = poll
        self.check = check
        self.deadline = deadline
        self.active = False
        self._conn: _LockConnection | None = None
        self._timer: IDelayedCall | None = None
        self._waiting_logged = False

    # -- service -----------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._schedule(0)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self._cancel()
        if self.active:
            self.active = False
            self.deactivate("stopping")
        self._close()  # ends the session: the lock goes with it

    # -- the loop -----------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        self._cancel()
        if self.running:
            self._timer = self.clock.callLater(delay, self._step)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _step(self) -> None:
        self._timer = None
        if not self.running:
            return
        if self._conn is None:
            self._connect()
        elif self.active:
            self._query(self._conn, "SELECT 1", self._checked)
        else:
            self._query(self._conn, "SELECT pg_try_advisory_lock(%s)", self._tried, (self.key,))

    def _connect(self) -> None:
        conn = _LockConnection(self.clock, self._lost)
        conn.hosts = self._hosts
        self._conn = conn
        self._bounded(conn, conn.connect(self.dsn), lambda _: self._step(), "connect")

    def _query(self, conn: _LockConnection, sql: str, then: Callable[[Any], None],
               args: Any = None) -> None:  # fmt: skip
        self._bounded(conn, conn.runQuery(sql, args), then, sql)

    def _bounded(self, conn: _LockConnection, d: Any, then: Callable[[Any], None], what: str) -> None:
        """Run ``then(result)`` if ``d`` fires in time on a connection still ours; else the
        connection is lost."""
        state = {"done": False}

        def late() -> None:
            if not state["done"]:
                state["done"] = True
                self._lost(conn, Failure(TimeoutError(f"{what}: no answer in {self.deadline} s")))

        timer = self.clock.callLater(self.deadline, late)

        def ok(result: Any) -> None:
            if state["done"]:
                return
            state["done"] = True
            timer.cancel()
            if conn is self._conn and self.running:
                then(result)

        def failed(failure: Failure) -> None:
            if state["done"]:
                return
            state["done"] = True
            timer.cancel()
            self._lost(conn, failure)

        d.addCallbacks(ok, failed)

    def _tried(self, rows: Any) -> None:
        if rows and rows[0][0]:
            self.active = True
            self._waiting_logged = False
            _log.info("advisory lock {key} taken: this login server is active", key=self.key)
            try:
                self.activate()
            except Exception:  # noqa: BLE001 - keep the lock loop alive
                _log.failure("activating failed")
            self._schedule(self.check)
            return
        if not self._waiting_logged:
            _log.info("another login server holds the lock: standing by")
            self._waiting_logged = True
        self._schedule(self.poll)

    def _checked(self, rows: Any) -> None:
        self._schedule(self.check)

    def _lost(self, conn: Any, failure: Failure) -> None:
        if conn is not self._conn:
            return  # an old connection
        self._close()
        if self.active:
            self.active = False
            _log.warn("database session holding the lock ended ({error}): stepping down",
                      error=failure.getErrorMessage().strip())
            try:
                self.deactivate(failure.getErrorMessage().strip())
            except Exception:  # noqa: BLE001
                _log.failure("stepping down failed")
        else:
            _log.debug("lock connection failed: {error}", error=failure.getErrorMessage())
        self._schedule(self.poll)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.on_lost = None
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - half-open; nothing to keep
            pass
