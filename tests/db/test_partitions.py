"""Positions in day partitions (schema step 8, ``cmsv6.db.maintenance``): the upgrade keeps
every row; rows land in their day's partition, or in the default one when no partition
covers their time, and are never refused; maintenance makes days ahead, moves rows out of
the default partition, drops whole partitions past retention and nothing else, runs as the
servers' role and from two places at once; the API's query reads one partition."""

from __future__ import annotations

from contextlib import closing

import re
import threading
import time as _time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import task

from cmsv6.cli import main
from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.maintenance import AHEAD_DAYS, RETRY, Maintenance, maintain_now
from cmsv6.db.positions import READ_AHEAD, positions, positions_query
from cmsv6.db.service import Database
from cmsv6.db.upgrade import steps, upgrade
from tests.support.database import query
from tests.support.device import until, within
from tests.support.process import LoginProcess

UTC = timezone.utc
NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def _insert(dsn: str, device: int, when: datetime, received: datetime | None = None,
            digest: bytes = b"\x01") -> int:  # fmt: skip
    """Store a report as the writer does (a report already there is ignored); rows added."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO positions (device_id, time, received, latitude, longitude, altitude,"
            " speed, direction, alarm, status, extras, blind, digest)"
            " VALUES (%s, %s, %s, 22.5, 114.1, 10, 42.5, 90, 0, 3, '{\"0x01\": 7}', false, %s)"
            " ON CONFLICT DO NOTHING", (device, when, received or when, digest))  # fmt: skip
        n = cur.rowcount
    conn.close()
    return n


def _where(dsn: str) -> list[tuple[str, datetime]]:
    """(partition, time) of every stored position, by time."""
    return [(r[0], r[1]) for r in query(
        dsn, "SELECT tableoid::regclass::text, time FROM positions ORDER BY time")]  # fmt: skip


def _partitions(dsn: str) -> list[str]:
    return [r[0] for r in query(dsn, "SELECT name FROM cmsv6_position_partitions() ORDER BY starts")]


def _day(d: datetime) -> str:
    return f"positions_{d:%Y_%m_%d}"


def test_upgrade_keeps_rows_in_their_monthly_partitions(pg_cluster: EmbeddedPostgres) -> None:
    """A database at step 7 with positions in monthly partitions (one decades old) keeps
    every row through step 8, where it was; new days start after the last month; retention
    drops a month only when the whole of it is past, and every row of a kept month stays."""
    dsn = pg_cluster.create_database(f"upgrade8_{_time.monotonic_ns() % 10**9}")
    assert upgrade(dsn, until=7) == list(range(1, 8))
    times = [datetime(2000, 1, 5, tzinfo=UTC), datetime(2026, 6, 30, 23, tzinfo=UTC),
             datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC),
             datetime(2026, 12, 2, 10, tzinfo=UTC)]  # fmt: skip
    for i, t in enumerate(times):
        query(dsn, "SELECT cmsv6_position_partition(%s, %s)", (t.year, t.month))
        assert _insert(dsn, 1, t, digest=bytes([i])) == 1
    before = query(dsn, "SELECT * FROM positions ORDER BY time")
    assert upgrade(dsn) == [n for n, _, _ in steps() if n > 7]
    assert query(dsn, "SELECT * FROM positions ORDER BY time") == before
    done = maintain_now(dsn, 180, NOW)
    assert "dropped positions_2000_01 (rows before 2000-02-01)" in done
    # December is a monthly partition already: days begin in January.
    assert f"created {_day(NOW)}" not in done and "created positions_2027_01_01" not in done
    assert "created positions_2027_01_01" in maintain_now(dsn, 180, datetime(2026, 12, 20, tzinfo=UTC))
    assert query(dsn, "SELECT * FROM positions ORDER BY time") == before[1:]
    # 180 days before 2026-12-29 is 2026-07-02: June goes whole, July stays whole.
    done = maintain_now(dsn, 180, datetime(2026, 12, 29, 8, tzinfo=UTC))
    assert "dropped positions_2026_06 (rows before 2026-07-01)" in done
    assert [t for _, t in _where(dsn)] == times[2:]


def test_rows_go_to_their_day_and_duplicates_are_ignored(dsn: str) -> None:
    """After maintenance a report is stored in its UTC day's partition, from yesterday to
    AHEAD_DAYS on; the same report again adds nothing (the writer's ON CONFLICT)."""
    done = maintain_now(dsn, 180, NOW)
    days = [NOW + timedelta(days=i) for i in range(-1, AHEAD_DAYS + 1)]
    assert [f"created {_day(d)}" for d in days] == [line for line in done if "created" in line]
    assert _insert(dsn, 7, datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)) == 1
    assert _insert(dsn, 7, datetime(2026, 12, 3, 0, 0, tzinfo=UTC)) == 1
    assert _insert(dsn, 7, datetime(2026, 12, 3, 0, 0, tzinfo=UTC)) == 0
    assert [p for p, _ in _where(dsn)] == ["positions_2026_12_02", "positions_2026_12_03"]


