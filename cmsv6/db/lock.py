"""Advisory locks on a session of their own: the SQL of login's hot standby.

An advisory lock lives as long as the database session that took it, so the lock is held
on a dedicated connection (not the pool's, which may reconnect under it): when that
session ends (the server killed, the host down, the backend terminated) the lock is free
for another server, and the session says so through ``on_lost``.

Queries here are never cancelled (psycopg2's cancel opens a blocking connection); the
caller abandons a query past its deadline together with its session (``close``).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer, error
from twisted.python.failure import Failure

from cmsv6.db.service import HostRotation, RotatingConnection

#: The advisory lock key of the active login server ("cmsv6log" as a bigint).
LOGIN_LOCK = int.from_bytes(b"cmsv6log", "big")


class _Connection(RotatingConnection):
    """A connection that says when its socket goes away (the session has ended)."""

    def __init__(self, reactor: Any, on_lost: Callable[[Failure], None]) -> None:
        super().__init__(reactor=reactor)
        self.on_lost: Callable[[Failure], None] | None = on_lost

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
                on_lost(reason)


class LockSession:
    """One database session for advisory locks (made by ``Database.lock_session``)."""

    def __init__(
        self,
        dsn: str,
        hosts: HostRotation,
        reactor: Any,
        on_lost: Callable[[LockSession, Failure], None],
        on_close: Callable[[LockSession], None],
    ) -> None:
        self.dsn = dsn
        self._on_lost = on_lost
        self._on_close = on_close
        self._conn = _Connection(reactor, self._lost)
        # Each new session tries the next host of a multi-host DSN: a standby refuses a
        # read-write session and the primary is found.
        self._conn.hosts = hosts

    def connect(self) -> defer.Deferred[Any]:
        return self._conn.connect(self.dsn)  # type: ignore[no-any-return]

    def try_lock(self, key: int) -> defer.Deferred[bool]:
        """True if this session now holds lock ``key`` (it may hold it already)."""
        d = self._conn.runQuery("SELECT pg_try_advisory_lock(%s)", (key,))
        return d.addCallback(lambda rows: bool(rows and rows[0][0]))  # type: ignore[no-any-return]

    def check(self) -> defer.Deferred[Any]:
        """A round trip: fires if the session is still there."""
        return self._conn.runQuery("SELECT 1")  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the session (and every lock it holds) without calling ``on_lost``."""
        self._conn.on_lost = None
        self._on_close(self)
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - half-open; nothing to keep
            pass

    def _lost(self, reason: Failure) -> None:
        self._on_close(self)
        self._on_lost(self, reason)
