"""The gateway's link to login: announce, report load, report devices coming and going.

A ``ClientService`` keeps one AMP connection to whichever login server is active, trying
the configured addresses in turn (a standby login server listens on nothing, so the first
one that answers is the active one). On every (re)connection the gateway announces
itself and then every device it has online, so a login server that just started or took
over rebuilds its memory from the gateways alone. Device events are batched for a moment
and sent in order on the same link, after that snapshot. The link also answers
``SendMessage`` (the gateway's own responders), for a login server that has no other way
to reach this gateway.
"""

from __future__ import annotations

from random import random
from typing import Any, Sequence

from twisted.application import internet, service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cmsv6.address import escape, split_endpoint
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.rpc import GatewayLocator
from cmsv6.rpc.commands import MAX_PHONES, AnnounceGateway, DevicesChanged, ReportLoad
from cmsv6.rpc.link import ClusterLink

_log = Logger()


@implementer(IStreamClientEndpoint)
class FailoverEndpoint:
    """Connects to the first of several endpoints that accepts, starting with the one that
    worked last; each attempt is bounded by ``timeout`` seconds."""

    def __init__(self, endpoints: Sequence[IStreamClientEndpoint], clock: IReactorTime,
                 timeout: float = 5.0, names: Sequence[str] | None = None) -> None:  # fmt: skip
        if not endpoints:
            raise ValueError("no endpoints")
        self.endpoints = list(endpoints)
        self.names = list(names) if names is not None else [repr(e) for e in self.endpoints]
        self.clock = clock
        self.timeout = timeout
        self.current = 0
        #: The name of the endpoint that connected last.
        self.connected_to: str | None = None

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        attempt: list[defer.Deferred[Any] | None] = [None]

        def cancel(_: defer.Deferred[Any]) -> None:
            if attempt[0] is not None:
                attempt[0].cancel()

        result: defer.Deferred[Any] = defer.Deferred(cancel)
        order = [(self.current + i) % len(self.endpoints) for i in range(len(self.endpoints))]

        def next_attempt(failure: Failure | None) -> None:
            if result.called:
                return
            if not order:
                assert failure is not None
                result.errback(failure)
                return
            index = order.pop(0)
            d = self.endpoints[index].connect(factory)
            d.addTimeout(self.timeout, self.clock)
            attempt[0] = d

            def connected(protocol: Any) -> None:
                attempt[0] = None
                self.current = index
                self.connected_to = self.names[index]
                if result.called:  # cancelled meanwhile
                    protocol.transport.loseConnection()
                    return
                result.callback(protocol)

            def failed(f: Failure) -> None:
                attempt[0] = None
                if f.check(defer.CancelledError) and result.called:
                    return
                next_attempt(f)

            d.addCallbacks(connected, failed)

        next_attempt(None)
        return result


class _Link(ClusterLink):
    """The gateway's side of its link to login: it proves the gateway's id, then answers
    login's commands."""

    def __init__(self, owner: LoginClient) -> None:
        super().__init__(clock=owner.clock)
        self.locator.inner = GatewayLocator(owner.gateway, self)
        self.owner = owner
        self.lost = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.lost = True
        super().connectionLost(reason)
        self.owner.link_lost(self, reason)


class _LinkFactory(Factory):
    noisy = False

    def __init__(self, owner: LoginClient) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> _Link:  # noqa: N802
        p = _Link(self.owner)
        p.factory = self
        return p


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


class LoginClient(service.MultiService):
    """See the module docstring."""

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
        super().__init__()
        self.gateway = gateway
        #: The gateway's cluster key (``cmsv6.rpc.keys``), proven on every link.
        self.key = key
        self.clock = reactor
        self.cluster = cluster
        self.capacity = capacity
        self.endpoint = FailoverEndpoint(
            [clientFromString(reactor, a) for a in logins], reactor, names=logins
        )
        self.link: _Link | None = None
        self._changes: dict[str, bool] = {}
        self._flush_call: IDelayedCall | None = None
        #: Announcements that succeeded (tests and status).
        self.announcements = 0
        self.client = ClientService(
            self.endpoint, _LinkFactory(self),
            # Short delays and little jitter: a standby taking over is found within a second.
            retryPolicy=backoffPolicy(
                initialDelay=0.1, maxDelay=retry_max, factor=1.5, jitter=lambda: random() * 0.3
            ),
            clock=reactor, prepareConnection=self._announce,
        )  # fmt: skip
        self.client.setServiceParent(self)
        timer = internet.TimerService(report_every, self._report_load)
        timer.clock = reactor
        timer.setServiceParent(self)
        gateway.listeners.append(self._device_event)

    # -- the link ------------------------------------------------------------------------------

    def _announce(self, link: _Link) -> defer.Deferred[Any]:
        """Authenticate the link; then, once the gateway's database is up (no use sending
        it devices before), announce it and every device online on it (``_announce_now``)."""
        d = link.authenticate(self.gateway.id, self.key)

        def failed(failure: Failure) -> Failure:
            _log.warn("login {address} refused the gateway's key, or does not hold it: {e}",
                      address=self.endpoint.connected_to, e=failure.getErrorMessage())  # fmt: skip
            return failure

        d.addErrback(failed)
        db = getattr(self.gateway, "db", None)
        if db is not None:
            d.addCallback(lambda _: db.ready())
        return d.addCallback(lambda _: self._announce_now(link))

    def _announce_now(self, link: _Link) -> defer.Deferred[Any]:
        """Announce the gateway and every device online on it, in one pipelined burst; the
        device events that follow go after it on the same link."""
        if link.lost:
            return defer.fail(ConnectionError("the link went away while the database started"))
        g = self.gateway
        self.link = link
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

        def announced(results: list[Any]) -> None:
            self.announcements += 1
            _log.info("announced to login {login} ({address}) with {n} devices online",
                      login=results[0]["login"], address=self.endpoint.connected_to, n=len(phones))

        def failed(failure: Failure) -> Failure:
            if self.link is link:
                self.link = None
            error = failure.value.subFailure if isinstance(failure.value, defer.FirstError) else failure
            _log.warn("announcement to login {address} failed: {error}",
                      address=self.endpoint.connected_to, error=error.getErrorMessage())
            return failure  # ClientService drops this connection and tries again

        return d.addCallbacks(announced, failed)

    def link_lost(self, link: _Link, reason: Failure) -> None:
        if self.link is link:
            self.link = None
            self._changes.clear()
            _log.info("link to login {address} lost: {error}", address=self.endpoint.connected_to,
                      error=reason.getErrorMessage())

    def stopService(self) -> Any:  # noqa: N802
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        return super().stopService()

    # -- reports -------------------------------------------------------------------------------

    def _report_load(self) -> None:
        link = self.link
        if link is None:
            return
        g = self.gateway
        link.callRemote(ReportLoad, online=len(g.sessions), connections=len(g.connections)).addErrback(
            self._call_failed, "load report"
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
            self._call_failed, "device report"
        )

    def _call_failed(self, failure: Failure, what: str) -> None:
        # The link is going, or login refused (it lost track of us): either way a new link
        # and a new announcement give login the whole picture again.
        _log.info("{what} to login not delivered: {error}", what=what,
                  error=failure.getErrorMessage())
        link = self.link
        if link is not None and link.transport is not None:
            link.transport.loseConnection()
