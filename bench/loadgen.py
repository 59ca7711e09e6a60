"""A lean load process for bench/gateway_load.py: N JT/T 808 devices on loopback.

Each device registers, authenticates, then sends a 0x0200 every ``--interval`` seconds
(spread evenly) and times each report from send to its 0x8001. Lighter than ``cmsv6 sim``
(no routes, no commands, no retransmission) so that the load generator takes as little of
the machine as possible from the gateway it measures. Prints one JSON line a second:
counters and a latency histogram (1 ms buckets) that the orchestrator merges.

    python bench/loadgen.py --port 7611 --devices 4000 --first 13800000000 --interval 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import protocol, task  # noqa: E402

from cmsv6.protocols.jt808.codec import encode  # noqa: E402
from cmsv6.protocols.jt808.fast import decode_platform_response  # noqa: E402
from cmsv6.protocols.jt808.fields import BEIJING  # noqa: E402
from cmsv6.protocols.jt808.framing import Deframer, Frame  # noqa: E402
from cmsv6.protocols.jt808.header import Header  # noqa: E402
from cmsv6.protocols.jt808.messages.core import Authenticate, Register, RegisterResponse  # noqa: E402
from cmsv6.protocols.jt808.messages.location import Location  # noqa: E402
from cmsv6.protocols.jt808.codec import decode_body  # noqa: E402


class Stats:
    def __init__(self) -> None:
        self.connected = 0
        self.authenticated = 0
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self.errors = 0
        self.latency: Counter[int] = Counter()  # ms bucket → count


class Device(protocol.Protocol):
    def __init__(self, gen: LoadGen, phone: str) -> None:
        self.gen = gen
        self.phone = phone
        self.serial = 0
        self.deframer = Deframer()
        self.authenticated = False
        self.sent_at: dict[int, float] = {}
        self.n = 0

    def header(self, msg_id: int) -> Header:
        self.serial = (self.serial + 1) & 0xFFFF
        return Header(msg_id, self.phone, self.serial)

    def connectionMade(self) -> None:  # noqa: N802
        self.gen.stats.connected += 1
        self.transport.write(encode(self.header(0x0100), Register(44, 300, "BENCH", "LG", "T1", 1, "B")))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.gen.stats.connected -= 1
        if self.authenticated:
            self.gen.stats.authenticated -= 1
        self.authenticated = False
        self.gen.active.discard(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        now = time.monotonic()
        for item in self.deframer.feed(data):
            if not isinstance(item, Frame):
                self.gen.stats.errors += 1
                continue
            msg_id = item.header.msg_id
            if msg_id == 0x8001:
                reply = decode_platform_response(item.body)
                if reply.reply_id == 0x0200:
                    sent = self.sent_at.pop(reply.reply_serial, None)
                    if sent is not None:
                        if reply.result == 0:
                            self.gen.stats.acked += 1
                            self.gen.stats.latency[int((now - sent) * 1000)] += 1
                        else:
                            self.gen.stats.refused += 1
                elif reply.reply_id == 0x0102 and reply.result == 0 and not self.authenticated:
                    self.authenticated = True
                    self.gen.stats.authenticated += 1
                    self.gen.active.add(self)
            elif msg_id == 0x8100:
                body = decode_body(0x8100, item.body)
                assert isinstance(body, RegisterResponse)
                if body.result == 0 and body.auth_code:
                    self.transport.write(encode(self.header(0x0102), Authenticate(body.auth_code)))
                else:
                    self.gen.stats.errors += 1

    def report(self, now: datetime) -> None:
        self.n += 1
        h = self.header(0x0200)
        loc = Location(
            alarm=0,
            status=3,
            latitude=22.5 + (hash(self.phone) % 1000) / 10000 + self.n * 1e-5,
            longitude=114.0 + self.n * 1e-5,
            altitude=20,
            speed=40.0,
            direction=90,
            time=now,
            extras={0x01: self.n, 0x30: 25, 0x31: 12},
        )
        self.sent_at[h.serial] = time.monotonic()
        if len(self.sent_at) > 1000:  # never answered: forget the oldest
            del self.sent_at[next(iter(self.sent_at))]
        self.transport.write(encode(h, loc))
        self.gen.stats.sent += 1


class LoadGen:
    def __init__(self, reactor: Any, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.args = args
        self.stats = Stats()
        self.active: set[Device] = set()
        self.devices: list[Device] = []
        self._slot = 0

    def connect_some(self) -> None:
        from twisted.internet import endpoints

        batch = max(1, int(self.args.connect_rate / 20))
        for _ in range(batch):
            if len(self.devices) >= self.args.devices:
                return
            phone = f"{int(self.args.first) + len(self.devices):012d}"
            d = Device(self, phone)
            self.devices.append(d)
            endpoint = endpoints.TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.args.port, timeout=30)
            endpoints.connectProtocol(endpoint, d).addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        self.stats.errors += 1

    def tick(self) -> None:
        """Every 50 ms: the devices whose slot comes up report (each once per interval)."""
        slots = max(1, int(self.args.interval / 0.05))
        now = datetime.now(BEIJING).replace(microsecond=0)
        for i in range(self._slot, len(self.devices), slots):
            d = self.devices[i]
            if d.authenticated and d.transport is not None:
                d.report(now)
        self._slot = (self._slot + 1) % slots

    def print_stats(self) -> None:
        s = self.stats
        line = {
            "t": time.time(), "connected": s.connected, "authenticated": s.authenticated,
            "sent": s.sent, "acked": s.acked, "refused": s.refused, "errors": s.errors,
            "latency": dict(s.latency), "cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        }  # fmt: skip
        s.latency = Counter()
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--first", default="13800000000")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--connect-rate", type=float, default=2000)
    parser.add_argument("--duration", type=float, default=120)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from twisted.internet import reactor

    gen = LoadGen(reactor, args)
    task.LoopingCall(gen.connect_some).start(0.05)
    task.LoopingCall(gen.tick).start(0.05, now=False)
    task.LoopingCall(gen.print_stats).start(1.0, now=False)
    reactor.callLater(args.duration, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main()
