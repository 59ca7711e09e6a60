"""Gateway load benchmark: many devices on loopback, a real PostgreSQL, the gateway as one
process or several (``--gateways N``), and the reconnect storm (``--storm``).

    .venv/bin/python bench/gateway_load.py [--devices 19000] [--interval 0.95] [--seconds 60]
        [--gateways 2] [--storm] [--generator c|python] [--processes 2]

Starts a private PostgreSQL in a temporary directory, ``twistd gateway`` (open
registration; ``--processes N`` when ``--gateways N``, the workers sharing one port) and
``--processes`` load generators: by default bench/loadgen_c.c, built here with gcc, one
thread on epoll (every position a real 0x0200, every 0x8001 read and matched to its serial;
bench/loadgen.py with ``--generator python``). It waits until every device is
authenticated, then measures for ``--seconds``: connections held, positions sent,
acknowledged (after commit) and stored per second, acknowledgement latency p50/p99, the
gateways' CPU and RSS, and the CPU PostgreSQL and the load generators used. With
``--storm`` it then kills the gateway (or its workers) with SIGKILL under load, restarts it
(the supervisor restarts workers by itself) and times until every device is authenticated
again, printing the acknowledged rate meanwhile. Last, every position a device saw
acknowledged is looked up in the database with bench/no_loss.py's check (stored exactly
once). It prints the figures against issue 15's targets and the baseline, and exits 1 if
a target is missed. Everything runs on this machine, over loopback only, and stops by itself.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, datetime, timezone
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cmsv6.db.embedded import EmbeddedPostgres  # noqa: E402
from cmsv6.db.upgrade import upgrade  # noqa: E402
from tests.support.process import GatewayProcess, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def postgres_cpu(cluster: EmbeddedPostgres) -> float:
    """CPU seconds of this benchmark's PostgreSQL: its postmaster and backends (not the
    other clusters on the machine: tests running meanwhile start their own)."""
    postmaster = cluster.pid
    if postmaster is None:
        return 0.0
    return cpu_seconds(postmaster) + sum(cpu_seconds(pid) for pid in children(postmaster))


GENERATOR_C = ROOT / "bench" / "loadgen_c.c"


def compile_generator(workdir: Path) -> Path:
    """bench/loadgen_c.c built with this machine's gcc (-O2) into ``workdir``."""
    out = workdir / "loadgen"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(GENERATOR_C)], check=True)
    return out


