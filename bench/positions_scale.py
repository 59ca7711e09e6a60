"""Positions at scale: GET /api/v1/devices/{phone}/positions for one device and one day, with
100 million rows in the day-partitioned table (issue 15, item 5; target under 50 ms).

In a private PostgreSQL cluster (removed at the end, whatever happens) upgraded to the
current schema: ``--devices`` devices each report every ``--interval`` seconds for ``--days``
days up to today (UTC), written day by day in time order (so one device's rows are spread
over the heap as a real fleet's are, one row per page at worst), in the partitions that
``cmsv6_position_day`` makes, plus ``cmsv6_position_maintain``'s days ahead. Then the API's
own statement (``cmsv6.db.positions.positions_query``, a page of ``--limit`` rows) for
``--queries`` random (device, day) pairs:

* cold: right after restarting PostgreSQL with the OS page cache dropped (when we may write
  /proc/sys/vm/drop_caches; else only PostgreSQL's own cache is cold, and it says so);
* warm: the same pairs again;
* cold again without the API's ``READ_AHEAD`` (PostgreSQL reading a page at a time): the
  baseline, in the same run.

Each query's time is the client's (planning, execution, rows over the socket). The baseline
(``--baseline-days N``, 0 to skip) is the same query on one unpartitioned table holding
the first N days with the same primary key.

    .venv/bin/python bench/positions_scale.py                      # 100 M rows (~1 h)
    .venv/bin/python bench/positions_scale.py --days 20 --baseline-days 20   # ~11 M, quicker

Settings for loading speed only (fsync off, no autovacuum while loading): what is timed is
reading, which they do not change.
"""

from __future__ import annotations

import argparse
from contextlib import closing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmsv6.db.embedded import EmbeddedPostgres  # noqa: E402
from cmsv6.db.positions import READ_AHEAD, positions_query  # noqa: E402
from cmsv6.db.upgrade import upgrade  # noqa: E402

TARGET_MS = 50.0

#: One day of positions, time-major: every device's report at one instant, then the next
#: instant. Device d reports at d mod interval seconds into each interval (staggered).
_DAY = """
INSERT INTO {table} (device_id, time, received, latitude, longitude, altitude, speed,
                     direction, alarm, status, extras, blind, digest)
SELECT d, t, t + interval '1.5 s', 22.5 + (d %% 97) * 0.01 + s * 1e-5,
       114.0 + (d %% 89) * 0.01 - s * 1e-5, 10 + (s %% 50), (d + s) %% 120,
       (s * 7) %% 360, 0, 3,
       jsonb_build_object('0x01', 100000 + s, '0x30', 20 + d %% 10, '0x31', 12),
       false, int8send(d) || int8send(extract(epoch FROM t)::bigint)
FROM (SELECT g / %(n)s AS s, g %% %(n)s + 1 AS d FROM generate_series(0, %(rows)s - 1) AS g) x,
     LATERAL (SELECT %(start)s::timestamptz
                     + make_interval(secs => x.s * %(interval)s + (x.d %% %(interval)s))) AS y(t)
"""


def _conn(dsn: str) -> Any:
    """An autocommit connection, closed at the end of ``with`` (psycopg2's own ``with``
    would open a transaction, where VACUUM may not run)."""
    c = psycopg2.connect(dsn)
    c.autocommit = True
    return closing(c)


