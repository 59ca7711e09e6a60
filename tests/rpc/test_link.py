"""Cluster links (cmsv6.rpc.link): nothing runs before the HMAC challenge, an id is bound to
its key, and boxes are bounded. Login's and a gateway's responders over iosim."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.protocols import amp

from cmsv6.plugins.gateway.rpc import ClusterFactory
from cmsv6.plugins.login.directory import Directory
from cmsv6.plugins.login.rpc import LoginClusterFactory
from cmsv6.rpc.commands import (
    AnnounceGateway,
    BadRequest,
    DevicesChanged,
    NotAuthenticated,
    SendMessage,
    Unavailable,
)
from cmsv6.rpc.keys import Credential
from cmsv6.rpc.link import ClusterLink
from tests.support.cluster import MASTER, connect

WRONG = Credential(b"\xff" * 32)


class Gateway:
    """What the gateway's responders use: records the commands it would send."""

    id = "gw-1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send_command(self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
                     body_2019: bytes | None = None) -> Any:  # fmt: skip
        self.sent.append((phone, msg_id))
        return defer.succeed({"msg_id": 0x0001, "version": 2013, "body": b"\0\1\x83\0\0"})


def login() -> tuple[Directory, LoginClusterFactory]:
    directory = Directory(task.Clock())
    return directory, LoginClusterFactory(directory, MASTER.key_for, task.Clock())


def gateway_side() -> tuple[Gateway, ClusterFactory]:
    gateway = Gateway()
    key = MASTER.key_for("gw-1")
    factory = ClusterFactory(gateway, lambda i: key if i == "gw-1" else None, task.Clock())  # type: ignore[arg-type]
    return gateway, factory


def closed(link: Any) -> bool:
    return link.transport is None or link.transport.disconnecting


def announce(client: Any, pump: Any, gateway_id: str = "gw-1", capacity: int = 10) -> list[Any]:
    results: list[Any] = []
    client.callRemote(AnnounceGateway, id=gateway_id, public_jt808="127.0.0.1:7611", cluster="",
                      capacity=capacity).addBoth(results.append)  # fmt: skip
    pump.flush()
    return results


def test_unauthenticated_peer_gets_nothing_done_at_login() -> None:
    """A plain AMP peer announcing a gateway is disconnected, counted, and nothing is known."""
    directory, factory = login()
    client = amp.AMP()
    c, server, pump = connect(factory.buildProtocol(None), client, server_id=None)
    results = announce(client, pump)
    assert results and isinstance(results[0].value, Exception)
    assert directory.gateways == {} and directory.online() == {}
    assert factory.refused["unauthenticated"] == 1
    assert closed(server)


def test_wrong_key_gets_nothing_done_at_login() -> None:
    """A peer with another cluster's key fails the challenge and is disconnected; it cannot
    announce or report devices."""
    directory, factory = login()
    client = ClusterLink(clock=task.Clock())
    c, server, pump = connect(factory.buildProtocol(None), client, server_id=None)
    results: list[Any] = []
    client.authenticate("gw-1", WRONG.key_for("gw-1")).addBoth(results.append)  # type: ignore[arg-type]
    pump.flush()
    assert results and results[0].check(NotAuthenticated)
    assert not client.authenticated and not server.authenticated
    assert factory.refused["bad proof"] == 1
    later = announce(client, pump)
    assert later and isinstance(later[0].value, Exception)
    assert directory.gateways == {}


def test_a_server_that_does_not_hold_the_key_is_not_trusted() -> None:
    """The connecting side checks the listening side's proof too: a fake login without the
    key cannot pass for one."""
    _, fake = login()
    fake.key_for = WRONG.key_for  # type: ignore[method-assign]
    client = ClusterLink(clock=task.Clock())
    c, server, pump = connect(fake.buildProtocol(None), client, server_id=None)
    results: list[Any] = []
    client.authenticate("gw-1", MASTER.key_for("gw-1")).addBoth(results.append)  # type: ignore[arg-type]
    pump.flush()
    assert results and results[0].check(NotAuthenticated) and not client.authenticated


def test_impostor_gateway_id_is_refused() -> None:
    """A valid key for gw-2 announcing as gw-1 is refused: the real gw-1 keeps its devices."""
    directory, factory = login()
    real, _, pump = connect(factory.buildProtocol(None), server_id="gw-1")
    assert announce(real, pump)[0] == {"login": "login"}
    real.callRemote(DevicesChanged, online=["13800000001"], offline=[])
    pump.flush()
    impostor, _, pump2 = connect(factory.buildProtocol(None), server_id="gw-2")
    results = announce(impostor, pump2, "gw-1", capacity=1_000_000)
    assert results and results[0].check(BadRequest)
    assert factory.refused["impostor"] == 1
    assert directory.online() == {"13800000001": "gw-1"}
    assert directory.gateways["gw-1"].capacity == 10


def test_handshake_deadline() -> None:
    """A peer that connects and never authenticates is closed after HANDSHAKE_TIMEOUT."""
    clock = task.Clock()
    directory = Directory(clock)
    factory = LoginClusterFactory(directory, MASTER.key_for, clock)
    c, server, pump = connect(factory.buildProtocol(None), amp.AMP(), server_id=None)
    clock.advance(ClusterLink.HANDSHAKE_TIMEOUT + 1)
    assert factory.refused["handshake timeout"] == 1
    assert closed(server)


