"""The directory's memory data and the choice of gateway, on a task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet import task

from cmsv6.address import split_address
from cmsv6.plugins.login.assignment import server_parameters
from cmsv6.plugins.login.directory import Directory
from cmsv6.rpc.commands import BadRequest, DeviceOffline
from tests.support.link import FakeLink


def make() -> tuple[Directory, task.Clock]:
    clock = task.Clock()
    return Directory(clock), clock


def gateway(d: Directory, gid: str, capacity: int = 100, online: tuple[str, ...] = ()) -> FakeLink:
    link = FakeLink()
    d.announce(link, gid, f"10.0.0.{len(d.gateways) + 1}:7611", "", capacity)
    if online:
        d.devices_changed(link, list(online), [])
    return link


def test_least_loaded_relative_to_capacity() -> None:
    """The gateway with the lowest load/capacity is chosen, not the lowest count."""
    d, _ = make()
    gateway(d, "small", capacity=10, online=("1", "2", "3"))  # 30 %
    gateway(d, "big", capacity=100, online=tuple(str(i) for i in range(10, 30)))  # 20 %
    assert d.choose("99").id == "big"


def test_assignments_count_before_devices_arrive() -> None:
    """Devices sent to a gateway count towards its load, so a burst is spread."""
    d, _ = make()
    gateway(d, "a")
    gateway(d, "b")
    chosen = []
    for phone in ("1", "2", "3", "4"):
        entry = d.choose(phone)
        assert entry is not None
        d.assigned(phone, entry)
        chosen.append(entry.id)
    assert sorted(chosen) == ["a", "a", "b", "b"]


def test_pending_assignments_expire() -> None:
    """An assignment that never shows up stops counting after PENDING_FOR."""
    d, clock = make()
    gateway(d, "a")
    entry = d.gateways["a"]
    d.assigned("1", entry)
    assert entry.load == 1
    clock.advance(d.PENDING_FOR + 1)
    d.report_load(entry.link, 0, 0)
    d.tick()
    assert entry.load == 0


def test_device_stays_on_its_gateway_while_alive() -> None:
    """A device goes back to the gateway it was on, even when another is less loaded."""
    d, _ = make()
    a = gateway(d, "a", online=("1", "2", "3"))
    gateway(d, "b")
    assert d.choose("2").id == "a"
    d.devices_changed(a, [], ["2"])  # it went offline; a is still alive
    assert d.choose("2").id == "a"


def test_dead_gateway_devices_forgotten_and_reassigned() -> None:
    """When a gateway's link drops its devices are forgotten and go elsewhere."""
    d, _ = make()
    a = gateway(d, "a", online=("1", "2"))
    gateway(d, "b", online=("3", "4", "5"))
    assert d.device_gateway("1") == "a"
    d.link_lost(a)
    assert "a" not in d.gateways
    assert d.device_gateway("1") is None
    assert d.online() == {"3": "b", "4": "b", "5": "b"}
    assert d.choose("1").id == "b"


def test_no_live_gateway_means_refusal() -> None:
    """Without a live gateway with room there is no choice."""
    d, _ = make()
    assert d.choose("1") is None
    gateway(d, "full", capacity=1, online=("7",))
    assert d.choose("1") is None
    assert d.choose("7").id == "full"  # a device already there stays


def test_announce_again_replaces_the_old_link() -> None:
    """A gateway announcing again on a new link replaces the old entry and drops the old
    link; the old link's loss afterwards changes nothing."""
    d, _ = make()
    old = gateway(d, "a", online=("1",))
    new = FakeLink()
    d.announce(new, "a", "10.0.0.9:7611", "", 100)
    assert old.closed
    assert d.device_gateway("1") is None  # the new link re-announces its devices
    d.devices_changed(new, ["1"], [])
    d.link_lost(old)
    assert d.gateways["a"].link is new and d.device_gateway("1") == "a"


def test_reports_before_announcing_are_refused() -> None:
    """A link that has not announced a gateway cannot report for one."""
    d, _ = make()
    with pytest.raises(BadRequest):
        d.devices_changed(FakeLink(), ["1"], [])
    with pytest.raises(BadRequest):
        d.announce(FakeLink(), "a", "no-port", "", 10)


def test_device_moving_between_gateways() -> None:
    """A device reported online by a second gateway is there, whatever the first says later."""
    d, _ = make()
    a = gateway(d, "a", online=("1",))
    gateway(d, "b")
    b = d.gateways["b"].link
    d.devices_changed(b, ["01"], [])
    assert d.device_gateway("1") == "b"
    d.devices_changed(a, [], ["1"])
    assert d.device_gateway("1") == "b"
    assert d.gateways["a"].devices == set()


def test_silent_gateway_is_dead() -> None:
    """A gateway that stops reporting is dropped and its link closed."""
    d, clock = make()
    a = gateway(d, "a", online=("1",))
    clock.advance(d.STALE_AFTER + 1)
    d.tick()
    assert a.closed and d.gateways == {} and d.online() == {}


def test_send_to_offline_device() -> None:
    """A command for a device that is not online fails with DeviceOffline."""
    d, _ = make()
    failure = []
    d.send_to_device("13800000001", 0x8201, b"").addErrback(failure.append)
    assert failure and failure[0].check(DeviceOffline)


def test_server_parameters_per_version() -> None:
    """0x8103 carries bare hosts and 0x0018 for 2013, host:port for 2019."""
    assert server_parameters("10.0.0.1:7611", "10.0.0.2:6608", 2013) == {
        0x0013: "10.0.0.1", 0x0017: "10.0.0.2", 0x0018: 7611,
    }  # fmt: skip
    assert server_parameters("10.0.0.1:7611", "[::1]:6608", 2019) == {
        0x0013: "10.0.0.1:7611", 0x0017: "[::1]:6608", 0x0018: 7611,
    }  # fmt: skip
    assert split_address("[::1]:6608") == ("::1", 6608)
    with pytest.raises(ValueError):
        split_address("10.0.0.1")
