"""The gateway's CPU per acknowledged position, in one process, without sockets.

    .venv/bin/python bench/gateway_cpu.py [--devices 2000] [--rounds 30] [--db stub|real]
                                          [--extras loadgen|units] [--profile 25]

A real ``Gateway`` with its real ``PositionWriter`` and real ``JT808Protocol`` connections,
each on a fake transport (``StringTransport``), is fed real escaped 0x0200 frames (made
before the clock starts), one frame per ``dataReceived`` as a device reporting every few
seconds sends them. Every device is authenticated (its session is attached directly). A
round is one report from every device; the writer batches them as ``twistd gateway``
does (window 20 ms, at most 2,000 rows, 3 batches in flight) and each report's 0x8001
goes out once its batch has "committed".

``--db stub``: the batch is built exactly as for PostgreSQL (``positions.write``: rows,
statement, JSON argument) and psycopg2 quotes its arguments as ``cursor.execute`` would,
then the write succeeds at once, on a ``task.Clock``: the figure is the gateway's own CPU
(socket reads and writes excepted, see below). ``--db real``: a private PostgreSQL, the
writer threads of ``twistd gateway`` (``Database(writer_threads=3)``) and the real reactor;
the figure is this process's CPU (all its threads), PostgreSQL's own is not in it.

What it leaves out: the reactor's socket work (epoll, recv, send) for each frame, which a
real gateway adds per connection and per wake-up; bench/gateway_load.py measures that
end to end.

Instructions rather than seconds, on a loaded machine: run one stub pass under callgrind,
which counts between two markers (``os.getppid`` before the timed loop, ``os.getpgrp``
after it), and divide the dump's total by the positions::

    valgrind --tool=callgrind --zero-before=os_getppid --dump-before=os_getpgrp \
        --callgrind-out-file=/tmp/cg.out .venv/bin/python bench/gateway_cpu.py \
        --devices 500 --rounds 5 --repeat 1 --profile 0    # then: grep totals /tmp/cg.out.1

Prints µs of CPU per acknowledged position (best and median of ``--repeat`` runs), then
a cProfile of one run: where the time goes by stage, and the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from cmsv6.db import positions as position_store  # noqa: E402
from cmsv6.db.devices import Device  # noqa: E402
from cmsv6.plugins.gateway.gateway import Gateway  # noqa: E402
from cmsv6.plugins.gateway.protocol import JT808Factory  # noqa: E402
from cmsv6.plugins.gateway.tap import quiet_collector  # noqa: E402
from cmsv6.plugins.gateway.writer import PositionWriter  # noqa: E402
from cmsv6.protocols.jt808.codec import encode  # noqa: E402
from cmsv6.protocols.jt808.fields import BEIJING  # noqa: E402
from cmsv6.protocols.jt808.header import Header  # noqa: E402
from cmsv6.protocols.jt808.messages.location import Location  # noqa: E402

FIRST_PHONE = 13800000000

#: The additional items of a report: bench/loadgen.py's (what gateway_load.py sends), or
#: a unit's typical eight (bench/codec.py's).
EXTRAS = {
    "loadgen": lambda n: {0x01: n, 0x30: 25, 0x31: 12},
    "units": lambda n: {0x01: 123456 + n, 0x02: 450, 0x25: 0, 0x2A: 0, 0x2B: 0, 0x30: 25,
                        0x31: 12, 0x14: 0},  # fmt: skip
}


class StubDb:
    """Stands for ``Database``: a batch is quoted as psycopg2 quotes it, then committed at
    once; partitions exist."""

    writer_threads = 0

    def __init__(self) -> None:
        import psycopg2.extensions

        self._adapt = psycopg2.extensions.adapt
        self.batches = 0

    def run_batch(self, sql: str, args: Any = None) -> defer.Deferred[None]:
        for a in args or ():
            q = self._adapt(a)
            if hasattr(q, "encoding"):
                q.encoding = "utf8"
            q.getquoted()
        self.batches += 1
        return defer.succeed(None)

    def run_operation(self, sql: str, args: Any = None) -> defer.Deferred[None]:
        return defer.succeed(None)

    def copy_batch(self, *args: Any, **kw: Any) -> defer.Deferred[None]:
        self.batches += 1
        return defer.succeed(None)


def frames_for(devices: int, rounds: int, extras: str, start: datetime) -> list[list[bytes]]:
    """frames[r][d]: device d's escaped 0x0200 of round r."""
    make = EXTRAS[extras]
    out = []
    for r in range(rounds):
        t = (start + timedelta(seconds=2 * r)).astimezone(BEIJING)
        row = []
        for d in range(devices):
            loc = Location(
                alarm=0, status=3, latitude=22.5 + d * 1e-4 + r * 1e-5, longitude=114.0 + r * 1e-5,
                altitude=20, speed=40.0, direction=90, time=t, extras=make(r),
            )  # fmt: skip
            row.append(encode(Header(0x0200, f"0{FIRST_PHONE + d}", r & 0xFFFF), loc))
        out.append(row)
    return out


