"""PostgreSQL's CPU per stored position on the gateway's write path (issue 15: 20,000
positions/s acknowledged after commit, PostgreSQL on the same 2-core machine).

A private PostgreSQL cluster (removed at the end, whatever happens; fsync on, synchronous
commit: as production) upgraded to the current schema, with today's day partitions
(``cmsv6_position_maintain``), ``--devices`` devices and every device's last position
already there (``--warm`` rounds written first). Then rounds of every device reporting once
(times 1 s apart from one round to the next, bench/loadgen.py's extras), cut into batches of
``--batch`` rows (devices shuffled, each once per batch), each batch one query on one
autocommit connection, as the gateway's writer threads send it.

Each variant of the batch's statement writes whole rounds, the variants taking turns
(interleaved, ``--reps`` times) so that a checkpoint or an autovacuum falls on all of them
alike. Measured per round: the CPU of every process of the cluster (the run time in
/proc/<pid>/schedstat of the postmaster and its children - backends, WAL writer,
checkpointer, background writer, autovacuum - plus the postmaster's reaped children's
utime + stime), divided by the rows stored; the wall time per batch (client side: send,
run, commit, answer); and this process's CPU making the batch (elements, statement,
argument: the gateway's share). The baseline is the statement as it was before this bench
(``BASELINE``), ``current`` is ``cmsv6.db.positions.batch_sql`` as it is in this tree; the
others are what was tried besides (``VARIANTS``), kept to be measured again.

    .venv/bin/python bench/positions_write.py --reps 5 --batch 200 500 2000
    .venv/bin/python bench/positions_write.py --explain --batch 2000   # and EXPLAIN ANALYZE
    .venv/bin/python bench/positions_write.py --variants baseline current --fillfactor 70
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmsv6.db import positions  # noqa: E402
from cmsv6.db.embedded import EmbeddedPostgres  # noqa: E402
from cmsv6.db.upgrade import upgrade  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")

#: The batch's statement before this bench (commit 82e8188): the rows as one JSON array of
#: arrays, each field read with ->> (the json parsed again for each), the extras cast to
#: jsonb twice, last_positions folded in with an upsert.
BASELINE = """
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


def baseline_element(
    device_id: int, time: float, received: float, latitude: float, longitude: float,
    altitude: int, speed: float, direction: int, alarm: int, status: int, extras: str | None,
    blind: bool | None, digest: bytes | None,
) -> str:  # fmt: skip
    """A row as ``BASELINE`` reads it: ``positions.prepare``'s element before this bench."""
    return (
        f"[{device_id:d},{float(time)!r},{float(received)!r},{float(latitude)!r},"
        f"{float(longitude)!r},{altitude:d},{float(speed)!r},{direction:d},{alarm:d},"
        f"{status:d},{'null' if extras is None else extras},"
        f"{'null' if blind is None else 'true' if blind else 'false'},"
        f"{'null' if digest is None else chr(34) + digest.hex() + chr(34)}]"
    )  # fmt: skip


def object_element(
    device_id: int, time: float, received: float, latitude: float, longitude: float,
    altitude: int, speed: float, direction: int, alarm: int, status: int, extras: str | None,
    blind: bool | None, digest: bytes | None,
) -> str:  # fmt: skip
    """A row as a JSON object (for json_to_recordset)."""
    return (
        f'{{"d":{device_id:d},"t":{float(time)!r},"r":{float(received)!r},'
        f'"la":{float(latitude)!r},"lo":{float(longitude)!r},"al":{altitude:d},'
        f'"s":{float(speed)!r},"di":{direction:d},"a":{alarm:d},"st":{status:d},'
        f'"e":{"null" if extras is None else extras},'
        f'"b":{"null" if blind is None else "true" if blind else "false"},'
        f'"g":{"null" if digest is None else chr(34) + digest.hex() + chr(34)}}}'
    )  # fmt: skip


def _array(elements: list[str]) -> str:
    return "[" + ",".join(elements) + "]"


def _prepared(*raw: Any) -> str:
    return positions.prepare(*raw)[1]


def _current(elements: list[str]) -> tuple[str, tuple[Any, ...]]:
    # The tree's own batch from its own prepared rows (the month part is not read).
    return positions.batch_sql([((0, 0), e) for e in elements], [])  # type: ignore[misc]


