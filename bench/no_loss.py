"""The long proof of no loss: a simulated fleet under load against a real ``twistd gateway``
and a private PostgreSQL (a primary and a synchronous streaming standby), through three
disruptions in turn:

1. the gateway is killed with SIGKILL ``--kills`` times at random moments and restarted;
2. PostgreSQL is restarted (fast stop, ``--downtime`` seconds down, start);
3. the primary is killed (immediate stop), the standby promoted (and its
   ``synchronous_standby_names`` cleared, since it has no standby of its own), and the
   gateway finds it through its multi-host DSN.

Each scenario runs ``--warmup`` seconds of load first and ``--seconds`` of load around its
disruption, then waits (bounded) until the devices have caught up: every device not in a
coverage gap online with its backlog uploaded. Then every position the fleet saw
acknowledged so far is looked up in the database: it must be stored exactly once. "Resumed"
is the time from a disruption to the end of the longest pause in acknowledgements after
it; "caught up" the time from the (last) disruption until, acknowledgements having
resumed, every device was back and had uploaded what it kept meanwhile (as 0x0704 batches).
"checked" counts every position acknowledged since the start (a promotion must not lose
what the old primary acknowledged), "missing" and "dup" are of those. Exit status 1 if a
position was lost or stored twice, the devices' own count of positions does not add up,
or the fleet did not catch up.

    .venv/bin/python bench/no_loss.py [--devices 200] [--interval 1] [--kills 3]
        [--warmup 10] [--seconds 20] [--seed 1]

Everything listens on 127.0.0.1 and lives in one temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from random import Random
from typing import Any, Callable, Iterable

import attrs
import psycopg2
from twisted.internet import reactor as _reactor
from twisted.internet import task, threads
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import upgrade
from cmsv6.phone import canonical_phone
from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fleet import Acknowledged, Fleet, FleetConfig
from tests.support.process import GatewayProcess, free_port

reactor: Any = _reactor

#: The gateway admits a whole fleet from one address (as bench/gateway_load.py's does).
LOOPBACK_FLEET = [
    "--jt808_max_per_address", "100000", "--register_per_address", "1000000",
    "--open_per_hour", "1000000", "--open_total", "10000000",
]  # fmt: skip

#: Seconds at most to wait for the fleet to catch up after a scenario.
CATCH_UP_MAX = 60.0
#: A device counts as caught up with at most this many positions unacknowledged.
CAUGHT_UP_BACKLOG = 2

Key = tuple[str, datetime, float, float]


def key_of(a: Acknowledged) -> Key:
    return (canonical_phone(a.phone), a.time, round(a.latitude, 6), round(a.longitude, 6))


class TimedAcks(list):  # type: ignore[type-arg]
    """``Fleet.acknowledged`` that also notes when each acknowledgement arrived."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock = clock
        self.times: list[float] = []

    def append(self, item: Acknowledged) -> None:
        super().append(item)
        self.times.append(self.clock.seconds())


