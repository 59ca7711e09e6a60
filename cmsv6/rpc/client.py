"""A server's link to login: one authenticated AMP connection to whichever login server is
active, announced on every (re)connection, reporting periodically.

Gateways and media servers both hold one (``cmsv6.plugins.gateway.cluster``,
``cmsv6.plugins.media.cluster``). A ``ClientService`` tries the configured addresses in
turn (a standby login server listens on nothing, so the first one that answers is the
active one); every new link first proves the server's id (``cmsv6.rpc.link``), then the
subclass announces the server (``announce``), so a login server that just started or took
over rebuilds its memory from the servers alone. While a link is up, ``report`` runs
every ``report_every`` seconds. What the subclass sends over ``link`` that fails drops the
link (``call_failed``): a new link and a new announcement give login the whole picture.
"""

from __future__ import annotations

from random import random
from typing import Any, Sequence

from twisted.application import internet, service
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from cmsv6.rpc import keys
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


class LoginLinkClient(ClusterLink):
    """The connecting side of a link to login: it proves the server's id, then answers
    login's commands with ``owner.locator_for(link)`` (None: nothing)."""

    def __init__(self, owner: LoginConnection) -> None:
        super().__init__(clock=owner.clock)
        self.locator.inner = owner.locator_for(self)
        self.owner = owner
        self.lost = False

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.lost = True
        super().connectionLost(reason)
        self.owner.link_lost(self, reason)


class _LinkFactory(Factory):
    noisy = False

    def __init__(self, owner: LoginConnection) -> None:
        self.owner = owner

    def buildProtocol(self, addr: Any) -> LoginLinkClient:  # noqa: N802
        p = self.owner.link_class(self.owner)
        p.factory = self
        return p


class LoginConnection(service.MultiService):
    """See the module docstring. Subclasses give ``announce(link)`` (a Deferred that fires
    once login has the whole picture; a failure drops the link and tries again) and
    ``report(link)``; ``what`` names the server in the log ("gateway gw-1")."""

    link_class: type[LoginLinkClient] = LoginLinkClient

    def __init__(self, server_id: str, key: bytes, logins: Sequence[str], reactor: Any,
                 report_every: float = 2.0, retry_max: float = 1.0, what: str = "",
                 role: str = keys.GATEWAY) -> None:  # fmt: skip
        super().__init__()
        #: The id this server announces.
        self.server_id = server_id
        #: What it proves, with ``key`` (its cluster key): its id in ``role`` (``cmsv6.rpc.keys``).
        self.identity = keys.identity(role, server_id)
        self.key = key
        self.clock = reactor
        self.what = what or server_id
        self.endpoint = FailoverEndpoint(
            [clientFromString(reactor, a) for a in logins], reactor, names=list(logins)
        )
        #: The link login has this server's announcement on (None while there is none).
        self.link: LoginLinkClient | None = None
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
        timer = internet.TimerService(report_every, self._report)
        timer.clock = reactor
        timer.setServiceParent(self)

    # -- for subclasses ------------------------------------------------------------------------

    def locator_for(self, link: LoginLinkClient) -> Any:
        """The responders login may call on ``link`` (None: none)."""
        return None

    def ready(self) -> defer.Deferred[Any]:
        """Fires when the server has something to announce (its database is up, say)."""
        return defer.succeed(None)

    def announce(self, link: LoginLinkClient) -> defer.Deferred[Any]:
        """Announce the server on ``link``; fires with login's id once login has it all."""
        raise NotImplementedError

    def report(self, link: LoginLinkClient) -> None:
        """The periodic report on ``link`` (errbacks to ``call_failed``)."""

    def lost(self, link: LoginLinkClient) -> None:
        """The announced link is gone."""

    # -- the link ------------------------------------------------------------------------------

    def _announce(self, link: LoginLinkClient) -> defer.Deferred[Any]:
        """Authenticate the link; then, once the server is ready, announce it."""
        d = link.authenticate(self.identity, self.key)

        def failed(failure: Failure) -> Failure:
            _log.warn("login {address} refused the key of {id}, or does not hold it: {e}",
                      address=self.endpoint.connected_to, id=self.server_id,
                      e=failure.getErrorMessage())  # fmt: skip
            return failure

        d.addErrback(failed)
        d.addCallback(lambda _: self.ready())
        return d.addCallback(lambda _: self._announce_now(link))

    def _announce_now(self, link: LoginLinkClient) -> defer.Deferred[Any]:
        if link.lost:
            return defer.fail(ConnectionError("the link went away before the announcement"))
        self.link = link
        d = defer.maybeDeferred(self.announce, link)

        def announced(login: Any) -> None:
            self.announcements += 1
            _log.info("{what} announced to login {login} ({address})", what=self.what,
                      login=login, address=self.endpoint.connected_to)  # fmt: skip

        def failed(failure: Failure) -> Failure:
            if self.link is link:
                self.link = None
            error = failure.value.subFailure if isinstance(failure.value, defer.FirstError) else failure
            _log.warn("announcement of {what} to login {address} failed: {error}", what=self.what,
                      address=self.endpoint.connected_to, error=error.getErrorMessage())  # fmt: skip
            return failure  # ClientService drops this connection and tries again

        return d.addCallbacks(announced, failed)

    def link_lost(self, link: LoginLinkClient, reason: Failure) -> None:
        if self.link is link:
            self.link = None
            self.lost(link)
            _log.info("link to login {address} lost: {error}", address=self.endpoint.connected_to,
                      error=reason.getErrorMessage())

    def _report(self) -> None:
        if self.link is not None:
            self.report(self.link)

    def call_failed(self, failure: Failure, what: str) -> None:
        """Errback for what is sent over the link: the link is going, or login refused (it
        lost track of us): either way a new link and a new announcement fix it."""
        _log.info("{what} to login not delivered: {error}", what=what,
                  error=failure.getErrorMessage())
        link = self.link
        if link is not None and link.transport is not None:
            link.transport.loseConnection()