class Load:
    """One load process and the latest of its JSON lines."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.last: dict = {}
        self.latency: Counter[int] = Counter()
        self.recording = False
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.last = data
                if self.recording:
                    self.latency.update({int(k): v for k, v in data["latency"].items()})

    def get(self, key: str) -> float:
        with self._lock:
            return float(self.last.get(key, 0))


def percentile(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= q * total:
            return ms + 0.5
    return float(max(hist))


def stored(cluster: EmbeddedPostgres) -> int:
    return int(cluster.psql("SELECT count(*) FROM positions", "cmsv6") or 0)


#: The figures before issue 15 (bench/RESULTS.md, "Gateway load", 2026-11-25 and 12-01), printed
#: beside this run's.
BASELINE = (
    "baseline (bench/RESULTS.md, one gateway process, Python load generator): 19,006 connections"
    " held; 5,079/s acknowledged at 5,000/s offered (p99 380 ms); saturation 7,200-10,300/s with"
    " p99 of seconds; storm: 16,014 of 19,000 authenticated after 240 s under load (not drained)"
)

#: The bench's gateway admits everything from loopback (one address for every device).
GATEWAY_LIMITS = [
    "--idle_timeout", "600", "--jt808_max_connections", "100000", "--jt808_max_per_address", "100000",
    "--register_per_address", "1000000", "--open_per_hour", "1000000", "--open_total", "10000000",
    # a device whose 0x8100 came too late (it was closed) registers again, as a unit would
    "--reregister", "terminal_id",
]  # fmt: skip


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


class Gateways:
    """``twistd gateway`` with ``--gateways`` worker processes (1: the process itself)."""

    def __init__(self, dsn: str, port: int, workdir: Path, n: int) -> None:
        extra = [*GATEWAY_LIMITS]
        if n > 1:
            extra += ["--processes", str(n), "--metrics", ""]
        self.n = n
        self.process = GatewayProcess(dsn, port, workdir, *extra)

    def start(self) -> None:
        self.process.start()
        if self.n > 1:
            deadline = time.monotonic() + 60
            while len(children(self.process.pid)) < self.n and time.monotonic() < deadline:
                time.sleep(0.1)

    def pids(self) -> list[int]:
        """The processes that do the work: the workers (with their supervisor), or the one."""
        return [self.process.pid, *children(self.process.pid)] if self.n > 1 else [self.process.pid]

    def workers(self) -> list[int]:
        return children(self.process.pid) if self.n > 1 else [self.process.pid]

    def kill(self, victims: str) -> None:
        """kill -9: the one process (started again at once, as a service manager would) or
        the workers (``victims`` "all" or "one"; the supervisor restarts them)."""
        if self.n == 1:
            self.process.kill()
            self.process.start(wait=False)
            return
        workers = sorted(self.workers())
        for pid in workers if victims == "all" else workers[:1]:
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.process.stop()


def total(loads: list[Load], key: str) -> float:
    return sum(load.get(key) for load in loads)


def no_loss(dsn: str, files: list[tuple[Path, int]]) -> tuple[int, int, int]:
    """(acknowledged positions checked, missing, stored twice), with bench/no_loss.py's check:
    every position a device saw acknowledged must be stored exactly once."""
    from bench.no_loss import check, stored

    acks = []
    for path, first in files:
        data = array.array("i")
        raw = path.read_bytes()
        data.frombytes(raw[: len(raw) - len(raw) % 16])
        for i in range(0, len(data), 4):
            index, t, lat, lon = data[i : i + 4]
            acks.append(Ack(f"{first + index:012d}", datetime.fromtimestamp(t, timezone.utc), lat / 1e6, lon / 1e6))
    result = check(acks, stored(dsn))
    for example in result.examples:
        print(f"  no loss: {example}")
    return result.acknowledged, result.missing, result.duplicates


@attrs.frozen
class Ack:
    phone: str
    time: datetime
    latitude: float
    longitude: float


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=19000)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--gateways", type=int, default=1,
                        help="gateway processes (twistd gateway --processes N, one shared port)")
    parser.add_argument("--generator", choices=("c", "python"), default="c",
                        help="c: bench/loadgen_c.c built with gcc (cheap); python: bench/loadgen.py")
    parser.add_argument("--interval", type=float, default=0.95, help="seconds between a device's reports")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--ramp", type=float, default=120, help="at most this long to connect everyone")
    parser.add_argument("--connect-rate", type=float, default=2000, help="new connections a second")
    parser.add_argument("--storm", action="store_true",
                        help="then kill -9 the gateway(s) under load and time until all are back")
    parser.add_argument("--storm-victims", choices=("all", "one"), default="all",
                        help="with --gateways N: kill every worker or one")
    parser.add_argument("--storm-max", type=float, default=180, help="give up on the storm after this long")
    parser.add_argument("--reconnect", type=float, default=5.0,
                        help="a device reconnects after a random 0..this many seconds")
    parser.add_argument("--no-loss", action=argparse.BooleanOptionalAction, default=True,
                        help="check every acknowledged position is stored once (bench/no_loss.py's check)")
    args = parser.parse_args()
    # SIGTERM (timeout, a session ending) unwinds like ^C: the gateways and PostgreSQL stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.generator == "python" and args.no_loss:
        args.no_loss = False  # bench/loadgen.py does not record its acknowledgements
    offered = args.devices / args.interval
    print(f"# bench/gateway_load.py {' '.join(sys.argv[1:])} · {date.today()} · {os.cpu_count()} cores"
          f" · load average {Path('/proc/loadavg').read_text().split()[0]}")
    print(f"# {args.devices} devices in {args.processes} {args.generator} load processes, one report each"
          f" {args.interval} s (offered {offered:,.0f}/s), {args.gateways} gateway process(es),"
          f" {args.seconds:.0f} s measured{', then the storm' if args.storm else ''}")
    print(f"# {BASELINE}")
    workdir = Path(tempfile.mkdtemp(prefix="cmsv6-bench-"))
    cluster = EmbeddedPostgres(workdir / "pg")
    gateways = None
    loads: list[Load] = []
    ack_files: list[tuple[Path, int]] = []
    results: list[tuple[str, str, bool]] = []
    try:
        cluster.init()
        cluster.start()
        dsn = cluster.create_database("cmsv6")
        upgrade(dsn)
        port = free_port()
        gateways = Gateways(dsn, port, workdir, args.gateways)
        gateways.start()
        per = args.devices // args.processes
        duration = args.ramp + args.seconds + (args.storm_max if args.storm else 0) + 60
        generator = compile_generator(workdir) if args.generator == "c" else None
        for i in range(args.processes):
            n = per if i < args.processes - 1 else args.devices - per * (args.processes - 1)
            first = 13800000000 + i * per
            common = ["--port", str(port), "--devices", str(n), "--first", str(first),
                      "--interval", str(args.interval), "--duration", str(duration),
                      "--connect-rate", str(args.connect_rate / args.processes)]  # fmt: skip
            if generator is not None:
                acks = workdir / f"acks-{i}.bin"
                ack_files.append((acks, first))
                command = [str(generator), *common, "--reconnect", str(args.reconnect)]
                command += ["--acks", str(acks)] if args.no_loss else []
            else:
                command = [sys.executable, str(ROOT / "bench" / "loadgen.py"), *common]
            loads.append(Load(command))
        started = time.monotonic()
        while time.monotonic() - started < args.ramp:
            if total(loads, "authenticated") >= args.devices:
                break
            time.sleep(0.5)
        ramp = time.monotonic() - started
        authenticated = total(loads, "authenticated")
        print(f"ramp: {authenticated:,.0f} of {args.devices:,} devices authenticated in {ramp:.0f} s"
              f" (gateway log: {workdir}/gateway-1.log)")
        time.sleep(max(5.0, 3 * args.interval))  # let the reports settle into their rhythm
        for load in loads:
            load.recording = True
        pids = gateways.pids()
        t0 = time.monotonic()
        acked0 = total(loads, "acked")
        sent0 = total(loads, "sent")
        stored0 = stored(cluster)
        gw_cpu0 = sum(cpu_seconds(pid) for pid in pids)
        pg_cpu0 = postgres_cpu(cluster)
        load_cpu0 = total(loads, "cpu")
        held = []
        rss = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(5)
            workers = gateways.workers()
            held.append(sum(sockets(pid) for pid in workers))
            rss.append(max(rss_mib(pid) for pid in workers))
        elapsed = time.monotonic() - t0
        acked = total(loads, "acked") - acked0
        sent = total(loads, "sent") - sent0
        stored_n = stored(cluster) - stored0
        gw_cpu = (sum(cpu_seconds(pid) for pid in pids) - gw_cpu0) / elapsed
        pg_cpu = (postgres_cpu(cluster) - pg_cpu0) / elapsed
        load_cpu = (total(loads, "cpu") - load_cpu0) / elapsed
        for load in loads:
            load.recording = False
        hist: Counter[int] = Counter()
        for load in loads:
            hist.update(load.latency)
        p99 = percentile(hist, 0.99)
        rate = acked / elapsed
        print(f"connections held by the gateway(s): {min(held):,} (min over the window)")
        print(f"sent: {sent / elapsed:,.0f} positions/s (skipped by the generator, socket full:"
              f" {total(loads, 'skipped'):,.0f})")
        print(f"acknowledged after commit: {rate:,.0f} positions/s")
        print(f"stored: {stored_n / elapsed:,.0f} positions/s")
        print(f"ack latency: p50 {percentile(hist, 0.50):.1f} ms, p99 {p99:.1f} ms")
        print(f"gateway ({args.gateways} process(es)): CPU {gw_cpu * 100:.0f}% of a core, RSS"
              f" {max(rss):.0f} MiB (max of one process)")
        print(f"postgres: CPU {pg_cpu * 100:.0f}% · load generator ({args.generator}): CPU"
              f" {load_cpu * 100:.0f}% of a core ({load_cpu / max(sent / elapsed, 1) * 1e6:.1f} µs per"
              f" position sent)")
        results.append(("19,000 connections", f"{min(held):,} held", min(held) >= 19000))
        results.append(("20,000 positions/s acknowledged after commit for 60 s",
                        f"{rate:,.0f}/s for {elapsed:.0f} s", rate >= 20000 and elapsed >= 60))
        results.append(("p99 ack latency <= 250 ms", f"{p99:,.0f} ms", p99 <= 250))
        if args.storm:
            print(f"storm: kill -9 {'the gateway' if args.gateways == 1 else args.storm_victims + ' worker(s)'}"
                  f" under load; devices reconnect after 0..{args.reconnect:g} s")
            auths0 = total(loads, "authentications")
            killed = time.monotonic()
            gateways.kill(args.storm_victims)
            lost_at = None
            drained = None
            rates: list[float] = []
            last = (killed, total(loads, "acked"))
            while time.monotonic() - killed < args.storm_max:
                time.sleep(0.5)
                now, authenticated = time.monotonic(), total(loads, "authenticated")
                if lost_at is None and authenticated < args.devices:
                    lost_at = now
                if now - last[0] >= 5:
                    acked_now = total(loads, "acked")
                    rates.append((acked_now - last[1]) / (now - last[0]))
                    last = (now, acked_now)
                if lost_at is not None and authenticated >= args.devices:
                    drained = now - killed
                    break
            again = total(loads, "authentications") - auths0
            if drained is None:
                print(f"storm: NOT drained: {total(loads, 'authenticated'):,.0f} of {args.devices:,}"
                      f" authenticated after {args.storm_max:.0f} s ({again:,.0f} authentications)")
            else:
                print(f"storm: every device authenticated again {drained:.1f} s after the kill"
                      f" ({again:,.0f} authentications)")
            if rates:
                print(f"storm: acknowledged positions/s in 5 s steps: {', '.join(f'{r:,.0f}' for r in rates)}")
            results.append(("storm drained within 60 s", "not drained" if drained is None else
                            f"{drained:.1f} s", drained is not None and drained <= 60))
        if args.no_loss:
            for load in loads:
                load.proc.terminate()
            for load in loads:
                load.proc.wait(timeout=30)
            checked, missing, twice = no_loss(dsn, ack_files)
            print(f"no loss: {checked:,} acknowledged positions checked, {missing:,} missing,"
                  f" {twice:,} stored twice")
            results.append(("0 acknowledged positions lost", f"{missing:,} missing of {checked:,},"
                            f" {twice:,} twice", missing == 0 and twice == 0 and checked > 0))
        print("targets (issue 15):")
        for target, measured, ok in results:
            print(f"  {target:<55} {measured:<28} {verdict(ok)}")
        return 0 if all(ok for _, _, ok in results) else 1
    finally:
        for load in loads:
            if load.proc.poll() is None:
                load.proc.terminate()
        for load in loads:
            try:
                load.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                load.proc.kill()
        if gateways is not None:
            gateways.stop()
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