def test_odd_times_still_insert_and_are_kept_by_when_received(dsn: str) -> None:
    """A report timed 2000 or 2099 (a unit's clock) goes into positions_default, never
    refused; maintenance keeps it retention_days after it was received, then deletes it."""
    maintain_now(dsn, 180, NOW)
    old, future = datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, 23, tzinfo=UTC)
    assert _insert(dsn, 3, old, received=NOW) == 1
    assert _insert(dsn, 3, future, received=NOW - timedelta(days=10)) == 1
    assert [p for p, _ in _where(dsn)] == ["positions_default"] * 2
    later = NOW + timedelta(days=165)
    assert "positions_default keeps 2 row(s)" in " ".join(maintain_now(dsn, 180, later))
    done = maintain_now(dsn, 180, NOW + timedelta(days=175))
    assert any(line.startswith("deleted 1 row(s) of positions_default") for line in done)
    assert _where(dsn) == [("positions_default", old)]


def test_default_rows_move_into_their_day_when_it_is_made(dsn: str) -> None:
    """Rows that came before their day's partition (a clock ahead, a blind-area upload of a
    day before maintenance ever ran) move into it when maintenance makes it."""
    maintain_now(dsn, 180, NOW)
    ahead = NOW + timedelta(days=AHEAD_DAYS + 5)
    past = NOW - timedelta(days=40)
    for i, t in enumerate((ahead, ahead + timedelta(hours=1), past)):
        _insert(dsn, 9, t, digest=bytes([i]))
    assert {p for p, _ in _where(dsn)} == {"positions_default"}
    done = maintain_now(dsn, 180, NOW + timedelta(days=6))
    assert f"created {_day(past)} with 1 row(s) moved from positions_default" in done
    assert f"created {_day(ahead)} with 2 row(s) moved from positions_default" in done
    assert [p for p, _ in _where(dsn)] == [_day(past), _day(ahead), _day(ahead)]
    assert maintain_now(dsn, 180, NOW + timedelta(days=6)) == []


def test_retention_drops_only_whole_old_partitions(dsn: str) -> None:
    """Each day past retention_days goes as a table (DROP, the rows with it); the day the
    limit falls in, and every row in it, stays; 0 keeps everything."""
    maintain_now(dsn, 180, NOW)
    for hours in range(0, 48, 6):  # yesterday and today, 4 rows each
        _insert(dsn, 5, NOW.replace(hour=0) - timedelta(days=1) + timedelta(hours=hours))
    kept = maintain_now(dsn, 0, NOW + timedelta(days=400))
    assert kept and not [line for line in kept if "dropped" in line]
    assert len(_where(dsn)) == 8
    done = maintain_now(dsn, 2, NOW + timedelta(days=2))
    assert done[-1] == "dropped positions_2026_12_01 (rows before 2026-12-02)"
    assert [line for line in done if "dropped" in line] == done[-1:]
    assert [p for p, _ in _where(dsn)] == ["positions_2026_12_02"] * 4
    assert _partitions(dsn)[0] == "positions_2026_12_02"
    assert "positions_2026_12_01" not in [r[0] for r in query(dsn, "SELECT relname FROM pg_class")]


def test_the_api_query_reads_one_partition(dsn: str) -> None:
    """GET .../positions for one device and one UTC day reads one partition, through its
    primary key (the others pruned at planning); a local day across midnight reads two."""
    maintain_now(dsn, 180, NOW)
    start = datetime(2026, 12, 3, tzinfo=UTC)
    sql, args = positions_query(5, start, start + timedelta(days=1), 1000)
    plan = _plan(dsn, sql, args)
    assert _read(plan) == {"positions_2026_12_03"} and "positions_2026_12_03_pkey" in plan, plan
    local = start - timedelta(hours=8)  # a day in UTC+8
    sql, args = positions_query(5, local, local + timedelta(days=1), 1000)
    plan = _plan(dsn, sql, args)
    assert _read(plan) == {"positions_2026_12_02", "positions_2026_12_03"}, plan


