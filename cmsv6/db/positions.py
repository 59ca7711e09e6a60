"""Positions, last positions and alarms: the SQL of the gateway's write path.

A batch is written in one transaction: the positions (one INSERT over arrays, duplicates of
an already stored report ignored), each device's last position, and the alarms that opened
or closed. The gateway acknowledges the reports only after that transaction commits.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any, Iterable, NamedTuple

import psycopg2
from attrs import frozen
from twisted.internet import defer

from cmsv6.db.service import Database, DatabaseUnavailable


class PositionRow(NamedTuple):
    """One position to store (a NamedTuple: the write path makes thousands a second)."""

    device_id: int
    time: datetime
    received: datetime
    latitude: float
    longitude: float
    altitude: int
    speed: float
    direction: int
    alarm: int
    status: int
    extras: str | None  # JSON text
    blind: bool
    digest: bytes


@frozen
class AlarmChange:
    """An alarm of ``kind`` opened (``opened=True``) or closed at ``time`` on a device.

    ``instant`` alarms (active-safety events) open and close at once.
    """

    device_id: int
    kind: str
    time: datetime
    opened: bool
    latitude: float | None = None
    longitude: float | None = None
    details: str | None = None  # JSON text
    instant: bool = False


@frozen
class AlarmReset:
    """The first report of a session: close the device's open alarm-bit alarms (kinds
    starting ``bit:``) except those still set, whatever happened while it was away."""

    device_id: int
    time: datetime
    keep: tuple[str, ...]


def month_of(t: datetime) -> tuple[int, int]:
    t = t.astimezone(timezone.utc)
    return t.year, t.month


def _partition_sql(year: int, month: int) -> str:
    nyear, nmonth = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        f"CREATE TABLE IF NOT EXISTS positions_{year:04d}_{month:02d} PARTITION OF positions"
        f" FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00+00')"
        f" TO ('{nyear:04d}-{nmonth:02d}-01 00:00+00')"
    )


@defer.inlineCallbacks
def ensure_partitions(db: Database, months: Iterable[tuple[int, int]]) -> Any:
    """Create the monthly partitions (idempotent; a concurrent creator is fine)."""
    for year, month in sorted(set(months)):
        try:
            yield db.run_operation(_partition_sql(year, month))
        except (psycopg2.errors.DuplicateTable, psycopg2.errors.UniqueViolation):
            pass


#: One statement per batch: the rows come as one JSON array (cheaper to make in Python than
#: psycopg2's adaptation of 13 arrays), stored in positions (a report already there is
#: ignored) and folded into last_positions.
_WRITE = """
WITH x AS (
    SELECT (v->>0)::bigint AS d, (v->>1)::float8 AS t, (v->>2)::float8 AS r,
           (v->>3)::float8 AS la, (v->>4)::float8 AS lo, (v->>5)::int AS al,
           (v->>6)::real AS s, (v->>7)::smallint AS di, (v->>8)::bigint AS a,
           (v->>9)::bigint AS st, v->>10 AS e, (v->>11)::bool AS b, v->>12 AS g
    FROM json_array_elements(%s::json) AS v
), stored AS (
    INSERT INTO positions (device_id, time, received, latitude, longitude, altitude, speed,
                           direction, alarm, status, extras, blind, digest)
    SELECT d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, e::jsonb, b,
           decode(g, 'hex')
    FROM x
    ON CONFLICT DO NOTHING
)
INSERT INTO last_positions AS p (device_id, time, received, latitude, longitude, altitude,
                                 speed, direction, alarm, status, extras)
SELECT DISTINCT ON (d) d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st,
       e::jsonb
FROM x
WHERE d IN (SELECT id FROM devices)
ORDER BY d, t DESC
ON CONFLICT (device_id) DO UPDATE SET
    time = EXCLUDED.time, received = EXCLUDED.received, latitude = EXCLUDED.latitude,
    longitude = EXCLUDED.longitude, altitude = EXCLUDED.altitude, speed = EXCLUDED.speed,
    direction = EXCLUDED.direction, alarm = EXCLUDED.alarm, status = EXCLUDED.status,
    extras = EXCLUDED.extras
