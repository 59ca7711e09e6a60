"""The AMP between a gateway and login, over twisted.test.iosim (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from twisted.internet import defer, task
from twisted.protocols import amp
from twisted.test import iosim

from cmsv6.plugins.gateway.cluster import LoginClient, _Link, cluster_address
from cmsv6.plugins.login.directory import Directory
from cmsv6.plugins.login.rpc import LoginClusterFactory, LoginLink
from tests.support.cluster import MASTER, connect
from cmsv6.rpc.commands import (
    AnnounceGateway,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    DevicesChanged,
)


class FakeSession:
    authenticated = True


class FakeGateway:
    """What LoginClient reads from a Gateway."""

    def __init__(self, phones: tuple[str, ...] = ()) -> None:
        self.id = "gw-1"
        self.public_address = "127.0.0.1:7611"
        self.sessions = {p: FakeSession() for p in phones}
        self.connections = set(self.sessions)
        self.listeners: list[Any] = []
        self.replies: dict[str, Any] = {}

    def send_command(self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
                     body_2019: bytes | None = None) -> Any:  # fmt: skip
        reply = self.replies.get(phone)
        if reply is None:
            return defer.fail(DeviceOffline(f"{phone} is not here"))
        if isinstance(reply, Exception):
            return defer.fail(reply)
        return defer.succeed(reply)


def login_link(directory: Directory) -> LoginLink:
    factory = LoginClusterFactory(directory, MASTER.key_for, task.Clock())
    link = factory.buildProtocol(None)
    assert link is not None
    return link


def pair(directory: Directory, gateway: FakeGateway, cluster: str = "") -> tuple[LoginClient, LoginLink, _Link, iosim.IOPump]:
    clock = task.Clock()
    from twisted.internet import reactor

    key = MASTER.key_for(gateway.id)
    assert key is not None
    client = LoginClient(gateway, ["tcp:127.0.0.1:1"], reactor, cluster, capacity=50, key=key)  # type: ignore[arg-type]
    client.clock = clock
    server = login_link(directory)
    gateway_side = _Link(client)
    c, s, pump = iosim.connectedServerAndClient(lambda: server, lambda: gateway_side)
    return client, s, c, pump


def test_announce_rebuilds_the_directory() -> None:
    """On connecting a gateway announces itself and every device online on it."""
    directory = Directory(task.Clock())
    gateway = FakeGateway(("13800000001", "13800000002"))
    client, server, link, pump = pair(directory, gateway)
    done = []
    client._announce(link).addCallback(done.append)
    pump.flush()
    assert done and client.announcements == 1
    entry = directory.gateways["gw-1"]
    assert (entry.public_jt808, entry.capacity) == ("127.0.0.1:7611", 50)
    assert directory.online() == {"13800000001": "gw-1", "13800000002": "gw-1"}
    assert entry.reported_online == 2


def test_device_events_follow_the_announcement() -> None:
    """Devices coming and going after the announcement reach login in order, batched."""
    directory = Directory(task.Clock())
    gateway = FakeGateway(("1",))
    client, server, link, pump = pair(directory, gateway)
    client._announce(link)
    pump.flush()
    listener = gateway.listeners[0]
    listener("2", True)
    listener("1", False)
    listener("3", True)
    listener("3", False)
    client.clock.advance(client.BATCH_DELAY)
    pump.flush()
    assert directory.online() == {"2": "gw-1"}


def test_link_loss_kills_the_gateway() -> None:
    """When the link drops, login forgets the gateway and its devices, and the gateway
    stops sending events until it announces again."""
    directory = Directory(task.Clock())
    gateway = FakeGateway(("1",))
    client, server, link, pump = pair(directory, gateway)
    client._announce(link)
    pump.flush()
    link.transport.loseConnection()
    pump.flush()
    assert directory.gateways == {} and directory.online() == {}
    assert client.link is None
    gateway.listeners[0]("2", True)
    assert client._changes == {}


def test_events_before_announcing_are_refused() -> None:
    """Login answers device reports on a link that did not announce with BadRequest."""
    directory = Directory(task.Clock())
    server = login_link(directory)
    client, s, pump = connect(server)
    failures: list[Any] = []
    client.callRemote(DevicesChanged, online=["1"], offline=[]).addErrback(failures.append)
    pump.flush()
    assert failures and failures[0].check(BadRequest)
    assert directory.online() == {}


def test_unexpected_error_becomes_declared() -> None:
    """A responder failing unexpectedly answers Unavailable and keeps the link."""
    directory = Directory(task.Clock())

    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    directory.announce = broken  # type: ignore[method-assign]
    server = login_link(directory)
    c, s, pump = connect(server, server_id="gw")
    client = c
    failures: list[Any] = []
    client.callRemote(
        AnnounceGateway, id="gw", public_jt808="127.0.0.1:1", cluster="", capacity=1
    ).addErrback(failures.append)
    pump.flush()
    from cmsv6.rpc.commands import Unavailable

    assert failures and failures[0].check(Unavailable)
    assert not c.transport.disconnecting


def test_command_through_the_link() -> None:
    """send_to_device reaches the device's gateway (over the link when it gave no cluster
    endpoint) and passes the gateway's declared errors on as they are."""
    directory = Directory(task.Clock())
    gateway = FakeGateway(("1", "2", "3"))
    gateway.replies["1"] = {"msg_id": 0x0001, "version": 2013, "body": b"\x00\x04\x81\x05\x00"}
    gateway.replies["3"] = CommandTimeout("no reply")
    client, server, link, pump = pair(directory, gateway)
    client._announce(link)
    pump.flush()
    results: list[Any] = []
    for phone in ("1", "2", "3"):
        directory.send_to_device(phone, 0x8105, b"\x04").addBoth(results.append)
    pump.flush()
    ok, offline, timeout = results
    assert ok["msg_id"] == 0x0001 and ok["version"] == 2013 and ok["body"] == b"\x00\x04\x81\x05\x00"
    assert offline.check(DeviceOffline)
    assert timeout.check(CommandTimeout)


