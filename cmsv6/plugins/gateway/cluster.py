"""The gateway's link to login: announce, report load, report devices coming and going.

The link itself (failover between the login servers, authentication, announcing on every
reconnection, periodic reports) is ``cmsv6.rpc.client.LoginConnection``, shared with the
media servers. On every (re)connection the gateway announces itself and then every device
it has online, so a login server that just started or took over rebuilds its memory from
the gateways alone. Device events are batched for a moment
and sent in order on the same link, after that snapshot. The link also answers
``SendMessage`` (the gateway's own responders), for a login server that has no other way
to reach this gateway.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from cmsv6.address import escape, split_endpoint
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.rpc import GatewayLocator
from cmsv6.rpc.client import FailoverEndpoint, LoginConnection, LoginLinkClient
from cmsv6.rpc.commands import MAX_PHONES, AnnounceGateway, DevicesChanged, ReportLoad

_log = Logger()

__all__ = ["FailoverEndpoint", "LoginClient", "cluster_address"]


class _Link(LoginLinkClient):
    """The gateway's side of its link to login: it proves the gateway's id, then answers
    login's commands (``SendMessage``)."""


def cluster_address(server_endpoint: str, public_jt808: str) -> str:
    """Where login reaches a gateway's ``cluster`` server endpoint, as a client endpoint
    string: its interface (or the public host when it listens on every interface) and its
    port. "" when it is not a TCP endpoint (login then uses the announcement link)."""
    if not server_endpoint:
        return ""
    fields = split_endpoint(server_endpoint)
    kind = fields[0] if len(fields) > 1 else "tcp"
    if len(fields) == 1:
        fields = ["tcp", *fields]
    if kind not in ("tcp", "tcp6"):
        return ""
    positional = [f for f in fields[1:] if "=" not in f]
    named = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    port = named.get("port", positional[0] if positional else None)
    if port is None or not port.isdigit():
        return ""
    host = named.get("interface", "")
    if host in ("", "0.0.0.0", "::"):
        host = public_jt808.rpartition(":")[0].strip("[]") or "127.0.0.1"
    return f"tcp:host={escape(host)}:port={port}"


class LoginClient(LoginConnection):
    """See the module docstring."""

    link_class = _Link
    #: Seconds device events wait to be sent together.
    BATCH_DELAY = 0.05

    def __init__(
        self,
        gateway: Gateway,
        logins: Sequence[str],
        reactor: Any,
        cluster: str,
        capacity: int,
        key: bytes,
        report_every: float = 2.0,
        retry_max: float = 1.0,
    ) -> None:
        self.gateway = gateway
        self.cluster = cluster
        self.capacity = capacity
        self._changes: dict[str, bool] = {}
        self._flush_call: IDelayedCall | None = None
        super().__init__(gateway.id, key, logins, reactor, report_every, retry_max,
                         what=f"gateway {gateway.id}")  # fmt: skip
        gateway.listeners.append(self._device_event)

    # -- the link ------------------------------------------------------------------------------

    def locator_for(self, link: LoginLinkClient) -> Any:
        return GatewayLocator(self.gateway, link)

    def ready(self) -> defer.Deferred[Any]:
        """No use sending login devices before the gateway's database is up."""
        db = getattr(self.gateway, "db", None)
        return db.ready() if db is not None else defer.succeed(None)

    def announce(self, link: LoginLinkClient) -> defer.Deferred[Any]:
        """Announce the gateway and every device online on it, in one pipelined burst; the
        device events that follow go after it on the same link."""
        g = self.gateway
        self._changes.clear()
        phones = sorted(s for s, session in g.sessions.items() if session.authenticated)
        calls = [
            link.callRemote(AnnounceGateway, id=g.id, public_jt808=g.public_address,
                            cluster=self.cluster, capacity=self.capacity)
        ]  # fmt: skip
        for i in range(0, len(phones), MAX_PHONES):
            calls.append(link.callRemote(DevicesChanged, online=phones[i : i + MAX_PHONES], offline=[]))
        calls.append(link.callRemote(ReportLoad, online=len(g.sessions), connections=len(g.connections)))
        d = defer.gatherResults(calls, consumeErrors=True)
        return d.addCallback(lambda results: f"{results[0]['login']} with {len(phones)} devices online")

    def lost(self, link: LoginLinkClient) -> None:
        self._changes.clear()

    def stopService(self) -> Any:  # noqa: N802
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        return super().stopService()

    # -- reports -------------------------------------------------------------------------------

    def report(self, link: LoginLinkClient) -> None:
        g = self.gateway
        link.callRemote(ReportLoad, online=len(g.sessions), connections=len(g.connections)).addErrback(
            self.call_failed, "load report"
        )

    def _device_event(self, phone: str, online: bool) -> None:
        if self.link is None:
            return  # the next announcement carries the whole picture
        self._changes[phone] = online
        if len(self._changes) >= MAX_PHONES:
            self._flush()
        elif self._flush_call is None:
            self._flush_call = self.clock.callLater(self.BATCH_DELAY, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        changes, self._changes = self._changes, {}
        link = self.link
        if link is None or not changes:
            return
        online = [p for p, up in changes.items() if up]
        offline = [p for p, up in changes.items() if not up]
        link.callRemote(DevicesChanged, online=online, offline=offline).addErrback(
            self.call_failed, "device report"
        )