WHERE EXCLUDED.time >= p.time
"""


def rows_json(rows: list[PositionRow]) -> str:
    return json.dumps(
        [
            (
                r.device_id, r.time.timestamp(), r.received.timestamp(), r.latitude,
                r.longitude, r.altitude, r.speed, r.direction, r.alarm, r.status, r.extras,
                r.blind, r.digest.hex(),
            )  # fmt: skip
            for r in rows
        ],
        ensure_ascii=False,
    )


_RESET = (
    "UPDATE alarms SET ended = %s WHERE device_id = %s AND ended IS NULL"
    " AND kind LIKE 'bit:%%' AND NOT (kind = ANY(%s::text[]))"
)
_OPEN = (
    "INSERT INTO alarms (device_id, kind, started, ended, latitude, longitude, details)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)"
    " ON CONFLICT (device_id, kind) WHERE ended IS NULL DO NOTHING"
)
_CLOSE = "UPDATE alarms SET ended = %s WHERE device_id = %s AND kind = %s AND ended IS NULL"


def batch_sql(
    rows: list[PositionRow], alarms: list[AlarmChange | AlarmReset]
) -> tuple[str, tuple[Any, ...]]:
    """The whole batch as one query string and its arguments.

    Several statements sent as one query run in one implicit transaction, so the batch is
    atomic and costs one round trip (BEGIN / statements / COMMIT would cost three or more,
    each waiting for a turn of a busy reactor).
    """
    statements: list[str] = []
    args: list[Any] = []
    if rows:
        statements.append(_WRITE)
        args.append(rows_json(rows))
    for change in alarms:
        if isinstance(change, AlarmReset):
            statements.append(_RESET)
            args += [change.time, change.device_id, list(change.keep)]
        elif change.opened:
            statements.append(_OPEN)
            args += [
                change.device_id, change.kind, change.time,
                change.time if change.instant else None,
                change.latitude, change.longitude, change.details,
            ]  # fmt: skip
        else:
            statements.append(_CLOSE)
            args += [change.time, change.device_id, change.kind]
    return ";\n".join(statements), tuple(args)


def write(db: Database, rows: list[PositionRow], alarms: list[AlarmChange | AlarmReset]) -> Any:
    """Write one batch in one transaction; fires once it is committed."""
    sql, args = batch_sql(rows, alarms)
    if not sql:
        return defer.succeed(None)
    return db.run_operation(sql, args)


class ThreadedWriter:
    """Writes batches on threads of their own, each with a blocking connection.

    Measured under load (19,000 devices, bench/gateway_load.py): a 2,000-row batch takes
    ~50 ms in PostgreSQL but ~560 ms through the asynchronous connection, because each step
    of a transaction waits for a turn of a reactor busy with thousands of sockets. Here the
    whole batch is one round trip on a thread, and only its completion goes through the
    reactor. Other queries stay on txpostgres.
    """

    def __init__(self, dsn: str, reactor: Any, threads: int = 3) -> None:
        from twisted.python.threadpool import ThreadPool

        self.dsn = dsn
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=threads, maxthreads=threads, name="cmsv6-writer")
        self._local = threading.local()

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    def write(
        self, db: Any, rows: list[PositionRow], alarms: list[AlarmChange | AlarmReset]
    ) -> Any:
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(self.reactor, self.pool, self._write, rows, alarms)

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg2.connect(self.dsn, connect_timeout=5)
            except psycopg2.OperationalError as e:
                raise DatabaseUnavailable(str(e).strip()) from None
            conn.autocommit = True  # one multi-statement query = one implicit transaction
            self._local.conn = conn
        return conn

    def _write(self, rows: list[PositionRow], alarms: list[AlarmChange | AlarmReset]) -> None:
        sql, args = batch_sql(rows, alarms)
        if not sql:
            return
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
            conn.close()
            raise DatabaseUnavailable(str(e).strip()) from None