def load(dsn: str, devices: int, days: list[date], interval: int, jobs: int) -> int:
    """Write every day's rows into its partition; the rows written."""
    per_day = 86400 // interval
    todo = list(days)
    lock = threading.Lock()
    total = [0]
    started = time.monotonic()

    def worker() -> None:
        with _conn(dsn) as c, c.cursor() as cur:
            while True:
                with lock:
                    if not todo:
                        return
                    day = todo.pop(0)
                table = f"positions_{day:%Y_%m_%d}"
                start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
                cur.execute(_DAY.format(table=table),
                            {"n": devices, "rows": devices * per_day, "start": start,
                             "interval": interval})  # fmt: skip
                cur.execute(f"VACUUM (ANALYZE) {table}")
                with lock:
                    total[0] += devices * per_day
                    rate = total[0] / (time.monotonic() - started)
                print(f"  {day} loaded: {total[0]:,} rows, {rate:,.0f} rows/s", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total[0]


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(dsn: str, pairs: list[tuple[int, date]], limit: int, table: str = "positions",
          read_ahead: bool = True) -> list[float]:
    """Milliseconds per query, the API's statement for each (device, day), with its
    ``READ_AHEAD`` (without: as PostgreSQL's default of reading one page at a time)."""
    out = []
    with _conn(dsn) as c, c.cursor() as cur:
        for device, day in pairs:
            start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            sql, args = positions_query(device, start, start + timedelta(days=1), limit)
            sql = sql.replace("FROM positions ", f"FROM {table} ")
            if read_ahead:
                sql = READ_AHEAD + sql
            t0 = time.perf_counter()
            cur.execute(sql, args)
            rows = cur.fetchall()
            out.append((time.perf_counter() - t0) * 1000)
            assert rows, (device, day)
    return out


def summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return (f"{name:<34} p50 {q[49]:7.2f} ms  p99 {q[98]:7.2f} ms  max {max(ms):7.2f} ms"
            f"  ({'under' if q[98] < TARGET_MS else 'OVER'} the {TARGET_MS:g} ms target at p99)")


def restart_cold(cluster: EmbeddedPostgres) -> str:
    cluster.stop()
    dropped = drop_caches()
    cluster.start()
    return "PostgreSQL restarted, OS page cache dropped" if dropped else \
        "PostgreSQL restarted (OS page cache NOT dropped: not allowed here)"


def explain(dsn: str, device: int, day: date, limit: int) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    sql, args = positions_query(device, start, start + timedelta(days=1), limit)
    with _conn(dsn) as c, c.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, args)
        return "\n".join("    " + r[0] for r in cur.fetchall())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--interval", type=int, default=155, help="seconds between a device's reports")
    p.add_argument("--queries", type=int, default=400, help="random (device, day) pairs timed")
    p.add_argument("--limit", type=int, default=1000, help="page size (the API's max_page)")
    p.add_argument("--jobs", type=int, default=2, help="loading connections")
    p.add_argument("--baseline-days", type=int, default=0,
                   help="also time an unpartitioned table of the first N days")
    p.add_argument("--shared-buffers", default="1GB")
    p.add_argument("--dir", default=None, help="where the temporary cluster goes (removed)")
    a = p.parse_args()
    per_day = 86400 // a.interval
    print(f"positions_scale: {a.devices} devices x {per_day} reports/day x {a.days} days ="
          f" {a.devices * per_day * a.days:,} rows; load {open('/proc/loadavg').read().split()[:3]}")
    directory = tempfile.mkdtemp(prefix="cmsv6-scale-", dir=a.dir)
    cluster = EmbeddedPostgres(directory)
    try:
        cluster.init()
        with open(cluster.data / "postgresql.conf", "a") as conf:
            conf.write(f"shared_buffers = {a.shared_buffers}\nfsync = off\nsynchronous_commit = off\n"
                       "full_page_writes = off\nmax_wal_size = 16GB\ncheckpoint_timeout = 1h\n"
                       "maintenance_work_mem = 256MB\nautovacuum = off\n"
                       "wal_level = minimal\nmax_wal_senders = 0\n")
        cluster.start()
        dsn = cluster.create_database("scale")
        upgrade(dsn)
        today = datetime.now(timezone.utc).date()
        days = [today - timedelta(days=i) for i in range(a.days, 0, -1)]
        with _conn(dsn) as c, c.cursor() as cur:
            cur.execute("INSERT INTO devices (id, phone) SELECT i, (13800000000 + i)::text"
                        " FROM generate_series(1, %s) i", (a.devices,))
            for day in days:
                cur.execute("SELECT cmsv6_position_day(%s)", (day,))
            cur.execute("SELECT count(*) FROM cmsv6_position_maintain(now(), 14, 180)")
        t0 = time.monotonic()
        rows = load(dsn, a.devices, days, a.interval, a.jobs)
        loaded = time.monotonic() - t0
        with _conn(dsn) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM cmsv6_position_partitions()")
            parts = cur.fetchone()[0]
            cur.execute("SELECT pg_size_pretty(sum(pg_total_relation_size(format('%I', name))))"
                        " FROM cmsv6_position_partitions()")
            size = cur.fetchone()[0]
        print(f"loaded {rows:,} rows in {loaded:.0f} s ({rows / loaded:,.0f} rows/s), {parts}"
              f" partitions, {size} with indexes")
        if a.baseline_days:
            with _conn(dsn) as c, c.cursor() as cur:
                cur.execute("CREATE TABLE positions_flat (LIKE positions INCLUDING DEFAULTS)")
                cur.execute("INSERT INTO positions_flat SELECT * FROM positions WHERE time < %s"
                            " ORDER BY time", (datetime.combine(days[0] + timedelta(days=a.baseline_days),
                                                                datetime.min.time(), timezone.utc),))  # fmt: skip
                cur.execute("ALTER TABLE positions_flat ADD PRIMARY KEY (device_id, time, digest)")
                cur.execute("VACUUM (ANALYZE) positions_flat")
        rng = random.Random(15)
        pairs = [(rng.randint(1, a.devices), rng.choice(days)) for _ in range(a.queries)]
        print("one device, one UTC day:", explain(dsn, *pairs[0], a.limit), sep="\n")
        print(restart_cold(cluster))
        cold = timed(dsn, pairs, a.limit)
        warm = timed(dsn, pairs, a.limit)
        rows_per = per_day if per_day < a.limit else a.limit
        print(summary(f"partitioned, cold ({rows_per} rows)", cold))
        print(summary(f"partitioned, warm ({rows_per} rows)", warm))
        restart_cold(cluster)
        cold_one = timed(dsn, pairs, a.limit, read_ahead=False)
        print(summary("cold, no read-ahead (baseline)", cold_one))
        if a.baseline_days:
            flat_days = days[: a.baseline_days]
            flat = [(d, rng.choice(flat_days)) for d, _ in pairs]
            restart_cold(cluster)
            cold_flat = timed(dsn, flat, a.limit, "positions_flat")
            warm_flat = timed(dsn, flat, a.limit, "positions_flat")
            print(summary(f"unpartitioned {a.baseline_days} d, cold", cold_flat))
            print(summary(f"unpartitioned {a.baseline_days} d, warm", warm_flat))
        print(f"load at the end {open('/proc/loadavg').read().split()[:3]}")
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