_LAST = """
INSERT INTO last_positions AS p (device_id, time, received, latitude, longitude, altitude,
                                 speed, direction, alarm, status, extras)
SELECT DISTINCT ON (d) d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, {e}
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

_STORE = """, stored AS (
    INSERT INTO positions (device_id, time, received, latitude, longitude, altitude, speed,
                           direction, alarm, status, extras, blind, digest)
    SELECT d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, {e}, b,
           decode(g, 'hex')
    FROM x
    ON CONFLICT DO NOTHING
)"""

#: jsonb_array_elements: the array parsed once into jsonb; ->> then finds an element
#: without parsing again; the extras taken as jsonb, not text cast back (what ``current``
#: is since this bench: the base of the variants below).
JSONB = """
WITH x AS (
    SELECT (v->>0)::bigint AS d, (v->>1)::float8 AS t, (v->>2)::float8 AS r,
           (v->>3)::float8 AS la, (v->>4)::float8 AS lo, (v->>5)::int AS al,
           (v->>6)::real AS s, (v->>7)::smallint AS di, (v->>8)::bigint AS a,
           (v->>9)::bigint AS st, nullif(v->10, 'null') AS e, (v->>11)::bool AS b,
           v->>12 AS g
    FROM jsonb_array_elements(%s::jsonb) AS v
)""" + _STORE.format(e="e") + _LAST.format(e="e")

#: JSONB, and last_positions by an UPDATE of the devices that have one (every device but a
#: new one: no speculative insertion, no row lock of its own, no look-up in devices: a row
#: of last_positions has its device), then the upsert for the others only.
JSONB_UPDATE = JSONB[: JSONB.index("INSERT INTO last_positions")] + """, newest AS (
    SELECT DISTINCT ON (d) * FROM x ORDER BY d, t DESC
), updated AS (
    UPDATE last_positions AS p SET
        time = to_timestamp(n.t), received = to_timestamp(n.r), latitude = n.la,
        longitude = n.lo, altitude = n.al, speed = n.s, direction = n.di, alarm = n.a,
        status = n.st, extras = n.e
    FROM newest AS n
    WHERE p.device_id = n.d AND p.time <= to_timestamp(n.t)
    RETURNING p.device_id
)
INSERT INTO last_positions AS p (device_id, time, received, latitude, longitude, altitude,
                                 speed, direction, alarm, status, extras)
SELECT d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, e
FROM newest
WHERE d NOT IN (SELECT device_id FROM updated) AND d IN (SELECT id FROM devices)
ON CONFLICT (device_id) DO UPDATE SET
    time = EXCLUDED.time, received = EXCLUDED.received, latitude = EXCLUDED.latitude,
    longitude = EXCLUDED.longitude, altitude = EXCLUDED.altitude, speed = EXCLUDED.speed,
    direction = EXCLUDED.direction, alarm = EXCLUDED.alarm, status = EXCLUDED.status,
    extras = EXCLUDED.extras
WHERE EXCLUDED.time >= p.time
"""

#: JSONB inside a plpgsql function (made by this bench, ``FUNCTION``): the statement parsed,
#: analysed and planned once per connection (plpgsql keeps its plan), not once per batch;
#: the batch's query is only the call and its argument.
FUNCTION = """
CREATE FUNCTION bench_write_positions(rows jsonb) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
""" + JSONB.replace("%s::jsonb", "rows") + """;
END
$f$
"""

#: json_to_recordset: each object parsed once, straight into typed columns.
RECORDSET = """
WITH x AS (
    SELECT * FROM json_to_recordset(%s::json) AS v(d bigint, t float8, r float8, la float8,
        lo float8, al int, s real, di smallint, a bigint, st bigint, e jsonb, b bool, g text)
)""" + _STORE.format(e="e") + _LAST.format(e="e")

#: The baseline with the extras cast to jsonb once (in x).
ONCE = BASELINE.replace("v->>10 AS e", "(v->>10)::jsonb AS e").replace("e::jsonb", "e")

#: Diagnostic only (last_positions left out: not the same semantics): what the positions
#: alone cost.
NO_LAST = BASELINE[: BASELINE.index("), stored AS (")] + """)
INSERT INTO positions (device_id, time, received, latitude, longitude, altitude, speed,
                       direction, alarm, status, extras, blind, digest)
