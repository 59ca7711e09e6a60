"""The service that owns every database connection of a server.

- a txpostgres pool for the queries of the store modules (``run_query``, ``run_operation``,
  ``run_interaction``);
- optionally (``writer_threads``), threads with a blocking psycopg2 connection each, for
  the position writer's batches (``run_batch``);
- ``lookup_threads`` more, with connections of their own, for registration and
  authentication (``run_lookup``): a burst of position writes never queues them, and each
  is one trip to a thread and back, not a turn of a busy reactor per statement;
- the cache of known devices' auth codes (``auth_cache``, a ``DeviceCache``), trusted only
  while a session of its own listens for the store's invalidations (``NOTIFY
  cmsv6_devices``, sent by every change of a device's code, state or identity);
- dedicated sessions for advisory locks (``lock_session``: login's hot standby).

It retries its own start (``MultiService.startService`` ignores children's Deferreds, so a
database that is down at start must not fail silently), and every connection reconnects by
itself when the database goes away, through the DSN's hosts in order: with a multi-host DSN
and ``target_session_attrs=read-write`` that is how a promoted standby is found.
"""

from __future__ import annotations

import select
import socket
import threading
from collections import OrderedDict
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


class AdminError(Exception):
    """An administration command's input is refused (a bad phone, a short password...)."""


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
    """``run_query`` / ``run_operation`` / ``run_interaction`` over a small pool,
    ``run_batch`` on ``writer_threads`` blocking connections, and ``lock_session``."""

    def __init__(
        self, dsn: str, reactor: IReactorTime, size: int = 4, writer_threads: int = 0,
        lookup_threads: int = 2, auth_cache: int = 50_000, auth_cache_ttl: float = 3600.0,
    ) -> None:
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
        self.writer_threads = writer_threads
        self._writers = (_BlockingThreads(dsn, reactor, writer_threads, "cmsv6-writer")
                         if writer_threads else None)  # fmt: skip
        #: Registration and authentication, never behind the writer's batches.
        self._lookups = _BlockingThreads(dsn, reactor, max(1, lookup_threads), "cmsv6-lookup",
                                         autocommit=False)  # fmt: skip
        #: Known devices' auth codes (0 entries: no cache).
        self.auth_cache: DeviceCache | None = (
            DeviceCache(reactor, auth_cache, auth_cache_ttl) if auth_cache else None)  # fmt: skip
        self._invalidations = (_Invalidations(dsn, reactor, self.auth_cache)
                               if self.auth_cache is not None else None)  # fmt: skip
        self._lock_hosts = HostRotation(dsn)
        self._lock_sessions: set[Any] = set()

    def startService(self) -> None:  # noqa: N802
        super().startService()
        if self._writers is not None:
            self._writers.start()
        self._lookups.start()
        if self._invalidations is not None:
            self._invalidations.start()
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
        for session in list(self._lock_sessions):
            session.close()
        if self._invalidations is not None:
            self._invalidations.stop()
        if self._writers is not None:
            self._writers.stop()  # waits for the batches being written
        self._lookups.stop()
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

    def run_batch(self, sql: str, args: Any = None) -> defer.Deferred[None]:
        """Several statements sent as one query: one implicit transaction, one round trip;
        fires once committed. On a writer thread when the database has them, else on the
        pool."""
        if self._writers is None:
            return self.run_operation(sql, args)
        return self._writers.run(sql, args)

    def run_lookup(self, work: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """``work(cursor, *args)`` in one transaction on a lookup thread (a blocking
        connection of its own: neither the pool's nor the writer's); fires with what it
        returns, once committed. For registration and authentication: in a reconnect storm
        under full load they go on while the writer's batches queue, and the reactor is
        needed once per lookup (its answer), not once per statement."""
        return self._lookups.call(work, *args)

    def lock_session(self, on_lost: Callable[[Any, Failure], None]) -> Any:
        """A database session of its own (not the pool's) for advisory locks: a lock lives
        as long as the session that took it. ``on_lost(session, reason)`` when it ends."""
        from cmsv6.db.lock import LockSession

        session = LockSession(self.dsn, self._lock_hosts, self.reactor, on_lost,
                              self._lock_sessions.discard)  # fmt: skip
        self._lock_sessions.add(session)
        return session


class _BlockingThreads:
    """Threads with a blocking connection each: the writer's batch writes, and lookups.

    Measured under load (19,000 devices, bench/gateway_load.py): a 2,000-row batch takes
    ~50 ms in PostgreSQL but ~560 ms through the asynchronous connection, because each step
    of a transaction waits for a turn of a reactor busy with thousands of sockets. Here the
    whole batch is one round trip on a thread, and only its completion goes through the
    reactor. libpq follows a multi-host DSN by itself on these blocking connections.
    """

    def __init__(self, dsn: str, reactor: Any, threads: int, name: str,
                 autocommit: bool = True) -> None:  # fmt: skip
        self.dsn = dsn
        self.reactor = reactor
        self.threads = threads
        self.name = name
        self.autocommit = autocommit
        self.pool: Any = None
        self._local = threading.local()
        self._connections: list[Any] = []
        self._guard = threading.Lock()

    def start(self) -> None:
        from twisted.python.threadpool import ThreadPool

        # A new pool per start: a stopped ThreadPool cannot be started again.
        self.pool = ThreadPool(minthreads=self.threads, maxthreads=self.threads,
                               name=self.name)  # fmt: skip
        self.pool.start()

    def stop(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.stop()
        with self._guard:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def run(self, sql: str, args: Any) -> defer.Deferred[None]:
        from twisted.internet.threads import deferToThreadPool

        if self.pool is None:
            return defer.fail(DatabaseUnavailable("not started"))
        return deferToThreadPool(self.reactor, self.pool, self._run, sql, args)

    def _connection(self) -> Any:
        import psycopg2

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg2.connect(self.dsn, connect_timeout=5)
            except psycopg2.OperationalError as e:
                raise DatabaseUnavailable(str(e).strip()) from None
            # Writer: one multi-statement query = one implicit transaction.
            conn.autocommit = self.autocommit
            self._local.conn = conn
            with self._guard:
                self._connections = [c for c in self._connections if not c.closed]
                self._connections.append(conn)
        return conn

    def _run(self, sql: str, args: Any) -> None:
        import psycopg2

        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            conn.close()
            raise DatabaseUnavailable(str(e).strip()) from None


    def call(self, work: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """``work(cursor, *args)`` in a transaction on one of the threads."""
        from twisted.internet.threads import deferToThreadPool

        if self.pool is None:
            return defer.fail(DatabaseUnavailable("not started"))
        return deferToThreadPool(self.reactor, self.pool, self._call, work, args)

    def _call(self, work: Callable[..., Any], args: Any) -> Any:
        import psycopg2

        conn = self._connection()
        try:
            with conn, conn.cursor() as cur:  # commits, or rolls back on an exception
                return work(cur, *args)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            conn.close()
            raise DatabaseUnavailable(str(e).strip()) from None


#: The channel on which the store says a device's auth data changed (payload: its phone).
DEVICES_CHANNEL = "cmsv6_devices"


class DeviceCache:
    """Known devices' auth data by canonical phone, in memory: at most ``max_entries``
    (least recently used first out), each for ``ttl`` seconds after it was read.

    The store puts only what authenticated (never a refusal: an unknown, disabled or
    unregistered device, or a wrong code, always asks the database) and drops an entry on
    every ``NOTIFY cmsv6_devices`` for its phone: ``cmsv6 device disable``, ``remove`` and
    ``reset-auth``, a registration anywhere in the cluster. Notifications are only heard
    while a session listens, so the cache is used only then (``trusted``): when that
    session is lost it is emptied, and filled again from the database once it listens.

    A lookup that raced an invalidation must not put back what was invalidated: ``begin``
    before reading gives a generation, and ``put`` refuses a phone invalidated since (or
    anything, if the listening session was lost since).
    """

    #: Invalidations remembered by phone; past it, older lookups may not put at all.
    RECENT = 10_000

    def __init__(self, clock: IReactorTime, max_entries: int = 50_000,
                 ttl: float = 3600.0) -> None:  # fmt: skip
        self.clock = clock
        self.max_entries = max_entries
        self.ttl = ttl
        #: phone -> (expires at, value), least recently used first.
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.generation = 0
        #: Lookups begun before this generation may not put.
        self._floor = 0
        #: phone -> generation of its last invalidation (the most recent ``RECENT``).
        self._invalidated: OrderedDict[str, int] = OrderedDict()
        self.trusted = False
        #: Invalidations heard (``NOTIFY cmsv6_devices``), for /metrics.
        self.invalidations = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, phone: str) -> Any:
        """The value put for ``phone`` if it is there, fresh and trusted, else None."""
        entry = self._entries.get(phone) if self.trusted else None
        if entry is None or entry[0] <= self.clock.seconds():
            if entry is not None:
                del self._entries[phone]
            self.misses += 1
            return None
        self._entries.move_to_end(phone)
        self.hits += 1
        return entry[1]

    def begin(self) -> int:
        """Before reading what to ``put``: the generation to give it."""
        return self.generation

    def put(self, phone: str, value: Any, since: int) -> bool:
        """Keep ``value`` for ``phone``, read by a lookup begun at generation ``since``;
        False (nothing kept) if it may be stale or the cache is not trusted."""
        if not self.trusted or since < self._floor or self._invalidated.get(phone, -1) > since:
            return False
        self._entries[phone] = (self.clock.seconds() + self.ttl, value)
        self._entries.move_to_end(phone)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, phone: str) -> None:
        """``phone``'s auth data changed: forget it, and refuse what lookups begun before
        read of it."""
        self.generation += 1
        self.invalidations += 1
        self._entries.pop(phone, None)
        self._invalidated[phone] = self.generation
        self._invalidated.move_to_end(phone)
        while len(self._invalidated) > self.RECENT:
            _, generation = self._invalidated.popitem(last=False)
            self._floor = max(self._floor, generation)

    def listening(self) -> None:
        """Invalidations are heard from now on: start afresh (what happened before is
        unknown)."""
        self._reset()
        self.trusted = True

    def lost(self) -> None:
        """Invalidations are no longer heard: stop using and filling the cache."""
        self._reset()
        self.trusted = False

    def _reset(self) -> None:
        self.generation += 1
        self._floor = self.generation
        self._entries.clear()
        self._invalidated.clear()


class _Invalidations:
    """A thread with a blocking session of its own that ``LISTEN``s on ``DEVICES_CHANNEL``
    and hands each phone to the cache on the reactor; reconnects by itself (TCP
    keepalives find a silent network). Its session is the cache's trust: the cache is
    used only while it listens."""

    def __init__(self, dsn: str, reactor: Any, cache: DeviceCache) -> None:
        self.dsn = dsn
        self.reactor = reactor
        self.cache = cache
        self._stop = threading.Event()
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._wake = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="cmsv6-invalidations",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        wake, self._wake = self._wake, None
        if wake is not None:
            wake[1].send(b"x")
        if thread is not None:
            thread.join(5.0)
        if wake is not None:
            wake[0].close()
            wake[1].close()
        self.cache.lost()

    def _run(self) -> None:
        import psycopg2

        wake = self._wake
        assert wake is not None
        delay = 0.2
        while not self._stop.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self.dsn, connect_timeout=5, keepalives=1,
                                        keepalives_idle=10, keepalives_interval=5,
                                        keepalives_count=3)  # fmt: skip
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {DEVICES_CHANNEL}")
                self.reactor.callFromThread(self.cache.listening)
                delay = 0.2
                while not self._stop.is_set():
                    ready, _, _ = select.select([conn, wake[0]], [], [], 30.0)
                    if wake[0] in ready:
                        return
                    conn.poll()
                    if conn.notifies:
                        phones = [n.payload for n in conn.notifies]
                        conn.notifies.clear()
                        self.reactor.callFromThread(self._invalidate, phones)
            except (psycopg2.Error, OSError) as e:
                if not self._stop.is_set():
                    self.reactor.callFromThread(
                        _log.warn, "auth cache: invalidations not heard ({error}); cache off,"
                        " retrying in {delay:.1f} s", error=str(e).strip(), delay=delay)
            finally:
                if conn is not None:
                    conn.close()
                self.reactor.callFromThread(self.cache.lost)
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _invalidate(self, phones: list[str]) -> None:
        for phone in phones:
            self.cache.invalidate(phone)


def _unavailable(failure: Failure) -> Failure:
    """Connection-level failures become DatabaseUnavailable; SQL errors stay as they are."""
    import psycopg2

    if failure.check(
        reconnection.ConnectionDead, psycopg2.OperationalError, psycopg2.InterfaceError,
        txpostgres.RollbackFailed,
    ):  # fmt: skip
        return Failure(DatabaseUnavailable(failure.getErrorMessage().strip()))
    return failure