def test_unauthenticated_and_wrong_key_send_no_command() -> None:
    """On a gateway's cluster endpoint, a plain peer, a wrong key and another gateway's key
    all fail, and no command reaches a device."""
    gateway, factory = gateway_side()
    plain = amp.AMP()
    c, s, pump = connect(factory.buildProtocol(None), plain, server_id=None)
    failed: list[Any] = []
    plain.callRemote(SendMessage, phone="13800000001", msg_id=0x8300, body=b"\0x").addErrback(failed.append)
    pump.flush()
    for key, server_id in ((WRONG.key_for("gw-1"), "gw-1"), (MASTER.key_for("gw-2"), "gw-2")):
        client = ClusterLink(clock=task.Clock())
        c, s, pump = connect(factory.buildProtocol(None), client, server_id=None)
        client.authenticate(server_id, key).addErrback(failed.append)  # type: ignore[arg-type]
        pump.flush()
    assert len(failed) == 3
    assert gateway.sent == []
    assert factory.refused["unauthenticated"] == 1
    assert factory.refused["bad proof"] + factory.refused["unknown id"] == 2


def test_downlink_whitelist_and_bounded_timeout() -> None:
    """An authenticated peer gets the cluster's commands sent, and nothing else: a message
    id outside the whitelist or an unbounded timeout is refused."""
    gateway, factory = gateway_side()
    client, _, pump = connect(factory.buildProtocol(None), server_id="gw-1")
    results: list[Any] = []
    for msg_id, timeout in ((0x8300, 5.0), (0x8100, 5.0), (0x8f00, 5.0), (0x9101, 1e9)):
        client.callRemote(SendMessage, phone="1", msg_id=msg_id, body=b"\0", timeout=timeout).addBoth(
            results.append
        )
    pump.flush()
    assert results[0]["msg_id"] == 0x0001
    assert all(isinstance(r, Exception) or hasattr(r, "check") for r in results[1:])
    assert all(r.check(BadRequest) for r in results[1:])
    assert gateway.sent == [("1", 0x8300)]


def _raw_box(pairs: int) -> bytes:
    out = b""
    for i in range(pairs):
        key, value = f"k{i}".encode(), b"v"
        out += struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value
    return out


def test_box_with_too_many_keys_is_refused() -> None:
    """A box that keeps adding keys is cut off at MAX_KEYS: the link closes, and memory does
    not grow with what the peer sends."""
    directory, factory = login()
    client = amp.AMP()
    c, server, pump = connect(factory.buildProtocol(None), client, server_id=None)
    client.transport.write(_raw_box(ClusterLink.MAX_KEYS + 5))
    pump.flush()
    assert factory.refused["box too big"] == 1
    assert server._currentBox is None
    assert closed(server)


def test_box_over_the_byte_bound_is_refused() -> None:
    """A box of a few large values over MAX_BOX_BYTES closes the link."""
    _, factory = login()
    client = amp.AMP()
    c, server, pump = connect(factory.buildProtocol(None), client, server_id=None)
    value = b"x" * 65535
    data = b"".join(struct.pack("!H", 2) + f"k{i}".encode() + struct.pack("!H", len(value)) + value
                    for i in range(ClusterLink.MAX_BOX_BYTES // len(value) + 1))  # fmt: skip
    client.transport.write(data)
    pump.flush()
    assert factory.refused["box too big"] == 1


def test_too_many_outstanding_commands_are_refused() -> None:
    """Commands beyond MAX_OUTSTANDING unanswered on one link are answered Unavailable and
    not run."""
    waiting: list[defer.Deferred[Any]] = []

    class Slow(Gateway):
        def send_command(self, *args: Any, **kwargs: Any) -> Any:
            self.sent.append((args[0], args[1]))
            d: defer.Deferred[Any] = defer.Deferred()
            waiting.append(d)
            return d

    gateway = Slow()
    key = MASTER.key_for("gw-1")
    factory = ClusterFactory(gateway, lambda i: key if i == "gw-1" else None, task.Clock())  # type: ignore[arg-type]
    client, server, pump = connect(factory.buildProtocol(None), server_id="gw-1")
    server.MAX_OUTSTANDING = 3
    results: list[Any] = []
    for i in range(5):
        client.callRemote(SendMessage, phone=str(i + 1), msg_id=0x8201, body=b"").addBoth(results.append)
    pump.flush()
    assert len(gateway.sent) == 3
    assert len(results) == 2 and all(r.check(Unavailable) for r in results)
    assert factory.refused["too many outstanding"] == 2


@pytest.mark.parametrize("phones", [["013800000001"], ["+8613800000001"], [""]])
def test_announced_phones_must_be_canonical(phones: list[str]) -> None:
    """DevicesChanged with a phone that is not canonical is refused as a whole."""
    directory, factory = login()
    client, _, pump = connect(factory.buildProtocol(None), server_id="gw-1")
    announce(client, pump)
    results: list[Any] = []
    client.callRemote(DevicesChanged, online=phones, offline=[]).addBoth(results.append)
    pump.flush()
    assert results[0].check(BadRequest)
    assert directory.online() == {}


def test_announced_phones_must_be_devices_and_fit_the_capacity() -> None:
    """Phones that are not devices are ignored, and a gateway gets no more devices than the
    capacity it announced; a capacity beyond MAX_CAPACITY is refused."""
    directory, factory = login()
    factory.known = lambda phones: defer.succeed({p for p in phones if p.startswith("138")})
    client, _, pump = connect(factory.buildProtocol(None), server_id="gw-1")
    assert isinstance(announce(client, pump, capacity=10**9)[0].value, BadRequest)
    announce(client, pump, capacity=2)
    client.callRemote(DevicesChanged, online=["13800000001", "99", "13800000002", "13800000003"],
                      offline=[])  # fmt: skip
    pump.flush()
    assert directory.online() == {"13800000001": "gw-1", "13800000002": "gw-1"}
    client.callRemote(DevicesChanged, online=["13800000003"], offline=["13800000001"])
    pump.flush()
    assert directory.online() == {"13800000002": "gw-1", "13800000003": "gw-1"}