def connect(gw: Gateway, devices: int, device_ids: list[int]) -> list[tuple[Any, StringTransport]]:
    """One authenticated connection per device, on a fake transport."""
    factory = JT808Factory(gw)
    conns = []
    for d in range(devices):
        addr = IPv4Address("TCP", f"10.{d >> 16 & 255}.{d >> 8 & 255}.{d & 255}", 20000)
        proto = factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        session = proto.session
        session._cancel_auth_deadline()
        phone = str(FIRST_PHONE + d)  # canonical: no leading zero
        session.phone = phone
        session.header = Header(0x0102, "0" + phone, 0)
        session.device = Device(device_ids[d], phone, None, None, None, 4, 2013)
        session.last_seen = gw.clock.seconds()
        gw.sessions[phone] = session
        conns.append((proto, transport))
    return conns


def acks(transports: list[StringTransport]) -> int:
    """0x8001 frames written since the last call (a flag opens and closes each frame;
    flags inside are escaped)."""
    n = 0
    for t in transports:
        v = t.io.getvalue()
        if v:
            n += v.count(b"\x7e")
            t.clear()
    return n // 2


def check_acks(transports: list[StringTransport], expected: int) -> None:
    """Every answer so far is 0x8001 result 0 to a 0x0200."""
    from cmsv6.protocols.jt808.framing import Deframer

    n = 0
    for t in transports:
        for f in Deframer().feed(t.io.getvalue()):
            body = f.body  # type: ignore[union-attr]
            assert f.header.msg_id == 0x8001, f.header  # type: ignore[union-attr]
            assert body[2:5] == b"\x02\x00\x00", body.hex()
            n += 1
        t.clear()
    assert n == expected, (n, expected)


#: Python's own thresholds, restored between runs.
PYTHON_THRESHOLDS = gc.get_threshold()


def run_stub(devices: int, frames: list[list[bytes]], profile: cProfile.Profile | None = None,
             collector: str = "gateway") -> float:
    """CPU seconds for every frame acknowledged, on a task.Clock, the database stubbed.

    Profiled, the writer flushes on its clock only (``max_batch`` above a round), so that
    the stages of a report and of a batch are apart in the profile."""
    clock = task.Clock()
    db = StubDb()
    max_batch = 2000 if profile is None else devices + 1
    writer = PositionWriter(db, clock, concurrency=3, max_batch=max_batch)  # type: ignore[arg-type]
    gw = Gateway(db, clock, "gw-bench", "127.0.0.1:7611", writer=writer)  # type: ignore[arg-type]
    conns = connect(gw, devices, list(range(1, devices + 1)))
    transports = [t for _, t in conns]
    protos = [p for p, _ in conns]
    # The first round once, checked, outside the clock: months known, everything warm.
    for p, data in zip(protos, frames[0]):
        p.dataReceived(data)
    clock.advance(writer.window)
    check_acks(transports, devices)
    if collector == "gateway":
        quiet_collector()  # as twistd gateway does once it listens
    else:
        gc.collect()
    total = 0
    os.getppid()  # a marker: valgrind --tool=callgrind --zero-before=os_getppid (see --help)
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for row in frames[1:]:
        for p, data in zip(protos, row):
            p.dataReceived(data)
        clock.advance(writer.window)
        total += acks(transports)
    if profile is not None:
        profile.disable()
    cpu = time.process_time() - started
    os.getpgrp()  # the end marker: --dump-before=os_getpgrp
    expected = devices * (len(frames) - 1)
    assert total == expected, f"{total} acknowledged of {expected}"
    return cpu / expected


