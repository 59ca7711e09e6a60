"""Hot standby: the active login server is the one holding a PostgreSQL advisory lock.

Two login servers share one database. Each keeps a session of its own for the lock
(``Database.lock_session``; the SQL is in ``cmsv6.db.lock``) and polls for the lock; the
one that gets it is active and serves, the other keeps polling. The lock lives as long as
the session that took it: when the active server dies (kill -9, host down) PostgreSQL ends
its session and the standby's next poll gets the lock. The active server watches its own
session (the socket closing, and a periodic check with a deadline) and steps down at once
when it ends, because from then on the other server may take the lock.

This module is the policy (poll, check, deadlines, step down, events); a query past its
deadline is abandoned with its session.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.db.lock import LOGIN_LOCK, LockSession
from cmsv6.db.service import Database

_log = Logger()


class ActiveLock(Service):
    """Calls ``activate()`` when this server gets the lock and ``deactivate(reason)`` when
    it loses it (or stops)."""

    name = "active-lock"

    def __init__(
        self,
        db: Database,
        clock: IReactorTime,
        activate: Callable[[], None],
        deactivate: Callable[[str], None],
        key: int = LOGIN_LOCK,
        poll: float = 0.25,
        check: float = 1.0,
        deadline: float = 3.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.activate = activate
        self.deactivate = deactivate
        self.key = key
        self.poll = poll
        self.check = check
        self.deadline = deadline
        self.active = False
        self._conn: LockSession | None = None
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
            self._bounded(self._conn, self._conn.check(), self._checked, "check")
        else:
            self._bounded(self._conn, self._conn.try_lock(self.key), self._tried, "try lock")

    def _connect(self) -> None:
        conn = self.db.lock_session(self._lost)
        self._conn = conn
        self._bounded(conn, conn.connect(), lambda _: self._step(), "connect")

    def _bounded(self, conn: LockSession, d: Any, then: Callable[[Any], None], what: str) -> None:
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

    def _tried(self, taken: bool) -> None:
        if taken:
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
        if conn is not None:
            conn.close()
