"""Login's AMP responders (``cluster`` endpoint): gateways announce themselves, their load
and their devices. The link itself is the gateway's liveness: when it drops, the gateway
is dead."""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.plugins.login.directory import Directory
from cmsv6.rpc.commands import (
    MAX_PHONES,
    AnnounceGateway,
    BadRequest,
    DevicesChanged,
    ReportLoad,
    Unavailable,
)

_log = Logger()

#: Gateway (and later media server) links at most.
MAX_LINKS = 1000


def _declared(what: str) -> Any:
    """Responder decorator: declared errors pass, anything else is logged and becomes
    Unavailable (an undeclared error would drop the link)."""

    def wrap(method: Any) -> Any:
        def responder(self: LoginLocator, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (BadRequest, Unavailable):
                raise
            except Exception as e:  # noqa: BLE001 - the boundary
                _log.failure("{what} from {peer} failed", Failure(), what=what, peer=self.link.peer)
                raise Unavailable(str(e)) from None

        responder.__name__ = method.__name__
        return responder

    return wrap


class LoginLocator(amp.CommandLocator):
    def __init__(self, directory: Directory, link: LoginLink) -> None:
        self.directory = directory
        self.link = link

    @AnnounceGateway.responder
    @_declared("announcement")
    def announce(self, id: str, public_jt808: str, cluster: str, capacity: int) -> dict[str, Any]:  # noqa: A002
        self.directory.announce(self.link, id, public_jt808, cluster, capacity)
        return {"login": self.directory.login_id}

    @ReportLoad.responder
    @_declared("load report")
    def report_load(self, online: int, connections: int) -> dict[str, Any]:
        self.directory.report_load(self.link, online, connections)
        return {}

    @DevicesChanged.responder
    @_declared("device report")
    def devices_changed(self, online: list[str], offline: list[str]) -> dict[str, Any]:
        if len(online) + len(offline) > 2 * MAX_PHONES:
            raise BadRequest(f"at most {MAX_PHONES} phones per list")
        self.directory.devices_changed(self.link, online, offline)
        return {}


class LoginLink(amp.AMP):
    """One gateway's link to login."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.peer = "?"
        super().__init__(locator=LoginLocator(directory, self))

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        super().connectionMade()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.directory.link_lost(self)
        self.factory.links.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class LoginClusterFactory(protocol.Factory):
    """Builds gateway links; keeps them so a login server stepping down can close them."""

    def __init__(self, directory: Directory, max_links: int = MAX_LINKS) -> None:
        self.directory = directory
        self.max_links = max_links
        self.links: set[LoginLink] = set()

    def buildProtocol(self, addr: object) -> LoginLink | None:  # noqa: N802
        if len(self.links) >= self.max_links:
            _log.warn("{n} cluster links open; refusing {addr}", n=len(self.links), addr=addr)
            return None
        link = LoginLink(self.directory)
        link.factory = self
        self.links.add(link)
        return link

    def close_all(self) -> None:
        for link in list(self.links):
            link.close()