def run_real(devices: int, rounds: int, extras: str, start: datetime, repeat: int) -> list[float]:
    """CPU seconds per acknowledged position with a private PostgreSQL and writer threads
    (this process's CPU, every thread; PostgreSQL's is not counted)."""
    import psycopg2
    from twisted.internet import reactor

    from cmsv6.db.embedded import EmbeddedPostgres
    from cmsv6.db.service import Database
    from cmsv6.db.upgrade import upgrade

    workdir = Path(tempfile.mkdtemp(prefix="cmsv6-cpu-"))
    cluster = EmbeddedPostgres(workdir / "pg")
    results: list[float] = []
    cluster.init()
    cluster.start()
    try:
        dsn = cluster.create_database("cmsv6")
        upgrade(dsn)
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO devices (phone) SELECT '0' || (%s + g)::text"
                        " FROM generate_series(0, %s - 1) g ORDER BY g RETURNING id",
                        (FIRST_PHONE, devices))  # fmt: skip
            ids = [r[0] for r in cur.fetchall()]
        conn.close()

        @defer.inlineCallbacks
        def main() -> Any:
            db = Database(dsn, reactor, size=2, writer_threads=3)
            db.startService()
            yield db.ready()
            writer = PositionWriter(db, reactor, concurrency=3)
            gw = Gateway(db, reactor, "gw-bench", "127.0.0.1:7611", writer=writer)
            conns = connect(gw, devices, ids)
            protos = [p for p, _ in conns]
            transports = [t for _, t in conns]
            for attempt in range(repeat + 1):
                # New times each pass: the same reports again would be duplicates.
                later = start + timedelta(seconds=2 * rounds * attempt)
                frames = frames_for(devices, rounds, extras, later)
                expected = devices * len(frames)
                got = 0
                started = time.process_time()
                fed = 0
                for row in frames:
                    for p, data in zip(protos, row):
                        p.dataReceived(data)
                    fed += devices
                    # At most two rounds in flight: the writer's queue as under steady load.
                    while got < fed - devices:
                        yield task.deferLater(reactor, 0.002, lambda: None)
                        got += acks(transports)
                while got < expected:
                    yield task.deferLater(reactor, 0.002, lambda: None)
                    got += acks(transports)
                cpu = time.process_time() - started
                if attempt:  # the first pass creates the partitions and warms up
                    results.append(cpu / expected)
            writer.stop()
            yield db.stopService()

        d = defer.ensureDeferred(main())
        failure: list[Any] = []
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())
        reactor.run()
        if failure:
            failure[0].raiseException()
    finally:
        cluster.destroy()
    return results


