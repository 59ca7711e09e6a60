"""The service that owns the database connections (txpostgres).

It retries its own start (``MultiService.startService`` ignores children's Deferreds, so a
database that is down at start must not fail silently), and every connection reconnects by
itself when the database goes away, through the DSN's hosts in order: with a multi-host DSN
and ``target_session_attrs=read-write`` that is how a promoted standby is found.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import reconnection, retrying, txpostgres

_log = Logger()


class DatabaseUnavailable(Exception):
    """The database cannot be reached now; try again later."""


def _is_dead(failure: Failure) -> bool:
    """txpostgres's default checker knows psycopg2's errors only; when the server dies the
    reactor hands the connection Twisted's ConnectionLost, which must count too, or the
    next query waits forever on a dead socket."""
    import psycopg2

    return bool(
        failure.check(
            psycopg2.InterfaceError, psycopg2.OperationalError, txpostgres.RollbackFailed,
            error.ConnectionLost, error.ConnectionDone,
        )  # fmt: skip
    )


def _fast_reconnects() -> Any:
    return retrying.simpleBackoffIterator(
        initialDelay=0.2, maxDelay=2.0, factor=2.0, maxRetries=0, now=True
    )


def single_host_dsns(dsn: str) -> list[str]:
    """One DSN per host of a multi-host DSN (``host=a,b port=1,2``), other keys kept."""
    from psycopg2.extensions import make_dsn, parse_dsn

    params = parse_dsn(dsn)
    hosts = params.get("host", "").split(",")
    if len(hosts) < 2:
        return [dsn]
    ports = params.get("port", "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    out = []
    for host, port in zip(hosts, ports):
        one = dict(params, host=host)
        if port:
            one["port"] = port
        out.append(make_dsn(**one))
    return out


class HostRotation:
    """Asynchronous connections cannot follow libpq from one host of a multi-host DSN to
    the next (libpq opens a new socket under txpostgres, which keeps polling the old one).
    So each connection attempt tries one host, and the next attempt the next host; with
    ``target_session_attrs=read-write`` a standby refuses and the primary is found."""

    def __init__(self, dsn: str) -> None:
        self.dsns = single_host_dsns(dsn)
        self._next = 0

    def next(self) -> str:
        dsn = self.dsns[self._next % len(self.dsns)]
        self._next += 1
        return dsn


class RotatingConnection(txpostgres.Connection):  # type: ignore[misc]
    """A txpostgres connection whose every (re)connect goes to the next host."""

    hosts: HostRotation | None = None

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.hosts is not None and args:
            args = (self.hosts.next(), *args[1:])
        return super().connect(*args, **kwargs)


class _Pool(txpostgres.ConnectionPool):  # type: ignore[misc]
    def connectionFactory(self, reactor: Any, cooperator: Any) -> txpostgres.Connection:  # noqa: N802
        detector = reconnection.DeadConnectionDetector(
            deathChecker=_is_dead, reconnectionIterator=_fast_reconnects, reactor=reactor
        )
        return RotatingConnection(reactor, cooperator, detector=detector)


class Database(Service):
    """``run_query`` / ``run_operation`` / ``run_interaction`` over a small pool."""

    def __init__(self, dsn: str, reactor: IReactorTime, size: int = 4) -> None:
        self.dsn = dsn
        self.reactor = reactor
        self.size = size
        self.name = "database"
        self._pool: _Pool | None = None
        self._waiting: list[defer.Deferred[None]] = []
        self._retry: Any = None
        self._delay = 0.5
        self.connected = False
        self._rotations = [HostRotation(dsn) for _ in range(size)]

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        pool = _Pool(None, self.dsn, min=self.size)
        pool.reactor = self.reactor
        # One rotation per connection slot, kept across pool restarts: a start that failed
        # on one host goes on to the next.
        for conn, hosts in zip(pool.connections, self._rotations):
            conn.hosts = hosts
        d = pool.start()
        d.addCallbacks(self._started, self._failed, callbackArgs=(pool,), errbackArgs=(pool,))

    def _started(self, _: object, pool: _Pool) -> None:
        if not self.running:
            pool.close()
            return
        self._pool = pool
        self.connected = True
        self._delay = 0.5
        _log.info("database connected ({size} connections)", size=self.size)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _failed(self, failure: Failure, pool: _Pool) -> None:
        for conn in pool.connections:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a half-open connection; nothing to keep
                pass
        if not self.running:
            return
        _log.warn(
            "database not reachable ({error}); retrying in {delay:.1f} s",
            error=failure.getErrorMessage().strip(),
            delay=self._delay,
        )
        self._retry = self.reactor.callLater(self._delay, self._connect)
        self._delay = min(self._delay * 2, 5.0)

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        pool, self._pool = self._pool, None
        self.connected = False
        for d in self._waiting:
            d.errback(DatabaseUnavailable("stopped"))
        self._waiting = []
        if pool is not None:
            # A detector takes the close for a lost connection and reconnects: detach them
            # first, or a stopped service keeps (and leaks) connections.
            for conn in pool.connections:
                conn.detector = None
            return pool.close()
        return None

    def ready(self) -> defer.Deferred[None]:
        """Fires once the pool has connected."""
        if self._pool is not None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d

    def _call(self, method: str, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        if self._pool is None:
            return defer.fail(DatabaseUnavailable("not connected"))
        return defer.maybeDeferred(getattr(self._pool, method), *args, **kwargs).addErrback(
            _unavailable
        )

    def run_query(self, sql: str, args: Any = None) -> defer.Deferred[list[tuple[Any, ...]]]:
        return self._call("runQuery", sql, args)

    def run_operation(self, sql: str, args: Any = None) -> defer.Deferred[None]:
        return self._call("runOperation", sql, args)

    def run_interaction(
        self, interaction: Callable[..., defer.Deferred[Any]], *args: Any
    ) -> defer.Deferred[Any]:
        """``interaction(cursor, *args)`` in one transaction (committed when it fires)."""
        return self._call("runInteraction", interaction, *args)


def _unavailable(failure: Failure) -> Failure:
    """Connection-level failures become DatabaseUnavailable; SQL errors stay as they are."""
    import psycopg2

    if failure.check(
        reconnection.ConnectionDead, psycopg2.OperationalError, psycopg2.InterfaceError,
        txpostgres.RollbackFailed,
    ):  # fmt: skip
        return Failure(DatabaseUnavailable(failure.getErrorMessage().strip()))
    return failure