SELECT d, to_timestamp(t), to_timestamp(r), la, lo, al, s, di, a, st, e::jsonb, b,
       decode(g, 'hex')
FROM x
ON CONFLICT DO NOTHING
"""


def _variant(sql: str) -> Callable[[list[str]], tuple[str, tuple[Any, ...]]]:
    return lambda elements: (sql, (_array(elements),))


#: (a row's element from prepare's 13 arguments, the batch's statement and arguments).
Variant = tuple[Callable[..., str], Callable[[list[str]], tuple[str, tuple[Any, ...]]]]

VARIANTS: dict[str, Variant] = {
    "baseline": (baseline_element, _variant(BASELINE)),
    "current": (_prepared, _current),
    "extras-once": (baseline_element, _variant(ONCE)),
    "jsonb+update": (baseline_element, _variant(JSONB_UPDATE)),
    "plpgsql": (baseline_element, _variant("SELECT bench_write_positions(%s::jsonb)")),
    "recordset": (object_element, _variant(RECORDSET)),
    "no-last (diagnostic)": (baseline_element, _variant(NO_LAST)),
}


# -- the cluster's CPU ---------------------------------------------------------------------


def cluster_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster and its children alive now (their run time in ns from
    /proc/<pid>/schedstat: finer than utime + stime's clock ticks), plus the children it
    has reaped (cutime + cstime of the postmaster: autovacuum workers come and go)."""
    total = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            pid, ppid = int(name), int(fields[1])
            if pid != postmaster and ppid != postmaster:
                continue
            with open(f"/proc/{name}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        if pid == postmaster:
            total += (int(fields[13]) + int(fields[14])) / _TICK  # cutime cstime
    return total


# -- the fleet -----------------------------------------------------------------------------

_EXTRAS = '{{"0x01":{n},"0x30":25,"0x31":12}}'


Raw = tuple[Any, ...]


def round_rows(ids: list[int], start: float, n: int, rng: random.Random) -> list[Raw]:
    """Round ``n``: every device once, at ``start + n`` (+ its stagger), shuffled: the
    arguments of ``positions.prepare``."""
    rows = []
    for i, d in enumerate(ids):
        t = start + n + (i % 1000) / 1000.0
        rows.append((
            d, t, t + 0.4, 22.5 + (d % 97) * 0.01 + n * 1e-5, 114.0 + (d % 89) * 0.01 - n * 1e-5,
            20, 40.0, 90, 0, 3, _EXTRAS.format(n=n), False,
            d.to_bytes(8, "big") + int(t * 1000).to_bytes(8, "big"),
        ))  # fmt: skip
    rng.shuffle(rows)
    return rows


def write_round(
    cur: Any, variant: Variant, rows: list[Raw], size: int
) -> tuple[list[float], float]:
    """Write a round in batches of ``size``: the wall seconds of each batch, and the CPU
    seconds this process spent making the batches (elements, statement, argument)."""
    element, batch = variant
    walls = []
    python = 0.0
    for i in range(0, len(rows), size):
        began = time.process_time()
        sql, args = batch([element(*r) for r in rows[i:i + size]])
        python += time.process_time() - began
        began = time.perf_counter()
        cur.execute(sql, args)
        walls.append(time.perf_counter() - began)
    return walls, python


def explain(cur: Any, variant: Variant, rows: list[Raw]) -> str:
    element, batch = variant
    sql, args = batch([element(*r) for r in rows])
    out = []
    cur.execute("BEGIN")
    for statement in sql.split(";\n"):
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + statement, args)
        out += [r[0] for r in cur.fetchall()]
    cur.execute("ROLLBACK")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=19000)
    p.add_argument("--batch", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--reps", type=int, default=5, help="rounds per variant and batch size")
    p.add_argument("--warm", type=int, default=3, help="rounds written before measuring")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--explain", action="store_true")
    p.add_argument("--fillfactor", type=int, default=None,
                   help="set last_positions' fillfactor (and rewrite it) before measuring")
    p.add_argument("--dir", default=None)
    a = p.parse_args()
    for name in a.variants:
        if name not in VARIANTS:
            p.error(f"no variant {name!r}; there are {', '.join(VARIANTS)}")

    directory = tempfile.mkdtemp(prefix="cmsv6-pwrite-", dir=a.dir)
    cluster = EmbeddedPostgres(directory)
    try:
        cluster.init()
        cluster.start()
        dsn = cluster.create_database("bench")
        upgrade(dsn)
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SHOW fsync")
        fsync = cur.fetchone()[0]
        cur.execute("SHOW synchronous_commit")
        sync = cur.fetchone()[0]
        cur.execute("SELECT * FROM cmsv6_position_maintain(now(), 2, 0)")
        cur.execute("INSERT INTO devices (phone) SELECT lpad(g::text, 12, '0')"
                    " FROM generate_series(1, %s) g RETURNING id", (a.devices,))  # fmt: skip
        ids = sorted(r[0] for r in cur.fetchall())
        cur.execute(FUNCTION)
        now = datetime.now(timezone.utc)
        start = datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp()
        rng = random.Random(1)
        n = 0
        for _ in range(a.warm):
            write_round(cur, VARIANTS["current"], round_rows(ids, start, n, rng), 2000)
            n += 1
        if a.fillfactor:
            cur.execute(f"ALTER TABLE last_positions SET (fillfactor = {a.fillfactor:d})")
            cur.execute("VACUUM FULL last_positions")
        cur.execute("VACUUM ANALYZE")
        cur.execute("CHECKPOINT")
        postmaster = cluster.pid
        assert postmaster is not None
        load = os.getloadavg()
        print(f"# bench/positions_write.py · {datetime.now():%Y-%m-%d %H:%M}"
              f" · {os.cpu_count()} cores"
              f" · load average {load[0]:.2f} · fsync {fsync}, synchronous_commit {sync}")
        print(f"# {a.devices} devices, last_positions warm ({a.warm} rounds), each round every"
              f" device once; {a.reps} rounds per variant and batch size, interleaved")
        if a.explain:
            for name in a.variants:
                for size in a.batch:
                    rows = round_rows(ids, start, n, rng)[:size]
                    print(f"\n## EXPLAIN {name}, {size} rows\n"
                          + explain(cur, VARIANTS[name], rows))
                    n += 1
        for size in a.batch:
            cpu: dict[str, list[float]] = {name: [] for name in a.variants}
            wall: dict[str, list[float]] = {name: [] for name in a.variants}
            python: dict[str, list[float]] = {name: [] for name in a.variants}
            for rep in range(a.reps):
                order = a.variants if rep % 2 == 0 else a.variants[::-1]
                for name in order:
                    rows = round_rows(ids, start, n, rng)
                    n += 1
                    cur.execute("SELECT count(*) FROM positions")
                    before_rows = cur.fetchone()[0]
                    before = cluster_cpu(postmaster)
                    walls, spent = write_round(cur, VARIANTS[name], rows, size)
                    used = cluster_cpu(postmaster) - before
                    wall[name] += walls
                    python[name].append(spent / len(rows) * 1e6)
                    cur.execute("SELECT count(*) FROM positions")
                    stored = cur.fetchone()[0] - before_rows
                    assert stored == len(rows), (name, stored, len(rows))
                    cpu[name].append(used / stored * 1e6)
            base = statistics.median(cpu[a.variants[0]])
            print(f"\nbatch of {size} rows: PostgreSQL's CPU per stored row, wall per batch")
            for name in a.variants:
                med = statistics.median(cpu[name])
                print(f"  {name:<22} CPU median {med:5.1f} µs (min {min(cpu[name]):5.1f},"
                      f" max {max(cpu[name]):5.1f}; {med / base - 1:+4.0%})  wall median"
                      f" {statistics.median(wall[name]) * 1e3:6.1f} ms  ·  client's Python"
                      f" {statistics.median(python[name]):4.1f} µs/row")
        cur.execute("SELECT n_tup_upd, n_tup_hot_upd, pg_relation_size('last_positions') / 8192"
                    " FROM pg_stat_user_tables WHERE relname = 'last_positions'")
        upd, hot, pages = cur.fetchone()
        print(f"\nlast_positions: {upd:,} updates, {hot:,} HOT ({hot / max(upd, 1):.0%}),"
              f" {pages} pages")
        return 0
    finally:
        try:
            cluster.destroy()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