def stored(dsn: str) -> Counter[Key]:
    """Rows in positions, counted by (phone, time, latitude, longitude)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT d.phone, p.time, p.latitude, p.longitude, count(*) FROM positions p"
                " JOIN devices d ON d.id = p.device_id GROUP BY 1, 2, 3, 4"
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    out: Counter[Key] = Counter()
    for phone, t, lat, lon, n in rows:
        out[(phone, t, round(lat, 6), round(lon, 6))] += n
    return out


@attrs.define
class Check:
    acknowledged: int  # distinct acknowledged positions checked
    missing: int
    duplicates: int
    acked_twice: int  # the fleet saw one position acknowledged twice (a simulator oddity)
    unacknowledged_rows: int  # stored, never acknowledged (acknowledgement lost or pending)
    unacknowledged_oldest: datetime | None
    examples: list[str]


def check(acks: Iterable[Acknowledged], rows: Counter[Key]) -> Check:
    acked = Counter(key_of(a) for a in acks)
    missing = [k for k in acked if rows[k] == 0]
    extra = {k: n - max(1, acked[k]) for k, n in rows.items() if n > max(1, acked[k])}
    unacknowledged = [k[1] for k in rows if k not in acked]
    examples = [f"missing {k}" for k in missing[:3]]
    examples += [f"stored {rows[k]}x {k}" for k in list(extra)[:3]]
    return Check(
        acknowledged=len(acked),
        missing=len(missing),
        duplicates=sum(extra.values()),
        acked_twice=sum(n - 1 for n in acked.values() if n > 1),
        unacknowledged_rows=len(unacknowledged),
        unacknowledged_oldest=min(unacknowledged, default=None),
        examples=examples,
    )


def resumed_after(times: list[float], start: float, end: float) -> float | None:
    """Seconds from ``start`` to the end of the longest pause in acknowledgements within
    [start, end] (None: none arrived)."""
    t_prev, best_gap, best_end = start, -1.0, None
    for t in times:
        if t < start:
            continue
        if t > end:
            break
        if t - t_prev > best_gap:
            best_gap, best_end = t - t_prev, t
        t_prev = t
    return None if best_end is None else best_end - start


def sleep(seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, max(0.0, seconds), lambda: None)


def in_thread(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Blocking work (pg_ctl, psql, starting twistd) off the reactor, so the fleet runs on."""
    return threads.deferToThread(f, *args)


@attrs.define
class Result:
    name: str
    acked: int = 0
    reconnects: int = 0
    batches: int = 0
    resumed: list[float | None] = attrs.Factory(list)
    caught_up: float | None = None
    seconds: float = 0.0
    check: Check | None = None
    total: bool = False
    conserved: bool = True

    @property
    def ok(self) -> bool:
        return (
            self.check is not None
            and self.check.missing == 0
            and self.check.duplicates == 0
            and self.conserved
            and (self.total or self.caught_up is not None)
            and all(r is not None for r in self.resumed)
        )

    def line(self) -> str:
        c = self.check
        assert c is not None
        resumed = " ".join("never" if r is None else f"{r:.2f}" for r in self.resumed)
        caught = "NO" if self.caught_up is None else f"{self.caught_up:.1f}"
        if self.total:
            resumed, caught = "-", "-"
        return (
            f"{self.name:<26} {self.acked:>8,} {c.acknowledged:>9,} {c.missing:>7} "
            f"{c.duplicates:>5} {self.reconnects:>10,} {self.batches:>7,}  "
            f"{resumed:<18} {caught:>9} {self.seconds:>7.1f}"
        )


