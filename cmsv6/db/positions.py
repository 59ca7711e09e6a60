"""Positions and each device's last position: the gateway's write path and the queries
of the Open API and the client WebSocket.

A batch is written in one transaction: the positions (one INSERT over a JSON array,
duplicates of an already stored report ignored), each device's last position, and the
alarms that opened or closed (``alarms.change_statements``). The gateway acknowledges the
reports only after that transaction commits.

The gateway hands the writer ``Prepared`` rows (``prepare``): each report already as its
element of that JSON array, and the month it falls in, so that a batch is one join of
strings; a ``Position`` is taken too (``prepare_position``) and written the same way.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Union

import psycopg2
from attrs import frozen
from twisted.internet import defer

from cmsv6.db.alarms import AlarmChange, AlarmReset, change_statements
from cmsv6.db.service import Database


@frozen
class Position:
    """A position report of a device.

    ``extras`` is the additional items as JSON text (keys "0x01"…), as the gateway makes
    it and PostgreSQL's jsonb takes it. A device's last position has no ``blind`` (whether
    it came in a blind-area batch) nor ``digest`` (what identifies the report)."""

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
    extras: str | None
    blind: bool | None = None
    digest: bytes | None = None


def month_of(t: datetime) -> tuple[int, int]:
    t = t.astimezone(timezone.utc)
    return t.year, t.month


#: A row ready for the batch: (its month (UTC year, month: its partition), its element of
#: the batch's JSON array as text).
Prepared = tuple[tuple[int, int], str]
Row = Union[Position, Prepared]

#: The month last asked for: [start, end) in epoch seconds, (year, month). Reports come
#: in the current month, so one entry answers nearly all.
_month = (0.0, 0.0, (1970, 1))


def month_at(epoch: float) -> tuple[int, int]:
    """The UTC (year, month) of an epoch time (``month_of`` without a datetime)."""
    global _month
    start, end, month = _month
    if start <= epoch < end:
        return month
    t = datetime.fromtimestamp(epoch, timezone.utc)
    first = datetime(t.year, t.month, 1, tzinfo=timezone.utc)
    after = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=timezone.utc)
    _month = (first.timestamp(), after.timestamp(), (t.year, t.month))
    return t.year, t.month


def prepare(
    device_id: int, time: float, received: float, latitude: float, longitude: float,
    altitude: int, speed: float, direction: int, alarm: int, status: int, extras: str | None,
    blind: bool | None, digest: bytes | None,
) -> Prepared:  # fmt: skip
    """A report as the batch takes it (times in epoch seconds; ``extras`` JSON text, put in
    the array as it is: ``->>`` reads an object's text as it reads a string's)."""
    digest_text = "null" if digest is None else f'"{digest.hex()}"'
    # The integers as {x}, not {x:d}: the same digits, by int's fast path (a format spec
    # takes the slow one: ~4,000 instructions a report). They are the decoder's ints.
    return month_at(time), (
        f"[{device_id},{float(time)!r},{float(received)!r},{float(latitude)!r},"
        f"{float(longitude)!r},{altitude},{float(speed)!r},{direction},{alarm},"
        f"{status},{'null' if extras is None else extras},"
        f"{'null' if blind is None else 'true' if blind else 'false'},{digest_text}]"
    )  # fmt: skip


def prepare_position(r: Position) -> Prepared:
    return prepare(
        r.device_id, r.time.timestamp(), r.received.timestamp(), r.latitude, r.longitude,
        r.altitude, r.speed, r.direction, r.alarm, r.status, r.extras, r.blind, r.digest,
    )  # fmt: skip


@defer.inlineCallbacks
def ensure_partitions(db: Database, months: Iterable[tuple[int, int]]) -> Any:
    """Create the monthly partitions (idempotent; a concurrent creator is fine).

    Through ``cmsv6_position_partition`` (schema step 4), which runs with the schema
    owner's rights: the servers' role owns nothing and may not create tables itself. Since
    step 8 that function only checks its arguments (day partitions are made ahead by
    maintenance, and positions_default takes the rest), and the gateway's writer no longer
    calls it; what is left here is for tests/web/support.py, until it drops the call."""
    for year, month in sorted(set(months)):
        try:
            yield db.run_operation("SELECT cmsv6_position_partition(%s, %s)", (year, month))
        except (psycopg2.errors.DuplicateTable, psycopg2.errors.UniqueViolation):
            pass


#: One statement per batch: the rows come as one JSON array of arrays (cheaper to make in
#: Python than psycopg2's adaptation of 13 arrays), stored in positions (a report already
#: there is ignored) and folded into last_positions.
#:
#: The array is read as jsonb, parsed once: ``->>`` on json parses the element's text again
#: for each of the 13 fields, which was half of PostgreSQL's CPU per stored row; an element
#: of jsonb is found without parsing. The extras are taken as the jsonb they already are
#: (a JSON null is no extras: SQL NULL), not as text cast to jsonb once per table. The
#: numbers go through jsonb's numeric and its text to the column's type: the same value as
#: json's text gives (a float's shortest decimal is exact in numeric), except that a -0.0
#: becomes 0 (equal in every comparison). bench/positions_write.py measures it.
_WRITE = """
WITH x AS (
    SELECT (v->>0)::bigint AS d, (v->>1)::float8 AS t, (v->>2)::float8 AS r,
           (v->>3)::float8 AS la, (v->>4)::float8 AS lo, (v->>5)::int AS al,
           (v->>6)::real AS s, (v->>7)::smallint AS di, (v->>8)::bigint AS a,
           (v->>9)::bigint AS st, nullif(v->10, 'null') AS e, (v->>11)::bool AS b,
           v->>12 AS g
    FROM jsonb_array_elements(%s::jsonb) AS v
), stored AS (
    INSERT INTO positions (device_id, time, received, latitude, longitude, altitude, speed,
                           direction, alarm, status, extras, blind, digest)
    SELECT d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, e, b,
           decode(g, 'hex')
    FROM x
    ON CONFLICT DO NOTHING
)
INSERT INTO last_positions AS p (device_id, time, received, latitude, longitude, altitude,
                                 speed, direction, alarm, status, extras)
