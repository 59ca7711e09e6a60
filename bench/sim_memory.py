"""Memory and CPU per simulated device: N devices against the fake platform (in its own
process), RSS before the fleet starts and once every device is authenticated and reporting.

    .venv/bin/python bench/sim_memory.py [--devices 2000] [--interval 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import time

from twisted.internet import reactor, task
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fleet import Fleet, FleetConfig


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=30.0, help="run this long once all are up")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.devices + 100)), hard))
    port = free_port()
    platform = subprocess.Popen(
        [sys.executable, "-m", "cmsv6.sim.fakeplatform", f"tcp:{port}:interface=127.0.0.1"],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    before = rss_kb()
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{port}",
        devices=args.devices,
        seed=1,
        connect_rate=2000,
        status_interval=0,
        device=DeviceConfig(interval=args.interval, gap_probability=0.0),
    )
    fleet = Fleet(reactor, config)  # type: ignore[arg-type]
    figures: dict[str, float] = {}

    async def run() -> None:
        fleet.start()
        t0 = time.monotonic()
        while fleet.counters.authenticated < args.devices or fleet.counters.acknowledged < args.devices:
            if time.monotonic() - t0 > 120:
                raise SystemExit(f"not all up after 120 s: {fleet.status_line()}")
            await task.deferLater(reactor, 0.5, lambda: None)
        figures["up_s"] = time.monotonic() - t0
        figures["rss_up"] = rss_kb()
        cpu0, acked0 = time.process_time(), fleet.counters.acknowledged
        await task.deferLater(reactor, args.seconds, lambda: None)
        figures["rss_after"] = rss_kb()
        figures["cpu"] = time.process_time() - cpu0
        figures["acked"] = fleet.counters.acknowledged - acked0
        await fleet.stop()

    def finish(result: object) -> None:
        if isinstance(result, Failure):
            result.printTraceback()
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(lambda: ensureDeferred(run()).addBoth(finish))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    platform.terminate()
    platform.wait()
    n = args.devices
    print(fleet.status_line())
    print(f"devices {n}, interval {args.interval} s, all up in {figures['up_s']:.1f} s")
    print(f"RSS before fleet      {before / 1024:8.1f} MB")
    print(f"RSS all up            {figures['rss_up'] / 1024:8.1f} MB  "
          f"({(figures['rss_up'] - before) / n:.1f} KB per device)")
    print(f"RSS after {args.seconds:.0f} s        {figures['rss_after'] / 1024:8.1f} MB  "
          f"({(figures['rss_after'] - before) / n:.1f} KB per device)")
    rate = figures["acked"] / args.seconds
    print(f"CPU {figures['cpu']:.2f} s for {figures['acked']:.0f} acknowledged positions "
          f"({rate:.0f}/s, {1e6 * figures['cpu'] / max(1, figures['acked']):.0f} µs CPU each, "
          f"heartbeats and timers included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
