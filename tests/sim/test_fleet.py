"""The fleet runner on a fake clock: connections are in-memory pairs with the fake platform
(``iosim``), so every step is deterministic and no socket is opened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from cmsv6.protocols.jt808.messages.location import QueryLocation
from cmsv6.protocols.jt808.messages.params import SetParameters
from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fakeplatform import FakePlatform, phone_key
from cmsv6.sim.fleet import Fleet, FleetConfig, load_state, phones

T0 = 1_750_000_000.0
QUIET = DeviceConfig(alarm_probability=0.0, gap_probability=0.0, interval=5.0, heartbeat=30.0)
CONFIG = FleetConfig(devices=3, seed=1, connect_rate=10.0, device=QUIET, record_acks=True)


class Net:
    """Pairs every connection attempt the fleet makes with a platform protocol (or refuses
    it while ``refusing``), and moves the bytes."""

    def __init__(self, platform: FakePlatform, routes: dict[tuple[str, int], FakePlatform] | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(T0)
        self.platform = platform
        self.routes = routes or {}
        self.pumps: list[IOPump] = []
        self.seen = 0
        self.refusing = False
        self.attempts: list[tuple[str, int]] = []

    def fleet(self, config: FleetConfig = CONFIG, **kw: Any) -> Fleet:
        return Fleet(self.reactor, config, **kw)

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            while self.seen < len(self.reactor.tcpClients):
                host, port, factory, _, _ = self.reactor.tcpClients[self.seen]
                connector = self.reactor.connectors[self.seen]
                self.seen += 1
                self.attempts.append((host, port))
                if self.refusing:
                    factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
                    continue
                platform = self.routes.get((host, port), self.platform)
                client = factory.buildProtocol(None)
                server = platform.buildProtocol(None)
                self.pumps.append(
                    connect(server, FakeTransport(server, True), client, FakeTransport(client, False))
                )
                moved = True
            for p in self.pumps:
                moved = p.pump() or moved
            self.pumps = [p for p in self.pumps if not (p.clientIO.disconnected and p.serverIO.disconnected)]
            if not moved:
                return

    def run(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(int(seconds / step)):
            self.reactor.advance(step)
            self.pump()

    def drop_all(self) -> None:
        """The platform end closes every connection (a gateway crash)."""
        for p in self.pumps:
            p.serverIO.loseConnection()
        self.pump()


def test_phones_are_consecutive() -> None:
    """Phones follow the first one, keeping its width."""
    assert phones("013800000998", 3) == ["013800000998", "013800000999", "013800001000"]


def test_fleet_registers_authenticates_and_reports() -> None:
    """Every device registers, authenticates and has positions acknowledged; the record of
    acknowledged positions is exactly what the platform stored."""
    platform = FakePlatform(keep_positions=True)
    net = Net(platform)
    fleet = net.fleet(attrs.evolve(CONFIG, version="mixed"))
    fleet.start()
    net.run(60)
    c = fleet.counters
    assert platform.registrations == 3 and platform.authentications == 3
    assert c.connected == 3 and c.authenticated == 3
    assert c.acknowledged >= 3 * 10
    stored = {(p, loc.time, loc.latitude, loc.longitude) for p, _, loc in platform.positions}
    acked = {(phone_key(a.phone), a.time, a.latitude, a.longitude) for a in fleet.acknowledged}
    assert acked == stored
    versions = {a.phone: a.version for a in fleet.acknowledged}
    assert sorted(versions.values()) == [2013, 2013, 2019]
    assert "3 authenticated" in fleet.status_line()


def test_first_connections_are_spread() -> None:
    """Devices start at ``connect_rate`` per second, not all at once."""
    net = Net(FakePlatform())
    fleet = net.fleet(attrs.evolve(CONFIG, devices=5, connect_rate=1.0))
    fleet.start()
    net.reactor.advance(0)
    net.pump()
    assert len(net.attempts) == 1
    net.run(2.0)
    assert len(net.attempts) == 3
    net.run(3.0)
    assert len(net.attempts) == 5


def test_redirect_to_gateway_and_fallback_to_login() -> None:
    """0x8103 from the login server sends the devices to the gateway; when the gateway goes
    away they come back through the backup address (the login server)."""
    login, gateway = FakePlatform(), FakePlatform()
    net = Net(login, routes={("10.9.9.9", 7611): gateway})
    fleet = net.fleet(attrs.evolve(CONFIG, devices=2, server="tcp:127.0.0.1:6608"))
    fleet.start()
    net.run(2)
    assert login.authentications == 2
    for phone in list(login.sessions):
        login.send(phone, SetParameters({0x0013: "10.9.9.9", 0x0018: 7611, 0x0017: "127.0.0.1:6608"}))
    net.run(2)
    assert gateway.authentications == 2 and fleet.counters.redirects == 2
    assert ("10.9.9.9", 7611) in net.attempts
    before = gateway.position_count
    net.run(20)
    assert gateway.position_count > before
    # The gateway dies: connections drop and new ones are refused until the devices fall
    # back to the login server.
    net.drop_all()
    gateway_attempts = len([a for a in net.attempts if a == ("10.9.9.9", 7611)])
    net.refusing = True
    net.run(30)
    assert fleet.counters.fallbacks >= 2
    assert net.attempts[-1] == ("127.0.0.1", 6608)
    assert len([a for a in net.attempts if a == ("10.9.9.9", 7611)]) >= gateway_attempts + 2 * 3


def test_refused_connections_are_retried() -> None:
    """A refused connection is tried again later, with growing delays."""
    net = Net(FakePlatform())
    net.refusing = True
    fleet = net.fleet(attrs.evolve(CONFIG, devices=1))
    fleet.start()
    net.run(40)
    assert 4 <= len(net.attempts) <= 8
    assert fleet.counters.connect_failures == len(net.attempts)
    net.refusing = False
    net.run(60)
    assert fleet.counters.authenticated == 1


def test_gateway_crash_loses_nothing() -> None:
    """Positions sent but not acknowledged when the platform dies, and those made while it is
    gone, are uploaded after reconnection: in the end every position is acknowledged."""
    platform = FakePlatform(keep_positions=True)
    net = Net(platform)
    fleet = net.fleet(attrs.evolve(CONFIG, device=attrs.evolve(QUIET, interval=1.0)))
    fleet.start()
    net.run(10)
    platform.acknowledge_positions = False  # stored but not answered, as in a crash
    net.run(3)
    in_flight = fleet.pending()
    assert in_flight >= 3 * 2
    net.drop_all()
    net.refusing = True
    platform.acknowledge_positions = True
    net.run(30)
    assert fleet.pending() > in_flight + 3 * 20
    net.refusing = False
    net.run(90)
    stopped = fleet.stop()
    net.pump()
    assert stopped.called
    c = fleet.counters
    assert c.dropped == 0 and fleet.pending() == 0
    assert c.acknowledged == c.positions
    stored = {(p, loc.time) for p, _, loc in platform.positions}
    assert {(phone_key(a.phone), a.time) for a in fleet.acknowledged} <= stored
    assert platform.received[0x0704] > 0


def test_duration_stops_with_logout() -> None:
    """After ``duration`` seconds every device logs out and closes; ``start()`` then fires
    with the counters."""
    platform = FakePlatform()
    net = Net(platform)
    fleet = net.fleet(attrs.evolve(CONFIG, duration=20.0))
    done = fleet.start()
    results: list[Any] = []
    done.addCallback(results.append)
    net.run(19)
    assert not results
    net.run(2)
    assert results == [fleet.counters]
    assert platform.received[0x0003] == 3 and platform.open == 0
    assert fleet.counters.connected == 0 and fleet.counters.authenticated == 0


def test_commands_reach_devices() -> None:
    """Platform commands are answered through the fleet's connections."""
    platform = FakePlatform()
    net = Net(platform)
    fleet = net.fleet()
    fleet.start()
    net.run(3)
    phone = fleet.devices[0].phone
    serial = platform.send(phone, QueryLocation())
    net.pump()
    ((who, reply),) = [r for r in platform.replies if r[1].header.msg_id == 0x0201]
    assert who == phone_key(phone) and reply.body.reply_serial == serial
    assert fleet.counters.commands == 1