def test_cluster_address() -> None:
    """The gateway tells login a client endpoint for its cluster server endpoint."""
    assert cluster_address("tcp:7613:interface=127.0.0.1", "10.0.0.1:7611") == "tcp:host=127.0.0.1:port=7613"
    assert cluster_address("tcp:7613", "10.0.0.1:7611") == "tcp:host=10.0.0.1:port=7613"
    assert cluster_address("", "10.0.0.1:7611") == ""
    assert cluster_address("unix:/tmp/x", "10.0.0.1:7611") == ""


@pytest_twisted.inlineCallbacks
def test_command_never_goes_to_an_announced_endpoint() -> None:
    """With a cluster endpoint announced, login still sends commands over the link the
    gateway announced itself on: it never connects to an address it was given."""
    from twisted.internet import endpoints, reactor
    from twisted.internet.protocol import Factory

    connections: list[Any] = []
    factory = Factory.forProtocol(lambda: connections.append(1) or amp.AMP())  # type: ignore[func-returns-value]
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        directory = Directory(task.Clock())
        gateway = FakeGateway(("1",))
        gateway.replies["1"] = {"msg_id": 0x0001, "version": 2013, "body": b"\x00\x04\x81\x05\x00"}
        address = f"tcp:host=127.0.0.1:port={port.getHost().port}"
        client, server, link, pump = pair(directory, gateway, cluster=address)
        client._announce(link)
        pump.flush()
        results: list[Any] = []
        directory.send_to_device("1", 0x8105, b"\x04").addBoth(results.append)
        pump.flush()
        assert results and results[0]["body"] == b"\x00\x04\x81\x05\x00"
        yield task.deferLater(reactor, 0.05, lambda: None)
        assert connections == []
    finally:
        yield port.stopListening()


class FakeEndpoint:
    def __init__(self, name: str, up: bool) -> None:
        self.name = name
        self.up = up
        self.attempts = 0

    def connect(self, factory: Any) -> Any:
        self.attempts += 1
        if not self.up:
            from twisted.internet.error import ConnectionRefusedError

            return defer.fail(ConnectionRefusedError(self.name))
        return defer.succeed(self.name)


def test_failover_endpoint_tries_each_in_turn() -> None:
    """The gateway's login endpoint tries every address in one attempt, starts with the one
    that worked last, and fails only when none answers."""
    from cmsv6.plugins.gateway.cluster import FailoverEndpoint

    active, standby = FakeEndpoint("a", up=False), FakeEndpoint("b", up=True)
    endpoint = FailoverEndpoint([active, standby], task.Clock(), names=["a", "b"])
    got: list[Any] = []
    endpoint.connect(None).addBoth(got.append)
    assert got == ["b"] and endpoint.connected_to == "b"
    endpoint.connect(None).addBoth(got.append)
    assert got[-1] == "b" and active.attempts == 1  # b first now
    standby.up = False
    endpoint.connect(None).addBoth(got.append)
    from twisted.internet.error import ConnectionRefusedError

    assert got[-1].check(ConnectionRefusedError) and active.attempts == 2
