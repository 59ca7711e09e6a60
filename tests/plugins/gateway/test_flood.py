"""A flood of unauthenticated peers against a real ``twistd gateway`` process: the
connection caps refuse the excess, nothing they send is kept, and the process's memory
(its RSS, from /proc) comes back to where it was once they are gone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol

from cmsv6.protocols.jt808.codec import encode, encode_packets
from cmsv6.protocols.jt808.framing import Deframer, Frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import Heartbeat
from cmsv6.protocols.jt808.model import RawBody
from tests.support.device import until, within
from tests.support.process import GatewayProcess, free_port

#: Sources (all loopback on Linux), connections tried from each, and the caps.
SOURCES = [f"127.0.0.{i}" for i in range(2, 8)]
PER_SOURCE = 5
MAX_PER_ADDRESS = 4
MAX_CONNECTIONS = 20
#: What each peer sends: a registration cut into packets (4 MB, what the reassembler
#: would hold for one connection) and garbage.
PACKETS = 4000
PACKET_BODY = 1000
#: Generous: the flood must not cost this much, during it or after.
MARGIN = 40 * 1024 * 1024


def rss(pid: int) -> int:
    """The process's resident set, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]


def metric(port: int, name: str) -> float:
    text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


class Peer(protocol.Protocol):
    """An unknown phone: sends ``first`` at once (its flood when told) and counts the
    frames that come back."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.deframer = Deframer()
        self.answers = 0
        self.made: defer.Deferred[None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.gone = False

    def connectionMade(self) -> None:  # noqa: N802
        if self.first:
            self.transport.write(self.first)
        self.made.callback(None)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.answers += sum(isinstance(x, Frame) for x in self.deframer.feed(data))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.gone = True
        self.lost.callback(None)


def _flood() -> bytes:
    packets = encode_packets(Header(0x0100, "013912345678", 1), RawBody(b"\x5a" * (PACKETS * PACKET_BODY)),
                             max_body=PACKET_BODY)  # fmt: skip
    garbage = b"\x7e\x01\x02\x03\x7e" * 50 + bytes(range(256)) * 4
    return b"".join(packets) + garbage


@pytest.mark.deadline(300)
@pytest_twisted.inlineCallbacks
def test_unauthenticated_flood_is_bounded(dsn: str, tmp_path: Path) -> None:
    """Peers that never authenticate, sending sub-packaged registrations and garbage from
    several addresses: the caps refuse the excess (per address and in all), the
    process's RSS stays within a margin of its baseline during the flood and after it."""
    from twisted.internet import reactor

    port, metrics = free_port(), free_port()
    gateway = GatewayProcess(
        dsn, port, tmp_path,
        "--jt808_max_connections", str(MAX_CONNECTIONS),
        "--jt808_max_per_address", str(MAX_PER_ADDRESS),
        "--metrics", f"tcp:{metrics}:interface=127.0.0.1",
    )  # fmt: skip
    flood = _flood()
    assert len(flood) > PACKETS * PACKET_BODY
    peers: list[Peer] = []

    def connect(source: str, data: bytes) -> Any:
        peer = Peer(data)
        ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
        return within(ep.connect(protocol.Factory.forProtocol(lambda: peer)), "connect").addCallback(
            lambda _: peer)

    gateway.start()
    try:
        # Warm up (first use of the code paths), then the baseline.
        warm = yield connect("127.0.0.9", flood[:20000])
        yield until(lambda: warm.gone or warm.answers >= 8, "answers to the warm-up peer")
        if not warm.gone:
            warm.transport.loseConnection()
        yield within(warm.lost, "the warm-up peer to close")
        baseline = rss(gateway.pid)

        # All connect (and hold their places), then all flood.
        for source in SOURCES:
            for _ in range(PER_SOURCE):
                peers.append((yield connect(source, b"")))
        attempts = len(peers)
        yield until(lambda: metric(metrics, "cmsv6_gateway_connections")
                    + metric(metrics, 'cmsv6_gateway_events_total{event="connections_refused"}')
                    >= attempts, "the gateway to take or refuse every peer", in_thread=True)
        for p in peers:
            if not p.gone:
                p.transport.write(flood)
        # Every peer has been dealt with: closed by the gateway, or (on a gateway that
        # keeps what they send) answered for every packet.
        yield until(lambda: all(p.gone or p.answers >= PACKETS for p in peers),
                    "the gateway to deal with every peer", timeout=240)
        during = rss(gateway.pid)
        refused = metric(metrics, 'cmsv6_gateway_events_total{event="connections_refused"}')
        per_address = metric(metrics,
                             'cmsv6_gateway_events_total{event="connections_refused_per_address"}')

        for p in peers:
            if not p.gone:
                p.transport.loseConnection()
        yield within(defer.DeferredList([p.lost for p in peers]), "the peers to close")
        yield until(lambda: metric(metrics, "cmsv6_gateway_connections") == 0,
                    "the gateway to see them gone", in_thread=True)
        after = rss(gateway.pid)

        # The caps freed their places: a new peer is answered.
        fresh = yield connect(SOURCES[0], encode(Header(0x0002, "013912345678", 1), Heartbeat()))
        yield until(lambda: fresh.answers >= 1, "an answer to a new peer")
        fresh.transport.loseConnection()
        yield within(fresh.lost, "the new peer to close")
    finally:
        for p in peers:
            if not p.gone and p.transport is not None:
                p.transport.abortConnection()
        gateway.stop()

    assert refused == attempts - MAX_CONNECTIONS, (refused, per_address)
    assert per_address >= 1  # some refused for their address, the rest for the total
    assert during - baseline < MARGIN, f"{(during - baseline) / 2**20:.0f} MiB more during the flood"
    assert after - baseline < MARGIN, f"{(after - baseline) / 2**20:.0f} MiB more after the flood"
