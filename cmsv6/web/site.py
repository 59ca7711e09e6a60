"""The login server's web site: the Open API under ``/api``, the client WebSocket at ``/ws``,
``/metrics`` if given a registry, and a static web client if given a directory.

``make_site`` builds it; the site's ``hub`` (the WebSocket's poll) runs between
``site.startFactory`` and ``site.stopFactory``, i.e. while the site is listening (the
endpoint service calls them).

Settings (all optional):

``token_ttl``          seconds a token lives (12 h)
``max_body``           request body limit in bytes (64 KiB)
``command_timeout``    default seconds a device has to answer a command (10)
``max_page``           largest page of positions or alarms (1000)
``login_max_failures`` failed logins before a name or address is locked (5)
``login_window``       seconds over which failures count (300)
``login_lockout``      seconds a name or address stays locked (60)
``poll_interval``      seconds between WebSocket polls (0.5)
``ws_queue``           messages queued per slow WebSocket client before dropping (1000)
``ws_token_recheck``   seconds between checks that open sockets' tokens are still valid (60)
``registry``           a prometheus ``CollectorRegistry``: serve it at /metrics
``static``             a directory to serve at / (the web client)
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web import resource, server

from cmsv6.db.service import Database
from cmsv6.metrics import MetricsResource, WebCollector
from cmsv6.web.api import Api
from cmsv6.web.auth import Authenticator, LoginLimiter
from cmsv6.web.cluster import Cluster
from cmsv6.web.routing import MAX_BODY, Router, bounded_request_factory
from cmsv6.web.ws import CLOSE_GOING_AWAY, ClientFactory, Hub


class Site(server.Site):
    """A twisted.web Site that runs the WebSocket hub while it is listening.

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


def make_site(db: Database, cluster: Cluster, reactor: Any, settings: dict[str, Any]) -> Site:
    """The whole site over ``db`` (a started ``cmsv6.db.service.Database``) and ``cluster``."""
    limiter = LoginLimiter(
        reactor,
        max_failures=int(settings.get("login_max_failures", 5)),
        window=float(settings.get("login_window", 300.0)),
        lockout=float(settings.get("login_lockout", 60.0)),
    )
    auth = Authenticator(db, reactor, ttl=float(settings.get("token_ttl", 12 * 3600.0)),
                         limiter=limiter)
    api = Api(
        db, cluster, auth, reactor,
        command_timeout=float(settings.get("command_timeout", 10.0)),
        max_page=int(settings.get("max_page", 1000)),
    )  # fmt: skip
    hub = Hub(
        db, reactor, interval=float(settings.get("poll_interval", 0.5)),
        recheck_tokens=float(settings.get("ws_token_recheck", 60.0)),
    )  # fmt: skip
    ws = ClientFactory(db, auth, hub, reactor, queue_size=int(settings.get("ws_queue", 1000)))

    directory = settings.get("static")
    root: resource.Resource = resource.Resource()
    if directory:
        from twisted.web import static  # imported only when used: its import warns

        root = static.File(directory)
    root.putChild(b"api", Router(api.routes()))
    root.putChild(b"ws", WebSocketResource(ws))
    registry = settings.get("registry")
    if registry is not None:
        # A server that builds its site again (login becoming active again) replaces the
        # previous site's collector rather than failing on a duplicate.
        previous = getattr(registry, "_cmsv6_web_collector", None)
        if previous is not None:
            registry.unregister(previous)
        collector = WebCollector(hub, limiter)
        registry.register(collector)
        registry._cmsv6_web_collector = collector
        root.putChild(b"metrics", MetricsResource(registry))

    site = Site(
        root,
        requestFactory=bounded_request_factory(int(settings.get("max_body", MAX_BODY))),
        reactor=reactor,
    )
    site.hub = hub
    site.api = api
    site.noisy = False
    return site