def test_state_file_keeps_codes(tmp_path: Path) -> None:
    """Codes are saved in the state file; a second run authenticates without registering."""
    state = str(tmp_path / "state.json")
    platform = FakePlatform()
    net = Net(platform)
    config = attrs.evolve(CONFIG, state=state, duration=5.0)
    net.fleet(config).start()
    net.run(6)
    saved = load_state(state)
    assert set(saved) == set(phones(CONFIG.first_phone, 3))
    assert all(v["auth_code"] for v in saved.values())
    net2 = Net(platform)
    net2.fleet(config).start()
    net2.run(6)
    assert platform.registrations == 3 and platform.authentications == 6


def test_ack_log(tmp_path: Path) -> None:
    """The ack log has one JSON line per acknowledged position."""
    log = tmp_path / "acks.jsonl"
    net = Net(FakePlatform())
    fleet = net.fleet(attrs.evolve(CONFIG, ack_log=str(log), duration=30.0))
    fleet.start()
    net.run(31)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == fleet.counters.acknowledged > 0
    assert lines == [a.json() for a in fleet.acknowledged]
    assert set(lines[0]) == {"phone", "time", "latitude", "longitude", "serial", "version"}
    assert lines[0]["time"].endswith("+08:00")


def test_status_line_says_why_devices_are_refused() -> None:
    """Devices the platform refuses show in the status line, counted by reason in words,
    most common first (a registered phone's second registration, issue 9; a phone not in
    the database, issue 10); it says nothing of them otherwise."""
    fleet = Net(FakePlatform()).fleet(attrs.evolve(CONFIG, devices=4))
    fleet.start()
    assert "refused" not in fleet.status_line()
    fleet.devices[0].refusal = "registration refused: terminal already registered (3)"
    for d in fleet.devices[1:]:
        d.refusal = "registration refused: terminal not in the database (4)"
    assert fleet.status_line().endswith(
        " | refused: 4 (registration refused: terminal not in the database (4) ×3,"
        " registration refused: terminal already registered (3) ×1)"
    )
