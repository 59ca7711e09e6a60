"""``cmsv6 sim``: run simulated DVRs against a JT/T 808 server until Ctrl-C or
``--duration``; a status line every few seconds on stderr."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from typing import IO

from twisted.internet.error import ReactorNotRunning
from twisted.logger import (
    FilteringLogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.failure import Failure

from cmsv6.sim.audio import CODECS
from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fleet import Fleet, FleetConfig, phones
from cmsv6.sim.route import Area
from cmsv6.sim.video import AUDIO_HEADERS, VideoConfig


def _positive(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return x


def _probability(value: str) -> float:
    x = float(value)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not a probability (0-1)")
    return x


def _count(value: str) -> int:
    x = int(value)
    if x < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return x


def _channels(value: str) -> int:
    x = int(value)
    if not 0 <= x <= 255:
        raise argparse.ArgumentTypeError(f"{value} is not a channel count (0-255)")
    return x


def _channel_list(value: str) -> frozenset[int]:
    try:
        channels = frozenset(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of channels (2,3)") from None
    if not all(1 <= c <= 255 for c in channels):
        raise argparse.ArgumentTypeError(f"{value!r}: channels are 1-255")
    return channels


def _packet_number(value: str) -> int:
    x = int(value)
    if x < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a packet number (1, 2...; 0: none)")
    return x


def default_cache_dir() -> str:
    """Where the simulator keeps its encoded clip unless told: the temporary directory."""
    return os.path.join(tempfile.gettempdir(), "cmsv6-sim")


def _center(value: str) -> tuple[float, float]:
    try:
        lat, lon = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not LATITUDE,LONGITUDE") from None
    return lat, lon


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="tcp:127.0.0.1:7611",
                   help="client endpoint of the login server or gateway (default %(default)s)")
    p.add_argument("--devices", type=_count, default=1, help="number of devices (default 1)")
    p.add_argument("--first-phone", default="013800000000",
                   help="phone of the first device; the others follow (default %(default)s)")
    p.add_argument("--version", choices=("2013", "2019", "mixed"), default="2013",
                   help="JT/T 808 edition of the devices; mixed alternates (default 2013)")
    p.add_argument("--interval", type=_positive, default=10.0,
                   help="seconds between position reports (default 10)")
    p.add_argument("--duration", type=_positive, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--heartbeat", type=_positive, default=30.0,
                   help="seconds between heartbeats (default 30)")
    p.add_argument("--timeout", type=_positive, default=10.0,
                   help="JT/T 808 reply timeout T: retransmit after T, 2T, 3T... (default 10)")
    p.add_argument("--retries", type=int, default=3, help="retransmissions (default 3)")
    p.add_argument("--gap-probability", type=_probability, default=0.001,
                   help="chance per report of losing coverage for a while (default 0.001)")
    p.add_argument("--gap-seconds", type=_positive, default=60.0,
                   help="mean length of a coverage gap (default 60)")
    p.add_argument("--alarm-probability", type=_probability, default=0.001,
                   help="chance per report of raising an emergency alarm (default 0.001)")
    p.add_argument("--speed-limit", type=int, default=75,
                   help="km/h above which the overspeed alarm is on (default 75)")
    p.add_argument("--center", type=_center, default=(22.54, 114.06),
                   help="LATITUDE,LONGITUDE the vehicles drive around (default Shenzhen)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--state", default=None,
                   help="JSON file keeping authentication codes: a re-run authenticates directly")
    p.add_argument("--ack-log", default=None,
                   help="append one JSON line per acknowledged position to this file")
    p.add_argument("--plate-prefix", default="粤B",
                   help="plates are PREFIX00001... (default 粤B)")
    p.add_argument("--connect-rate", type=_positive, default=500.0,
                   help="devices started per second (default 500)")
    p.add_argument("--fallback-after", type=_count, default=3,
                   help="failed connections in a row before trying the backup server (default 3)")
    p.add_argument("--reconnect-max", type=_positive, default=60.0,
                   help="longest wait between reconnection attempts, before jitter (default 60)")
    p.add_argument("--max-unacked", type=_count, default=10_000,
                   help="unacknowledged positions kept per device (default 10000)")
    p.add_argument("--status-interval", type=_positive, default=5.0,
                   help="seconds between status lines (default 5)")
    p.add_argument("--channels", type=_channels, default=4,
                   help="camera channels per device, streaming on 0x9101 (default 4; 0: none)")
    p.add_argument("--audio-header", choices=AUDIO_HEADERS, default="hisilicon",
                   help="G.711A frames with the HiSilicon header 00 01 LL 00, or bare "
                   "(default %(default)s)")
    p.add_argument("--audio-codec", choices=tuple(CODECS), default="g711a",
                   help="the cameras' audio codec, as 0x1003 says it: live and talk-back "
                   "audio is sent in it and talk-back decoded from it (default %(default)s)")
    p.add_argument("--no-audio-output", action="store_true",
                   help="the devices have no loudspeaker: 0x1003 says so, and talk-back and "
                   "broadcast are refused")
    p.add_argument("--h265-channels", type=_channel_list, default=frozenset(),
                   help="channels that stream H.265, e.g. 2 or 2,3 (default: none, all H.264)")
    p.add_argument("--recording-days", type=_count, default=3,
                   help="days of recordings the devices list for 0x9205 (default 3)")
    p.add_argument("--lose-packet", type=_packet_number, default=0,
                   help="testing: leave packet N out of the first send of every sub-packaged "
                   "reply, so the server must ask for it again with 0x8003 (default 0: none)")
    p.add_argument("--video-pace", type=_positive, default=1.0,
                   help="clip seconds sent per second: 1 is real time, more fast-forwards "
                   "(default 1)")
    p.add_argument("--cache-dir", default=None,
                   help="directory keeping the encoded clip between runs "
                   "(default: cmsv6-sim in the temporary directory)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v info, -vv debug)")


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    """The fleet configuration; ValueError for a combination that cannot work."""
    names = phones(args.first_phone, args.devices)
    if args.version != "2019" and len(names[-1]) > 12:
        raise ValueError(f"phone {names[-1]} has more than the 12 digits of a 2013 header")
    lat, lon = args.center
    device = DeviceConfig(
        interval=args.interval,
        heartbeat=args.heartbeat,
        timeout=args.timeout,
        retries=max(0, args.retries),
        speed_limit=args.speed_limit,
        alarm_probability=args.alarm_probability,
        gap_probability=args.gap_probability,
        gap_seconds=args.gap_seconds,
        max_unacked=args.max_unacked,
        fallback_after=args.fallback_after,
        reconnect_max=args.reconnect_max,
        area=Area(lat, lon),
        channels=args.channels,
        audio_codec=args.audio_codec,
        audio_output=not args.no_audio_output,
        h265_channels=args.h265_channels,
        recording_days=args.recording_days,
        lose_packet=args.lose_packet,
    )
    video = VideoConfig(
        audio_header=args.audio_header,
        pace=args.video_pace,
        cache_dir=args.cache_dir or default_cache_dir(),
    )
    return FleetConfig(
        server=args.server,
        devices=args.devices,
        first_phone=args.first_phone,
        version=args.version,
        plate_prefix=args.plate_prefix,
        duration=args.duration,
        seed=args.seed,
        connect_rate=args.connect_rate,
        state=args.state,
        ack_log=args.ack_log,
        status_interval=args.status_interval,
        device=device,
        video=video,
    )


def raise_file_limit(needed: int, err: IO[str]) -> None:
    """Open as many sockets as there are devices (soft limit up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        err.write(
            f"sim: only {target} open files allowed; {needed} are needed "
            f"(raise 'ulimit -n' or use several processes)\n"
        )


def _not_factory_noise(event: LogEvent) -> PredicateResult:
    """Drop the endpoints' "Starting/Stopping factory" lines: one per connection."""
    fmt = event.get("log_format") or ""
    if fmt.startswith(("Starting factory", "Stopping factory")):
        return PredicateResult.no
    return PredicateResult.maybe


def run(args: argparse.Namespace, err: IO[str] | None = None) -> int:
    err = err or sys.stderr
    try:
        config = config_from_args(args)
    except ValueError as e:
        err.write(f"sim: {e}\n")
        return 2
    raise_file_limit(config.devices + 64, err)
    level = (LogLevel.warn, LogLevel.info, LogLevel.debug)[min(args.verbose, 2)]
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(err), [LogLevelFilterPredicate(level), _not_factory_noise]
            )
        ],
        redirectStandardIO=False,
    )
    from twisted.internet import reactor

    fleet = Fleet(reactor, config, status_out=err)  # type: ignore[arg-type]
    status = {"code": 0}

    def finished(result: object) -> None:
        if isinstance(result, Failure):
            err.write(f"sim: {result.getErrorMessage()}\n")
            status["code"] = 1
        try:
            reactor.stop()  # type: ignore[attr-defined]
        except ReactorNotRunning:
            pass

    def begin() -> None:
        try:
            fleet.start().addBoth(finished)
        except Exception as e:  # noqa: BLE001 - reported, then stop
            finished(Failure(e))

    reactor.callWhenRunning(begin)  # type: ignore[attr-defined]
    # Ctrl-C stops the reactor; before it does, every device logs out and closes.
    reactor.addSystemEventTrigger("before", "shutdown", fleet.stop)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    err.write(fleet.status_line() + "\n")
    return status["code"]