def report_profile(prof: cProfile.Profile, positions: int, top: int) -> None:
    st = pstats.Stats(prof)
    total = st.total_tt  # type: ignore[attr-defined]
    stats = st.stats  # type: ignore[attr-defined]

    def cum(name: str, suffix: str) -> float:
        return sum(v[3] for (f, _, n), v in stats.items() if n == name and f.endswith(suffix))

    feed = cum("feed", "framing.py")
    decode = cum("decode_frame", "codec.py")
    frame = cum("frame_received", "terminal/session.py")
    store = cum("_store", "gateway/session.py")
    submit = cum("submit_then", "writer.py")
    advance = cum("advance", "task.py")
    batch = cum("write", "db/positions.py")
    quote = cum("run_batch", "gateway_cpu.py") + cum("copy_batch", "gateway_cpu.py")
    ack = cum("_stored", "gateway/session.py")
    sent = cum("write", "twisted/internet/testing.py")
    received = cum("dataReceived", "terminal/protocol.py")
    stages = [
        ("protocol: dataReceived, the loop over frames", received - feed - frame),
        ("deframe: flags, unescape, check code, header (Deframer.feed)", feed),
        ("decode: the 0x0200 body (decode_frame)", decode),
        ("session logic (frame_received without decode and _store)", frame - decode - store),
        ("rows and alarms (DeviceSession._store without the writer)", store - submit),
        ("writer: queue, batches, Deferreds, callbacks", submit + advance - batch - quote - ack),
        ("batch: rows to statement and argument (positions.write)", batch),
        ("batch: psycopg2 quoting the argument", quote),
        ("ack: the 0x8001 after commit (_stored, without the write)", ack - sent),
        ("transport.write of the 0x8001 (StringTransport)", sent),
    ]
    print(f"\ncProfile of one run (the writer flushed by its clock only; profiled:"
          f" {1e6 * total / positions:.1f} µs per position, the profiler's overhead included)")
    print(f"{'stage, exclusive':<66} µs/pos  share")
    for label, t in stages:
        print(f"{label:<66} {1e6 * t / positions:6.2f}  {100 * t / total:4.0f}%")
    rest = total - sum(t for _, t in stages)
    print(f"{'other (the bench loop, the clock)':<66} {1e6 * rest / positions:6.2f}  {100 * rest / total:4.0f}%")
    print(f"\ntop {top} by own time:")
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print("  µs/pos  calls/pos  function")
    for (f, line, name), (cc, nc, tt, ct, _) in rows:
        where = f"{Path(f).parent.name}/{Path(f).name}:{line}" if f != "~" else ""
        print(f"  {1e6 * tt / positions:6.2f}  {nc / positions:9.2f}  {name} {where}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=21, help="reports per device (the first warms up)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", choices=("stub", "real"), default="stub")
    parser.add_argument("--extras", choices=sorted(EXTRAS), default="loadgen")
    parser.add_argument("--profile", type=int, default=25, help="top functions to print (0: no profile)")
    parser.add_argument("--collector", choices=("gateway", "python", "both"), default="both",
                        help="stub: the garbage collector as twistd gateway sets it (tap.quiet_collector),"
                             " Python's default, or both in turn")
    args = parser.parse_args()
    print(f"# bench/gateway_cpu.py {' '.join(sys.argv[1:])} · {date.today()} · {os.cpu_count()} cores"
          f" · load average {open('/proc/loadavg').read().split()[0]}", flush=True)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    frames = frames_for(args.devices, args.rounds, args.extras, start)
    positions = args.devices * (args.rounds - 1)
    def report(figures: list[float], how: str) -> None:
        us = sorted(1e6 * f for f in figures)
        print(f"{args.devices} devices x {args.rounds - 1} reports ({args.extras} extras), database"
              f" {args.db}{how}: CPU per acknowledged position: best {us[0]:.1f} µs, median"
              f" {statistics.median(us):.1f} µs ({' '.join(f'{u:.1f}' for u in us)})", flush=True)

    if args.db == "stub":
        modes = ("python", "gateway") if args.collector == "both" else (args.collector,)
        runs: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.repeat):  # interleaved: the machine's drift weighs on both
            for mode in modes:
                runs[mode].append(run_stub(args.devices, frames, collector=mode))
                gc.unfreeze()
                gc.set_threshold(*PYTHON_THRESHOLDS)
        for mode in modes:
            report(runs[mode], f", collector {mode}" + (" (baseline)" if mode == "python" else ""))
    else:
        report(run_real(args.devices, args.rounds, args.extras, start, args.repeat), "")
    if args.profile:
        prof = cProfile.Profile(time.process_time)  # CPU time: others share the machine
        run_stub(args.devices, frames, prof)
        report_profile(prof, positions, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
