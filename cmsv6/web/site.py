"""The login server's web site: the Open API under ``/api``, the client WebSocket at ``/ws``,
and a static web client if given a directory. Its metrics go into the registry it is given;
``/metrics`` is served only on the server's own ``metrics`` endpoint (private), never here.

``make_site`` builds it; the site's ``hub`` (the WebSocket's poll) runs between
``site.startFactory`` and ``site.stopFactory``, i.e. while the site is listening (the
endpoint service calls them).

Its settings are ``cmsv6.config.WebConfig`` (the ``[web]`` section of the configuration).

Anyone who can reach the endpoint is bounded: at most ``max_connections`` open
connections (HTTP and the WebSockets upgraded from them; past it a new one is closed at
once), and ``header_timeout`` seconds to send a request's headers, counted from the
connection's opening or its previous response (a slowloris client trickling header bytes
is closed, whatever the idle timeout says). Request bodies and JSON nesting are bounded by
``cmsv6.web.routing``, WebSocket messages by ``cmsv6.web.ws``.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.web import resource, server

from cmsv6.config import WebConfig
from cmsv6.db.service import Database
from cmsv6.metrics import WebCollector
from cmsv6.web.api import Api
from cmsv6.web.auth import Authenticator, LoginLimiter
from cmsv6.web.bounded import BoundedSite
from cmsv6.web.cluster import Cluster
from cmsv6.web.routing import Root, Router, bounded_request_factory
from cmsv6.web.ws import CLOSE_GOING_AWAY, ClientFactory, Hub

_log = Logger()


class Site(BoundedSite):
    """A twisted.web Site that runs the WebSocket hub while it is listening, with at
    most ``max_connections`` open connections and a deadline for request headers.

    To stop: stop listening, wait for ``site.hub.stop()`` (a poll under way finishing), then
    stop the database."""

    hub: Hub
    api: Api

    def startFactory(self) -> None:  # noqa: N802
        super().startFactory()
        self.hub.start()

    def stopFactory(self) -> None:  # noqa: N802
        self.hub.stop()
        super().stopFactory()

    def close_clients(self, reason: str = "server going away") -> None:
        """Close every client WebSocket (4000, going away), e.g. when this login server steps
        down. Their HTTP channels no longer own their sockets, so closing the channels does
        not reach them."""
        for client in list(self.hub.clients):
            client.sendClose(CLOSE_GOING_AWAY, reason)

    def getResourceFor(self, request: server.Request) -> Any:  # noqa: N802
        # Served over TLS (an ``ssl:`` endpoint): browsers are told to come back only so.
        if request.isSecure():
            request.setHeader(b"strict-transport-security", HSTS)
        return super().getResourceFor(request)


#: A year, the value browsers' preload lists ask for at least.
HSTS = b"max-age=31536000"


def make_site(db: Database, cluster: Cluster, reactor: Any, web: WebConfig = WebConfig(),
              registry: Any = None) -> Site:  # fmt: skip
    """The whole site over ``db`` (a started ``cmsv6.db.service.Database``) and ``cluster``;
    with a prometheus ``CollectorRegistry``, the site's collector registered in it."""
    limiter = LoginLimiter(
        reactor,
        max_failures=web.login_max_failures,
        window=web.login_window,
        lockout=web.login_lockout,
        name_failures=web.login_name_failures,
    )
    auth = Authenticator(db, reactor, ttl=web.token_ttl, limiter=limiter)
    api = Api(
        db, cluster, auth, reactor,
        command_timeout=web.command_timeout,
        max_page=web.max_page,
        control_role=web.device_control_role,
        media_dir=web.media_dir,
    )  # fmt: skip
    hub = Hub(db, reactor, interval=web.poll_interval, recheck_tokens=web.ws_token_recheck)
    ws = ClientFactory(db, auth, hub, reactor, queue_size=web.ws_queue,
                       max_per_user=web.ws_max_per_user, max_json_depth=web.max_json_depth)

    root: resource.Resource = Root()
    if web.static:
        from twisted.web import static  # imported only when used: its import warns

        root = static.File(web.static)
    root.putChild(b"api", Router(api.routes()))
    root.putChild(b"ws", WebSocketResource(ws))
    if registry is not None:
        # A server that builds its site again (login becoming active again) replaces the
        # previous site's collector rather than failing on a duplicate.
        previous = getattr(registry, "_cmsv6_web_collector", None)
        if previous is not None:
            registry.unregister(previous)
        collector = WebCollector(hub, limiter)
        registry.register(collector)
        registry._cmsv6_web_collector = collector

    site = Site(
        root,
        requestFactory=bounded_request_factory(web.max_body, web.max_json_depth),
        reactor=reactor,
    )
    site.max_connections = web.max_connections
    site.header_timeout = web.header_timeout
    site.hub = hub
    site.api = api
    site.noisy = False
    return site
