"""The simulator over real loopback TCP against the fake platform, in-process and as the
``cmsv6 sim`` command. Waits are bounded: a condition not met in time fails the test."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import serverFromString

from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.location import QueryLocation
from cmsv6.protocols.jt808.messages.params import SetParameters
from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fakeplatform import FakePlatform, phone_key
from cmsv6.sim.fleet import Fleet, FleetConfig
from tests.support.device import until, within


FAST = DeviceConfig(
    interval=0.2,
    heartbeat=1.0,
    timeout=2.0,
    alarm_probability=0.0,
    gap_probability=0.0,
    reconnect_initial=0.2,
    reconnect_max=1.0,
)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def listen(platform: FakePlatform, port: int = 0) -> Any:
    return await serverFromString(_reactor(), f"tcp:{port}:interface=127.0.0.1").listen(platform)


@pytest_twisted.ensureDeferred
async def test_devices_over_loopback() -> None:
    """Four devices (2013 and 2019) register, authenticate, report and get positions
    acknowledged, answer commands, and log out when stopped."""
    reactor = _reactor()
    platform = FakePlatform(reactor, keep_positions=True)
    port = await listen(platform)
    try:
        config = FleetConfig(
            server=f"tcp:127.0.0.1:{port.getHost().port}",
            devices=4,
            version="mixed",
            seed=3,
            record_acks=True,
            status_interval=0,
            device=FAST,
        )
        fleet = Fleet(reactor, config)
        done = fleet.start()

        def acked_each(n: int) -> bool:
            per = {d.phone: 0 for d in fleet.devices}
            for a in fleet.acknowledged:
                per[a.phone] += 1
            return min(per.values()) >= n

        await until(lambda: acked_each(3), "3 acknowledged positions per device")
        first, second = fleet.devices[0].phone, fleet.devices[1].phone
        query = platform.send(first, QueryLocation())
        setting = platform.send(second, SetParameters({0x0029: 1}))
        await until(lambda: len(platform.replies) >= 2, "answers to both commands")
        await within(fleet.stop(), "the fleet to stop")
        counters = await within(done, "the fleet to finish")
    finally:
        await port.stopListening()
    replies = {(who, m.header.msg_id): m.body for who, m in platform.replies}
    assert replies[(phone_key(first), 0x0201)].reply_serial == query
    assert replies[(phone_key(second), 0x0001)] == TerminalResponse(setting, 0x8103, 0)
    assert fleet.devices[1].interval == 1
    assert platform.registrations == 4 and platform.authentications == 4
    assert counters.authentications == 4 and counters.acknowledged >= 12
    stored = {(p, loc.time, loc.latitude, loc.longitude) for p, _, loc in platform.positions}
    for a in fleet.acknowledged:
        assert (phone_key(a.phone), a.time, a.latitude, a.longitude) in stored
    await until(lambda: platform.open == 0, "the platform sees every connection closed")
    assert platform.received[0x0003] == 4


@pytest_twisted.ensureDeferred
async def test_platform_restart_loses_nothing() -> None:
    """When the platform goes away (with positions unanswered) and comes back on the same
    port, the devices reconnect, authenticate again and upload what they kept: every
    position ends up acknowledged."""
    reactor = _reactor()
    platform = FakePlatform(reactor, keep_positions=True)
    port = await listen(platform)
    number = port.getHost().port
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{number}", devices=3, seed=4, record_acks=True, status_interval=0, device=FAST
    )
    fleet = Fleet(reactor, config)
    done = fleet.start()
    try:
        await until(lambda: fleet.counters.acknowledged >= 6, "positions before the crash")
        platform.acknowledge_positions = False  # received, never answered: lost in the crash
        await until(lambda: fleet.pending() >= 6, "positions sent and not acknowledged")
        await port.stopListening()
        platform.acknowledge_positions = True
        for session in list(platform.sessions.values()):
            session.transport.abortConnection()  # type: ignore[union-attr]
        await until(
            lambda: fleet.counters.connect_failures >= 3 and fleet.pending() >= 9,
            "positions kept while the platform is away",
        )
        port = await listen(platform, number)
        await until(
            lambda: fleet.counters.authenticated == 3 and fleet.pending() == 0,
            "reconnected with nothing pending",
        )
        await within(fleet.stop(), "the fleet to stop")
        counters = await within(done, "the fleet to finish")
    finally:
        await port.stopListening()
    assert counters.reconnects >= 3 and counters.dropped == 0
    assert counters.acknowledged == counters.positions
    assert platform.received[0x0704] > 0
    stored = {(p, loc.time, loc.latitude, loc.longitude) for p, _, loc in platform.positions}
    assert {(phone_key(a.phone), a.time, a.latitude, a.longitude) for a in fleet.acknowledged} <= stored


class _Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.stderr = b""
        self.ended: defer.Deferred[int] = defer.Deferred()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


@pytest_twisted.ensureDeferred
async def test_sim_command_stops_cleanly_on_sigint() -> None:
    """``cmsv6 sim`` runs devices, prints status lines, and on SIGINT logs them out and
    exits with status 0."""
    reactor = _reactor()
    platform = FakePlatform(reactor)
    port = await listen(platform)
    collect = _Collect()
    process = None
    try:
        args = [
            sys.executable, "-m", "cmsv6.cli", "sim",
            "--server", f"tcp:127.0.0.1:{port.getHost().port}",
            "--devices", "3", "--interval", "0.3", "--status-interval", "0.5",
            "--version", "mixed", "--seed", "1",
        ]
        process = reactor.spawnProcess(collect, sys.executable, args, env=dict(os.environ))
        await until(
            lambda: platform.authentications == 3 and platform.position_count >= 6
            and b"[sim" in collect.stderr,
            "the command's devices report",
        )
        process.signalProcess("INT")
        code = await within(collect.ended, "cmsv6 sim to exit after SIGINT")
        await until(lambda: platform.open == 0, "the platform sees every connection closed")
    finally:
        if process is not None and not collect.ended.called:
            process.signalProcess("KILL")
        await port.stopListening()
    assert code == 0, collect.stderr.decode(errors="replace")
    assert platform.received[0x0003] == 3
    assert b"3 authenticated" in collect.stderr