HEADER = (
    f"{'scenario':<26} {'acked':>8} {'checked':>9} {'missing':>7} {'dup':>5} "
    f"{'reconnects':>10} {'0x0704':>7}  {'resumed (s)':<18} {'caught up':>9} {'time s':>7}"
)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rng = Random(args.seed)
        self.primary = EmbeddedPostgres(workdir / "primary")
        self.standby: EmbeddedPostgres | None = None
        self.clusters: list[EmbeddedPostgres] = [self.primary]
        self.gateway: GatewayProcess | None = None
        self.fleet: Fleet | None = None
        self.acks: TimedAcks | None = None
        self.dsn = ""

    # -- setting up (before the reactor runs) ----------------------------------------------

    def set_up(self) -> None:
        p = self.primary
        p.init()
        p.start()
        upgrade(p.create_database("cmsv6"))
        # Commits wait for the standby: what the gateway acknowledges is on both servers.
        p.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        p.psql("SELECT pg_reload_conf()")
        self.standby = p.standby(self.workdir / "standby")
        self.clusters.append(self.standby)
        self.standby.start()
        deadline = time.monotonic() + 30
        while p.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != "1":
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not become synchronous")
            time.sleep(0.1)
        self.dsn = (
            f"host=127.0.0.1,127.0.0.1 port={p.port},{self.standby.port} dbname=cmsv6"
            " user=cmsv6 target_session_attrs=read-write connect_timeout=2"
        )
        # Every simulated device comes from 127.0.0.1: the per-address bounds meant for a
        # real fleet's NAT would refuse most of them (and count as not catching up).
        self.gateway = GatewayProcess(self.dsn, free_port(), self.workdir, *LOOPBACK_FLEET)
        self.gateway.start()

    def tear_down(self) -> None:
        if self.gateway is not None:
            try:
                self.gateway.stop()
            except Exception as e:  # noqa: BLE001 - clean up the rest regardless
                print(f"# stopping the gateway: {e}", file=sys.stderr)
        for c in self.clusters:
            pid = postmaster_pid(c)
            try:
                if self.args.keep:
                    c.kill()
                else:
                    c.destroy()
            except Exception as e:  # noqa: BLE001
                print(f"# destroying {c.directory}: {e}", file=sys.stderr)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)  # still there after an immediate stop
                except ProcessLookupError:
                    pass

    # -- the run (in the reactor) ---------------------------------------------------------

    async def run(self) -> tuple[list[Result], Result]:
        a = self.args
        assert self.gateway is not None
        config = FleetConfig(
            server=f"tcp:127.0.0.1:{self.gateway.port}",
            devices=a.devices,
            version="mixed",
            seed=a.seed,
            record_acks=True,
            status_interval=0,
            connect_rate=200.0,
            device=DeviceConfig(
                interval=a.interval, heartbeat=30.0, timeout=2.0, retries=3,
                reconnect_initial=0.5, reconnect_max=5.0,
                gap_probability=a.gap_probability, gap_seconds=6.0,
            ),  # fmt: skip
        )
        began = reactor.seconds()
        self.fleet = fleet = Fleet(reactor, config)
        self.acks = fleet.acknowledged = TimedAcks(reactor)  # type: ignore[assignment]
        done = fleet.start()
        if a.verbose:
            status = task.LoopingCall(lambda: print(fleet.status_line(), file=sys.stderr))
            status.start(5.0, now=False)
        results = []
        for name, disrupt in (
            (f"gateway kill -9 x{a.kills}", self.kill_gateway),
            (f"database restart, {a.downtime:g} s", self.restart_database),
            (f"standby promotion, {a.downtime:g} s", self.promote_standby),
        ):
            results.append(await self.scenario(name, disrupt))
        stopped_at = datetime.now().astimezone()
        await fleet.stop()
        await done
        if a.verbose:
            status.stop()
        total = Result("all, after the fleet stopped", total=True)
        total.acked = len(self.acks)
        total.reconnects = fleet.counters.reconnects
        total.batches = fleet.counters.batches
        total.check = check(self.acks, await in_thread(stored, self.dsn))
        total.seconds = reactor.seconds() - began
        print(total.line())
        c, k = fleet.counters, total.check
        age = ""
        if k.unacknowledged_oldest is not None:
            # Positions whose commit raced the fleet's logout are expected, and recent.
            seconds = (stopped_at - k.unacknowledged_oldest).total_seconds()
            age = f" (the oldest reported {seconds:.1f} s before the fleet stopped)"
        # Every position a device made is acknowledged, still held by it, or dropped (its
        # backlog overflowed): none vanished on the devices' side either.
        held = fleet.pending()
        total.conserved = c.positions == c.acknowledged + held + c.dropped
        print(f"# positions made by the devices: {c.positions:,} = {c.acknowledged:,} acknowledged"
              f" + {held:,} still held at the stop + {c.dropped} dropped: "
              f"{'yes' if total.conserved else 'NO'}")
        print(f"# fleet: {c.sent:,} sent, {c.acknowledged:,} acknowledged, {c.batches:,} 0x0704 "
              f"batches, {c.retransmissions:,} retransmissions, {c.timeouts:,} timeouts, "
              f"{c.refused:,} refused, "
              f"{c.gaps} coverage gaps, {c.dropped} dropped, {c.errors} errors; "
              f"{k.unacknowledged_rows} stored positions never acknowledged{age}, "
              f"{k.acked_twice} acknowledged twice", flush=True)
        return results, total

    async def scenario(self, name: str, disrupt: Callable[[Result, float], Any]) -> Result:
        fleet, acks = self.fleet, self.acks
        assert fleet is not None and acks is not None
        r = Result(name)
        start = reactor.seconds()
        acked0, reconnects0, batches0 = len(acks), fleet.counters.reconnects, fleet.counters.batches
        await sleep(self.args.warmup)
        # Whether the fleet is caught up, sampled through the disruption and after.
        samples: list[tuple[float, bool]] = []
        sampler = task.LoopingCall(lambda: samples.append((reactor.seconds(), self.caught_up())))
        sampler.start(0.1)
        phase_end = reactor.seconds() + self.args.seconds
        disruptions: list[float] = await disrupt(r, phase_end)
        await sleep(phase_end - reactor.seconds())
        final = await self.catch_up()
        sampler.stop()
        if final is not None:
            samples.append((final, True))
        for i, t in enumerate(disruptions):
            end = disruptions[i + 1] if i + 1 < len(disruptions) else reactor.seconds()
            r.resumed.append(resumed_after(acks.times, t, end))
        last, resumed = disruptions[-1], r.resumed[-1]
        if final is not None and resumed is not None:
            # The first moment, once acknowledgements resumed, that every device was back
            # and had uploaded what it kept meanwhile.
            r.caught_up = next(t for t, ok in samples if ok and t >= last + resumed) - last
        # Every acknowledgement so far was sent after its commit: a query started now sees it.
        snapshot = list(acks)
        r.check = check(snapshot, await in_thread(stored, self.dsn))
        r.acked = len(snapshot) - acked0
        r.reconnects = fleet.counters.reconnects - reconnects0
        r.batches = fleet.counters.batches - batches0
        r.seconds = reactor.seconds() - start
        print(r.line(), flush=True)
        for e in r.check.examples:
            print(f"#   {e}", flush=True)
        return r

    def caught_up(self) -> bool:
        """Every device not in a coverage gap is online with its backlog uploaded."""
        assert self.fleet is not None
        now = reactor.seconds()
        return all(
            d.in_gap(now) or (d.online and d.unacknowledged <= CAUGHT_UP_BACKLOG)
            for d in self.fleet.devices
        )

    async def catch_up(self) -> float | None:
        """Wait until ``caught_up()``: when it was, or None after CATCH_UP_MAX."""
        t0 = reactor.seconds()
        while not self.caught_up():
            if reactor.seconds() - t0 > CATCH_UP_MAX:
                return None
            await sleep(0.1)
        return float(reactor.seconds())

    async def wait_acks(self, after: int, timeout: float = 30.0) -> None:
        """Until an acknowledgement beyond the first ``after`` has come (bounded)."""
        assert self.acks is not None
        deadline = reactor.seconds() + timeout
        while len(self.acks) <= after and reactor.seconds() < deadline:
            await sleep(0.05)

    # -- the disruptions: each returns the times it happened at ---------------------------

    async def kill_gateway(self, r: Result, phase_end: float) -> list[float]:
        gw, acks = self.gateway, self.acks
        assert gw is not None and acks is not None
        n = self.args.kills
        slot = (phase_end - reactor.seconds()) / n
        times = []
        for k in range(n):
            # A random moment in the first half of this kill's slot, once the gateway has
            # acknowledged something since the last restart.
            at = phase_end - (n - k) * slot + self.rng.uniform(0.0, slot / 2)
            await sleep(at - reactor.seconds())
            times.append(reactor.seconds())
            gw.kill()
            await in_thread(gw.start)
            await self.wait_acks(len(acks))
        return times

    async def restart_database(self, r: Result, phase_end: float) -> list[float]:
        await sleep(self.rng.uniform(0.0, (phase_end - reactor.seconds()) / 2))
        t = reactor.seconds()
        await in_thread(self.primary.stop, "fast")
        await sleep(self.args.downtime)
        await in_thread(self.primary.start)
        return [t]

    async def promote_standby(self, r: Result, phase_end: float) -> list[float]:
        standby = self.standby
        assert standby is not None
        await sleep(self.rng.uniform(0.0, (phase_end - reactor.seconds()) / 2))
        t = reactor.seconds()
        await in_thread(self.primary.kill)
        await sleep(self.args.downtime)
        await in_thread(standby.promote)
        # Inherited from the old primary through pg_basebackup; with no standby of its own
        # every commit would wait.
        await in_thread(standby.psql, "ALTER SYSTEM RESET synchronous_standby_names")
        await in_thread(standby.psql, "SELECT pg_reload_conf()")
        return [t]


