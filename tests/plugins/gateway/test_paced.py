"""``twistd gateway`` paces its device port: at most ``max_handshakes`` connections
between accept and authentication; past it the port stops accepting (the rest wait in the
kernel's listen backlog) and takes them again as places free up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import endpoints, protocol

from tests.plugins.gateway.test_flood import metric
from tests.support.device import connect, until, within
from tests.support.process import GatewayProcess, free_port


class Silent(protocol.Protocol):
    """A connection that never says who it is."""

    def connectionMade(self) -> None:  # noqa: N802
        self.factory.made.append(self)


@pytest.mark.deadline(120)
@pytest_twisted.inlineCallbacks
def test_the_port_stops_at_max_handshakes_and_accepts_again(dsn: str, tmp_path: Path) -> None:
    """Two silent connections fill ``max_handshakes = 2``: the gateway stops accepting
    (its metrics say so, and a device that connects then is not taken); once one silent
    connection goes, the device is taken, registers and authenticates."""
    from twisted.internet import reactor

    port, metrics = free_port(), free_port()
    gateway = GatewayProcess(dsn, port, tmp_path, "--max_handshakes", "2",
                             "--metrics", f"tcp:{metrics}:interface=127.0.0.1")  # fmt: skip
    gateway.start()
    silent: list[Any] = []
    try:
        factory = protocol.Factory.forProtocol(Silent)
        factory.made = silent
        for _ in range(2):
            yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
        yield until(lambda: metric(metrics, "cmsv6_gateway_handshakes") == 2
                    and metric(metrics, "cmsv6_gateway_accept_paused_total") >= 1,
                    "the gateway to hold two handshakes and stop accepting", in_thread=True)  # fmt: skip
        device = yield connect(reactor, port, "13800000077")
        # The kernel completed the device's TCP handshake (the backlog); the gateway has
        # not accepted it: still two connections, both silent.
        assert metric(metrics, "cmsv6_gateway_connections") == 2
        login = device.login()
        silent[0].transport.loseConnection()
        yield within(login, "the device to be taken, register and authenticate", timeout=30)
        assert metric(metrics, "cmsv6_gateway_devices_online") == 1
        device.transport.loseConnection()
    finally:
        for peer in silent:
            if peer.transport is not None:
                peer.transport.loseConnection()
        gateway.stop()