SELECT DISTINCT ON (d) d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, e
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


def rows_json(rows: list[Row]) -> str:
    """The batch's argument: one JSON array, an element per row."""
    return "[" + ",".join(
        r[1] if type(r) is tuple else prepare_position(r)[1] for r in rows  # type: ignore[misc]
    ) + "]"


def batch_sql(
    rows: list[Row], alarms: list[AlarmChange | AlarmReset]
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
    more, more_args = change_statements(alarms)
    statements += more
    args += more_args
    return ";\n".join(statements), tuple(args)


def write(db: Database, rows: list[Row], alarms: list[AlarmChange | AlarmReset]) -> Any:
    """Write one batch in one transaction (on the database's writer threads if it has
    them); fires once it is committed."""
    sql, args = batch_sql(rows, alarms)
    if not sql:
        return defer.succeed(None)
    return db.run_batch(sql, args)


# -- reading -------------------------------------------------------------------------------

#: The columns of ``last_positions lp`` that make a Position (without blind and digest).
LAST_POSITION = (
    "lp.device_id, lp.time, lp.received, lp.latitude, lp.longitude, lp.altitude, lp.speed,"
    " lp.direction, lp.alarm, lp.status, lp.extras::text"
)


#: Sent before ``positions_query``'s statement, in the same transaction. Every device's
#: reports interleave, so one device's day is about one row per heap page: read cold, it
#: is hundreds of random page reads one after the other. With ``effective_io_concurrency``
#: the bitmap heap scan asks the kernel for them ahead, 64 at a time here (PostgreSQL's
#: default is 1; a server set higher keeps its own). bench/positions_scale.py, 11 M rows,
#: cold: p50 47.6 -> 11.7 ms, p99 93 -> 21 ms.
READ_AHEAD = (
    "SELECT set_config('effective_io_concurrency',"
    " greatest(current_setting('effective_io_concurrency')::int, 64)::text, true);\n"
)


def positions_query(
    device_id: int,
    start: datetime,
    end: datetime,
    limit: int,
    after: tuple[datetime, bytes | None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The statement ``positions`` runs and its arguments (bench/positions_scale.py times it).

    psycopg2 sends the times as constants, so the planner keeps only the day partitions
    that [start, end) meets (one for a UTC day) and reads each in the order of its primary
    key (device_id, time, digest): no sort, ``limit`` index entries at most."""
    args: dict[str, Any] = {"dev": device_id, "start": start, "end": end, "limit": limit}
    where = "device_id = %(dev)s AND time >= %(start)s AND time < %(end)s"
    if after is not None:
        args["after"], args["digest"] = after
        if after[1] is None:
            where += " AND time > %(after)s"
        else:
            where += " AND (time, digest) > (%(after)s, %(digest)s)"
    return (
        "SELECT device_id, time, received, latitude, longitude, altitude, speed, direction,"
        f" alarm, status, extras::text, blind, digest FROM positions WHERE {where}"
        " ORDER BY time, digest LIMIT %(limit)s",
        args,
    )


@defer.inlineCallbacks
def positions(
    db: Database,
    device_id: int,
    start: datetime,
    end: datetime,
    limit: int,
    after: tuple[datetime, bytes | None] | None = None,
) -> Any:
    """Positions of a device with ``start <= time < end``, oldest first, at most ``limit``;
    with ``after`` = (time, digest) only those after that one (digest None: after that time)."""
    sql, args = positions_query(device_id, start, end, limit, after)
    rows = yield db.run_query(READ_AHEAD + sql, args)
    return [Position(*r[:12], bytes(r[12])) for r in rows]


@defer.inlineCallbacks
def changed_positions(db: Database, sent: dict[int, datetime | None]) -> Any:
    """[(device id, phone, Position)] of the devices in ``sent`` whose last position is not
    the one last sent (``received`` differs: each device's rows come from one gateway's
    clock, so this needs no agreement between clocks): the client WebSocket's poll."""
    if not sent:
        return []
    ids = list(sent)
    rows = yield db.run_query(
        f"SELECT d.phone, {LAST_POSITION}"
        " FROM unnest(%s::bigint[], %s::timestamptz[]) AS s(id, sent)"
        " JOIN last_positions lp ON lp.device_id = s.id"
        " JOIN devices d ON d.id = s.id"
        " WHERE lp.received IS DISTINCT FROM s.sent",
        (ids, [sent[i] for i in ids]),
    )
    return [(r[1], r[0], Position(*r[1:])) for r in rows]