def postmaster_pid(c: EmbeddedPostgres) -> int | None:
    try:
        return int((c.data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def bounded(lo: float, hi: float, kind: Callable[[str], Any] = float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} not in [{lo}, {hi}]")
        return value

    return parse


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=bounded(1, 5000, int), default=200)
    p.add_argument("--interval", type=bounded(0.2, 60), default=1.0, help="seconds per report")
    p.add_argument("--kills", type=bounded(1, 20, int), default=3, help="gateway kills")
    p.add_argument("--warmup", type=bounded(0, 300), default=10.0, help="seconds before each")
    p.add_argument("--seconds", type=bounded(5, 600), default=20.0, help="load per phase")
    p.add_argument("--downtime", type=bounded(0, 60), default=3.0,
                   help="seconds PostgreSQL stays down (restart, failover)")
    p.add_argument("--gap-probability", type=bounded(0, 0.1), default=0.002,
                   help="chance per report of a coverage gap of 3-9 s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the directory (logs) at the end")
    p.add_argument("-v", "--verbose", action="store_true", help="fleet status on stderr")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.devices + 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    print(f"# {shlex.join([sys.executable, *sys.argv])}")
    print(f"# {datetime.now().astimezone().isoformat(timespec='seconds')} · "
          f"Python {sys.version.split()[0]} · {os.cpu_count()} CPUs")
    print(f"# {args.devices} devices (2013/2019 mixed), a report every {args.interval:g} s, "
          f"coverage gaps p={args.gap_probability:g}/report; warm-up {args.warmup:g} s and "
          f"{args.seconds:g} s of load per scenario; seed {args.seed}")
    print(HEADER, flush=True)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cmsv6-no-loss-"))
    bench = Bench(args, workdir)
    outcome: dict[str, Any] = {}
    # The whole run is bounded: a hang anywhere ends it (as a failure).
    limit = 60 + 3 * (args.warmup + args.seconds + CATCH_UP_MAX + 30) + 3 * args.kills * 30

    def finish(result: object) -> None:
        outcome["result"] = result
        if reactor.running:
            reactor.stop()

    def too_long() -> None:
        outcome["result"] = Failure(TimeoutError(f"the run took more than {limit:.0f} s"))
        reactor.stop()

    try:
        bench.set_up()
        reactor.callWhenRunning(lambda: ensureDeferred(bench.run()).addBoth(finish))
        watchdog = reactor.callLater(limit, too_long)
        reactor.run()
        if watchdog.active():
            watchdog.cancel()
    finally:
        bench.tear_down()
        if args.keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    result = outcome.get("result")
    elapsed = time.monotonic() - began
    if isinstance(result, Failure) or result is None:
        if isinstance(result, Failure):
            result.printTraceback(file=sys.stderr)
        print(f"FAIL: the run did not complete ({elapsed:.0f} s)")
        return 1
    results, total = result
    assert total.check is not None
    failed = [r.name for r in [*results, total] if not r.ok]
    if failed:
        print(f"FAIL ({elapsed:.0f} s): {', '.join(failed)}: positions lost or stored twice, "
              f"or the devices did not catch up")
        return 1
    print(f"PASS ({elapsed:.0f} s in all): all {total.check.acknowledged:,} acknowledged positions "
          f"stored exactly once through {args.kills} gateway kills, a database restart and a "
          f"standby promotion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
