"""``cmsv6 device disable`` as a device sees it: a real gateway on a loopback port refuses
the disabled device's registration and authentication, and takes it back after
``cmsv6 device enable``."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, endpoints

from cmsv6.cli import main
from cmsv6.db.devices import add_device
from cmsv6.db.service import Database
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.protocols.jt808.messages.core import Authenticate, Register
from cmsv6.terminal.registration import RegistrationPolicy
from tests.support.database import query
from tests.support.device import connect, shipping_writer, within

PHONE = "13800000081"
UNIT = Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, "粤B00081")


@defer.inlineCallbacks
def _attempt(port: int, code: str) -> Any:
    """A connection that registers, then authenticates with ``code``: (0x8100 result,
    0x8001 result)."""
    from twisted.internet import reactor

    dev = yield connect(reactor, port, PHONE)
    try:
        dev.send(UNIT)
        registered = yield dev.next(0x8100)
        dev.send(Authenticate(code))
        ack = yield dev.next(0x8001)
    finally:
        dev.transport.loseConnection()
    return registered.body.result, ack.body.result


@pytest_twisted.inlineCallbacks
def test_a_disabled_device_is_refused_until_enabled(dsn: str, tmp_path: Any, capsys: Any) -> None:
    """After ``device disable`` the gateway answers the device's registration with 0x8100
    result 4 (no code) and its authentication, with the code it holds, with 0x8001 result
    1; nothing about it changes. ``device enable`` lets the same code authenticate again."""
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2, writer_threads=1)
    db.startService()
    writer, stop_writer = shipping_writer(db, reactor)
    gw = Gateway(db, reactor, "gw-id", "127.0.0.1:7611", open_registration=False,
                 registration=RegistrationPolicy(), media_dir=tmp_path / "media", writer=writer)
    port = None
    try:
        yield within(db.ready(), "the database")
        port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            JT808Factory(gw))  # fmt: skip
        number = port.getHost().port
        add_device(dsn, PHONE)
        dev = yield connect(reactor, number, PHONE)
        code = yield dev.login()
        dev.transport.loseConnection()
        stored = query(dsn, "SELECT auth_hash, manufacturer, registered FROM devices")

        assert main(["device", "disable", PHONE, "--dsn", dsn]) == 0
        assert f"device {PHONE} disabled" in capsys.readouterr().out
        result = yield _attempt(number, code)
        assert result == (4, 1)
        assert query(dsn, "SELECT auth_hash, manufacturer, registered FROM devices") == stored

        assert main(["device", "enable", PHONE, "--dsn", dsn]) == 0
        dev = yield connect(reactor, number, PHONE)
        dev.send(Authenticate(code))
        ack = yield dev.next(0x8001)
        assert ack.body.result == 0
        dev.transport.loseConnection()
    finally:
        for session in list(gw.connections):
            session.link.close()
        stop_writer()
        if port is not None:
            yield defer.maybeDeferred(port.stopListening)
        yield within(defer.maybeDeferred(db.stopService), "the database stopped")
