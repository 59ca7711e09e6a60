"""The gateway's JT/T 808 endpoint: the terminal layer's thin protocol, with gateway
sessions behind it."""

from __future__ import annotations

from typing import Callable

from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.terminal.protocol import TerminalFactory, TerminalProtocol
from cmsv6.terminal.session import Link


def _session_maker(gateway: Gateway) -> Callable[[Link], DeviceSession]:
    """Sessions for the gateway's connections, each known to it from the start."""

    def new_session(link: Link) -> DeviceSession:
        session = DeviceSession(gateway, link)
        gateway.connected(session)
        return session

    return new_session


class JT808Protocol(TerminalProtocol):
    """One device's connection to the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway, _session_maker(gateway))
        self.gateway = gateway


class JT808Factory(TerminalFactory):
    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway, _session_maker(gateway))
        self.gateway = gateway
