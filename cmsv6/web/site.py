"""The login server's web site: the Open API under ``/api``, the client WebSocket at ``/ws``,
and the web client (``[web] static``: by default the one installed with cmsv6,
``cmsv6/web/client``) at ``/`` with its settings at ``/client/config.json``. Its metrics go into the registry it is given;
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

The client's files are served as they are (no build step): every answer says
``Cache-Control: no-cache`` (a browser revalidates, and gets 304 while the file is
unchanged: a new version is seen at the next load, never half of one), JavaScript modules
as ``text/javascript``, never sniffed; no directory is listed and a path that names no file
is the API's JSON 404. Its third-party files (``vendor/``: npm packages ``make client``
copies there) may be missing from an installation made without running it: then
``/vendor/...`` answers 503 with, in words, the command that installs them.
"""

from __future__ import annotations

import json
import os
from email.utils import formatdate
from pathlib import Path
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from cmsv6.config import PACKAGED_CLIENT, WebConfig
from cmsv6.db.service import Database
from cmsv6.metrics import WebCollector
from cmsv6.web.api import Api
from cmsv6.web.auth import Authenticator, LoginLimiter
from cmsv6.web.bounded import BoundedSite
from cmsv6.web.cluster import Cluster
from cmsv6.web.routing import NotFound, Root, Router, bounded_request_factory, write_json
from cmsv6.web.ws import CLOSE_GOING_AWAY, ClientFactory, Hub

_log = Logger()


class Site(BoundedSite):
    """A twisted.web Site that runs the WebSocket hub while it is listening, with at
    most ``max_connections`` open connections and a deadline for request headers.

    To stop: stop listening, wait for ``site.hub.stop()`` (a poll under way finishing), then
    stop the database."""

    hub: Hub
    api: Api
    client_config: ClientConfig

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

#: The web client installed with cmsv6 (``[web] static = "packaged"``).
PACKAGED_CLIENT_DIR = Path(__file__).resolve().parent / "client"
#: Where its npm packages are copied (git-ignored; ``make client``).
VENDOR = "vendor"
#: What installs them, for a user who has not run it.
VENDOR_MISSING = (
    "The web client's third-party files (Leaflet, mpegts.js, uPlot) are not installed in {directory}.\n"
    "In the cmsv6 source checkout, run `make client` (npm ci, then a copy into"
    " cmsv6/web/client/vendor/), then install cmsv6 again (`pip install .`) or give"
    " [web] static the checkout's cmsv6/web/client; then reload this page.\n"
)
#: Content types by suffix: ours, whatever the machine's mime.types says (ES modules need a
#: JavaScript type; browsers refuse a module served as anything else).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
OTHER_TYPE = "application/octet-stream"


def client_directory(static: str) -> Path | None:
    """The directory ``[web] static`` names: the packaged client for ``"packaged"``, none for
    ``""``."""
    if not static:
        return None
    return PACKAGED_CLIENT_DIR if static == PACKAGED_CLIENT else Path(static)


class ClientFiles(resource.Resource):
    """The web client's files in ``directory``, at the site's root (its other children, the
    API and the WebSocket, come first)."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        #: As given (``[web] static``'s directory).
        self.path = str(directory)

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:  # noqa: N802
        segments = [path, *request.postpath]
        del request.postpath[:]  # all of it is ours: the answer is a leaf
        return self.file(segments)

    def render(self, request: server.Request) -> Any:
        return self.file([b""]).render(request)

    def file(self, segments: list[bytes]) -> resource.Resource:
        """The resource answering for the path ``segments`` below the client."""
        names = []
        for i, segment in enumerate(segments):
            try:
                name = segment.decode("utf-8")
            except UnicodeDecodeError:
                return NotFound()
            if not name and i == len(segments) - 1:
                name = "index.html"  # a directory: its index (the root's, in practice)
            # Hidden files (vendor/.installed), parents, and names a segment cannot hold.
            if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
                return NotFound()
            names.append(name)
        if names[0] == VENDOR and not (self.directory / VENDOR).is_dir():
            return VendorMissing(self.directory)
        target = self.directory.joinpath(*names)
        if not target.is_file():  # a directory without its slash, or nothing
            return NotFound()
        return StaticFile(target)


class StaticFile(resource.Resource):
    """One file of the client, streamed (never read whole into memory), revalidated by its
    modification time."""

    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed when sent
            size = os.fstat(f.fileno()).st_size
            mtime = os.fstat(f.fileno()).st_mtime
        except OSError:
            return NotFound().render(request)
        request.setHeader(b"content-type", CONTENT_TYPES.get(self.path.suffix.lower(), OTHER_TYPE).encode())
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if request.setLastModified(mtime) == http.CACHED or request.method == b"HEAD":
            f.close()
            if request.method == b"HEAD":
                request.setHeader(b"content-length", str(size).encode())
            return b""
        request.setHeader(b"content-length", str(size).encode())
        d = FileSender().beginFileTransfer(f, request)

        def sent(_: Any) -> None:
            f.close()
            request.finish()

        def stopped(failure: Failure) -> None:  # the client went away: nothing to finish
            f.close()

        d.addCallbacks(sent, stopped)
        return server.NOT_DONE_YET

    render_HEAD = render_GET  # noqa: N815


class VendorMissing(resource.Resource):
    """503 for the client's third-party files when they are not installed, saying what to
    run (the page shows it: without them the map and the players cannot load)."""

    isLeaf = True

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.message = VENDOR_MISSING.format(directory=directory)

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return self.message.encode("utf-8")


class ClientConfig(resource.Resource):
    """``GET /client/config.json``: what the web client needs to know of the server's
    settings: the map's tiles and their attribution, and whether the media server is
    reached over https (the page then knows a microphone and wss:// are possible)."""

    isLeaf = True

    def __init__(self, web: WebConfig, cluster: Cluster) -> None:
        super().__init__()
        self.web = web
        self.cluster = cluster

    def body(self) -> dict[str, Any]:
        media = self.cluster.media_server() if self.cluster is not None else None
        return {
            "tiles": self.web.tiles,
            "attribution": self.web.tiles_attribution,
            "media_https": bool(media and media.startswith("https:")),
        }

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802
        if request.postpath not in ([], [b""]):
            return NotFound().render(request)
        write_json(request, 200, self.body())
        return server.NOT_DONE_YET


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

    directory = client_directory(web.static)
    root: resource.Resource = Root() if directory is None else ClientFiles(directory)
    client_config = ClientConfig(web, cluster)
    client = Root()
    client.putChild(b"config.json", client_config)
    root.putChild(b"client", client)
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
    site.client_config = client_config
    site.noisy = False
    return site