def _plan(dsn: str, sql: str, args: Any) -> str:
    """EXPLAIN, as at scale: the tables here are too small for an index to be worth it."""
    return "\n".join(r[0] for r in query(dsn, "SET enable_seqscan = off; EXPLAIN " + sql, args))


def _read(plan: str) -> set[str]:
    """The partitions a plan reads."""
    return set(re.findall(r"\bpositions_(?:\d{4}_\d\d_\d\d|default)", plan))


def test_two_at_once_and_again_change_nothing_twice(dsn: str) -> None:
    """Run from two places at once, each day is made once (the other waits, then has
    nothing left); a run after that does nothing."""
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(maintain_now(dsn, 180, NOW)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(len(r) for r in results) == [0, AHEAD_DAYS + 2]
    assert maintain_now(dsn, 180, NOW) == []


@pytest.fixture
def app_dsn(pg_cluster: EmbeddedPostgres, dsn: str) -> Iterator[str]:
    """The servers' role of ``dsn`` (rows only), as ``cmsv6 db upgrade --app-role`` makes it."""
    role = f"maint_{_time.monotonic_ns() % 10**9}"
    assert main(["db", "upgrade", "--dsn", dsn, "--app-role", role]) == 0
    try:
        yield f"host=127.0.0.1 port={pg_cluster.port} dbname={dsn.split('dbname=')[1].split()[0]}" \
              f" user={role}"
    finally:
        query(dsn, f"DROP OWNED BY {role}")
        pg_cluster.psql(f"DROP ROLE {role}")


def test_maintenance_runs_as_the_servers_role(app_dsn: str, dsn: str) -> None:
    """The servers' role, which may not create or drop a table itself, has the partitions
    made and dropped through maintenance (owned by the schema's owner)."""
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(app_dsn, "CREATE TABLE positions_2026_12_25 PARTITION OF positions"
              " FOR VALUES FROM ('2026-12-25 00:00+00') TO ('2026-12-26 00:00+00')")  # fmt: skip
    assert f"created {_day(NOW)}" in maintain_now(app_dsn, 180, NOW)
    assert query(dsn, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = %s",
                 (_day(NOW),)) == [("cmsv6",)]  # fmt: skip
    assert "dropped positions_2026_12_01 (rows before 2026-12-02)" in maintain_now(
        app_dsn, 1, NOW + timedelta(days=1))


def test_cli_maintain_prints_what_it_did(dsn: str, capsys: Any) -> None:
    """``cmsv6 db maintain`` makes today's partition and says so; again, that there was
    nothing to do; a bad retention is refused before anything."""
    assert main(["db", "maintain", "--dsn", dsn, "--retention_days", "30"]) == 0
    out = capsys.readouterr().out
    today = datetime.now(UTC)
    assert f"created {_day(today)}\n" in out and out.endswith(" change(s), 30 day(s) kept\n")
    assert main(["db", "maintain", "--dsn", dsn]) == 0
    assert capsys.readouterr().out == "positions: nothing to do, 180 day(s) kept\n"
    with pytest.raises(SystemExit):
        main(["db", "maintain", "--dsn", dsn, "--retention_days", "-1"])


@pytest_twisted.inlineCallbacks
def test_service_runs_at_start_and_every_interval(dsn: str) -> Any:
    """The service runs maintenance when it starts and again each interval of its clock
    (the day read from that clock), and keeps going after a failed run."""
    from twisted.internet import reactor

    clock = task.Clock()
    clock.advance(NOW.timestamp())
    db = Database(dsn, reactor, size=1)
    db.startService()
    service = Maintenance(db, clock, retention_days=180, interval=3600.0)
    try:
        yield within(db.ready(), "the database")
        service.startService()
        yield until(lambda: service.runs == 1, "the first run")
        assert _day(NOW + timedelta(days=AHEAD_DAYS)) in _partitions(dsn)
        query(dsn, "ALTER FUNCTION cmsv6_position_maintain(timestamptz, integer, integer)"
              " RENAME TO broken")  # fmt: skip
        clock.advance(86400)
        yield until(lambda: service.runs == 2, "the failed run")
        assert _day(NOW + timedelta(days=AHEAD_DAYS + 1)) not in _partitions(dsn)
        query(dsn, "ALTER FUNCTION broken(timestamptz, integer, integer)"
              " RENAME TO cmsv6_position_maintain")  # fmt: skip
        # A failed run is tried again RETRY seconds later, not an interval later.
        clock.advance(RETRY)
        yield until(lambda: service.runs == 3, "the run after the failed one")
        assert _day(NOW + timedelta(days=AHEAD_DAYS + 1)) in _partitions(dsn)
        clock.advance(3600 - RETRY)
        yield until(lambda: service.runs == 4, "the next interval's run")
    finally:
        yield within(service.stopService(), "the service stopped")
        yield within(db.stopService(), "the database stopped")


@pytest_twisted.inlineCallbacks
def test_service_started_before_its_database_runs_once_it_is_there(dsn: str) -> Any:
    """A login server becomes active before its database has connected: the first run
    waits for the database instead of failing and waiting an hour."""
    from twisted.internet import reactor

    clock = task.Clock()
    clock.advance(NOW.timestamp())
    db = Database(dsn, reactor, size=1)
    service = Maintenance(db, clock, retention_days=180, interval=3600.0)
    service.startService()
    try:
        assert service.runs == 0
        db.startService()
        yield until(lambda: service.runs == 1, "the first run, once the database is there")
        assert _day(NOW + timedelta(days=AHEAD_DAYS)) in _partitions(dsn)
    finally:
        yield within(service.stopService(), "the service stopped")
        yield within(db.stopService(), "the database stopped")


@pytest.mark.deadline(180)
@pytest_twisted.inlineCallbacks
def test_active_login_server_keeps_the_partitions(dsn: str, tmp_path: Path) -> Any:
    """A login server that becomes active makes today's and the coming days' partitions
    (and drops what is past its retention_days) without being asked."""
    query(dsn, "SELECT cmsv6_position_day('2020-01-01')")
    login = LoginProcess(dsn, tmp_path, "login", "--retention_days", "90")
    login.start()
    try:
        ahead = _day(datetime.now(UTC) + timedelta(days=AHEAD_DAYS))
        yield until(lambda: ahead in _partitions(dsn), "partitions made by login", in_thread=True)
        assert "positions_2020_01_01" not in _partitions(dsn)
    finally:
        login.stop()
    assert "positions maintenance: dropped positions_2020_01_01" in login.log.read_text()


def test_the_api_query_reads_ahead_and_never_less_than_the_server(dsn: str) -> None:
    """The API's positions read asks for 64 pages ahead in its own transaction (a device's
    cold day is hundreds of scattered pages), and keeps a server's higher setting."""
    sql, args = positions_query(5, NOW, NOW + timedelta(days=1), 1000)
    show = "; SHOW effective_io_concurrency"
    assert query(dsn, READ_AHEAD + sql + show, args) == [("64",)]
    assert query(dsn, "SET effective_io_concurrency = 200; " + READ_AHEAD + sql + show,
                 args) == [("200",)]  # fmt: skip
    with closing(psycopg2.connect(dsn)) as conn:  # and only for that transaction
        with conn, conn.cursor() as cur:
            cur.execute("SHOW effective_io_concurrency")
            server = cur.fetchone()
            cur.execute(READ_AHEAD + sql, args)
        with conn, conn.cursor() as cur:
            cur.execute("SHOW effective_io_concurrency")
            assert cur.fetchone() == server


@pytest_twisted.inlineCallbacks
def test_the_api_positions_read_ahead(dsn: str) -> None:
    """``positions`` (GET .../positions and .../track) sends the read-ahead with its query,
    and still answers the day's rows."""
    from twisted.internet import reactor

    (device,) = query(dsn, "INSERT INTO devices (phone) VALUES ('013900000005') RETURNING id")[0]
    at = NOW + timedelta(hours=1)
    query(dsn, "INSERT INTO positions (device_id, time, received, latitude, longitude, altitude,"
               " speed, direction, alarm, status, blind, digest)"
               " VALUES (%s, %s, %s, 22.5, 114.0, 0, 0, 0, 0, 0, false, '\\x01')", (device, at, at))
    sent: list[str] = []
    db = Database(dsn, reactor, size=1)
    run_query = db.run_query
    db.run_query = lambda sql, args=None: (sent.append(sql), run_query(sql, args))[1]  # type: ignore[method-assign]
    db.startService()
    try:
        yield db.ready()
        rows = yield positions(db, device, NOW, NOW + timedelta(days=1), 10)
    finally:
        yield db.stopService()
    assert [(r.time, r.latitude) for r in rows] == [(at, 22.5)]
    assert len(sent) == 1 and sent[0].startswith(READ_AHEAD)
