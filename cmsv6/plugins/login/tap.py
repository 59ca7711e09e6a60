"""``twistd login``: options and the service tree.

The tree always runs the database pool and the advisory-lock loop (``standby.ActiveLock``).
The listening services (``jt808`` for device assignment, ``cluster`` for the gateways'
AMP links, ``web`` for the Open API), the webhook dispatcher
(``cmsv6.webhooks.dispatcher``) and the positions' maintenance (``cmsv6.db.maintenance``)
run only while this server holds the lock: a standby listens on nothing and delivers
nothing, so gateways and devices find the active one and each webhook event is delivered
by one server. Stepping down stops
listening and closes every connection; the directory is rebuilt by the gateways when
they reconnect to whichever server is active.
"""

from __future__ import annotations

import json
from typing import Any
from weakref import WeakSet

from twisted.application import internet, service, strports
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage
from twisted.web import resource, server

from cmsv6 import config as cfg
from cmsv6.db import cluster as cluster_store
from cmsv6.db.maintenance import Maintenance
from cmsv6.db.service import Database
from cmsv6.plugins.login.assignment import Assigner, AssignmentFactory
from cmsv6.plugins.login.directory import Directory
from cmsv6.plugins.login.rpc import LoginClusterFactory
from cmsv6.plugins.login.standby import ActiveLock
from cmsv6.rpc import keys
from cmsv6.terminal.limits import Limits
from cmsv6.terminal.registration import RegistrationPolicy

_log = Logger()


class Options(cfg.ServerOptions):
    """``--config FILE`` and every key of ``[database]``, ``[login]`` and ``[web]``
    (``cmsv6.config``); ``self.config`` is the typed configuration."""

    synopsis = "[--config FILE] [--jt808 ENDPOINT] ..."
    sections = ("database", "login", "web")


def master_key(path: str) -> keys.Credential:
    """The cluster master key in ``path``; UsageError naming the file otherwise."""
    if not path:
        raise usage.UsageError(
            "[login] cluster_key is required: the file of the cluster master key"
            " (create it with 'cmsv6 cluster init DIR')"
        )
    try:
        credential = keys.load(path)
    except keys.KeyFileError as e:
        raise usage.UsageError(str(e)) from None
    if not credential.is_master:
        raise usage.UsageError(f"{path} is {credential.server_id}'s key: login needs the cluster"
                               " master key ('cmsv6 cluster init')")  # fmt: skip
    return credential


class _Unavailable(resource.Resource):
    """The web front end is not installed (or failed to start): 503 for everything."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")
        error = {"code": "unavailable", "message": "the web front end is not available"}
        return json.dumps({"error": error}).encode()


def make_web(db: Database, cluster: Directory, reactor: Any, web: cfg.WebConfig,
             registry: Any = None) -> Any:  # fmt: skip
    """``cmsv6.web.site.make_site(db, cluster, reactor, web, registry)`` if it exists, else
    a site that answers 503. Imported here, when first needed, so login runs without it."""
    try:
        from cmsv6.web.site import make_site  # type: ignore[import-not-found]
    except ImportError as e:
        if e.name in ("cmsv6.web", "cmsv6.web.site"):
            _log.info("no web front end (cmsv6.web.site.make_site): the web endpoint answers 503")
        else:
            _log.failure("the web front end does not import; the web endpoint answers 503")
        return server.Site(_Unavailable())
    try:
        site = make_site(db, cluster, reactor, web, registry)
    except Exception:  # noqa: BLE001 - serve the rest of login anyway
        _log.failure("make_site failed; the web endpoint answers 503")
        return server.Site(_Unavailable())
    if resource.IResource.providedBy(site):
        site = server.Site(site)
    return site


class _Tracked:
    """A factory that remembers the protocols it built, so they can be closed."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.built: WeakSet[Any] = WeakSet()

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        p = self._factory.buildProtocol(addr)
        if p is not None:
            self.built.add(p)
        return p

    def close_all(self) -> None:
        for p in list(self.built):
            transport = getattr(p, "transport", None)
            if transport is not None:
                transport.loseConnection()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._factory, name)


class Serving:
    """The listening services, started when this server becomes active and stopped when it
    steps down (new services each time: a stopped endpoint service does not listen again)."""

    def __init__(self, reactor: Any, config: cfg.Config, db: Database,
                 directory: Directory, assigner: Assigner, registry: Any = None,
                 credential: keys.Credential | None = None) -> None:  # fmt: skip
        self.reactor = reactor
        self.config = config
        self.registry = registry
        self.db = db
        self.directory = directory
        self.assigner = assigner
        self.jt808 = AssignmentFactory(assigner)
        if credential is None:
            credential = master_key(config.login.cluster_key)
        self.cluster = LoginClusterFactory(
            directory, credential.key_for, reactor,
            known=lambda phones: cluster_store.known_phones(db, phones),
        )  # fmt: skip
        self.web: _Tracked | None = None
        self.services: service.MultiService | None = None
        #: How many times this server has become active.
        self.activations = 0

    def start(self) -> None:
        if self.services is not None:
            return
        conf = self.config.login
        self.activations += 1
        services = service.MultiService()
        strports.service(conf.jt808, self.jt808, reactor=self.reactor).setServiceParent(services)
        strports.service(conf.cluster, self.cluster, reactor=self.reactor).setServiceParent(services)
        # Imported here: login runs without the web package's dependencies too.
        from cmsv6.webhooks.dispatcher import Dispatcher

        Dispatcher(self.db, self.reactor).setServiceParent(services)
        # The positions' day partitions: made ahead, dropped past retention (one server).
        Maintenance(self.db, self.reactor, self.config.database.retention_days
                    ).setServiceParent(services)
        if conf.web:
            if self.web is None:
                site = make_web(self.db, self.directory, self.reactor, self.config.web, self.registry)
                self.web = _Tracked(site)
            strports.service(conf.web, self.web, reactor=self.reactor).setServiceParent(services)
        services.startService()
        self.services = services
        _log.info("active: devices on {jt808}, gateways on {cluster}, web on {web}",
                  jt808=conf.jt808, cluster=conf.cluster, web=conf.web or "-")

    def stop(self, reason: str = "") -> defer.Deferred[Any]:
        services, self.services = self.services, None
        if services is None:
            return defer.succeed(None)
        d = defer.maybeDeferred(services.stopService)
        self.jt808.close_all()
        self.cluster.close_all()
        if self.web is not None:
            self.web.close_all()
            # WebSockets left their HTTP channel at the upgrade: the site closes them.
            close_clients = getattr(self.web._factory, "close_clients", None)
            if close_clients is not None:
                close_clients(reason or "not serving")
        self.directory.clear()
        _log.info("not serving ({reason})", reason=reason or "stopped")
        return d


def makeService(options: Options, reactor: Any = None) -> service.MultiService:  # noqa: N802
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    config = options.config
    conf = config.login
    credential = master_key(conf.cluster_key)
    top = service.MultiService()
    db = Database(config.database.dsn, reactor, size=2)
    db.setServiceParent(top)
    directory = Directory(reactor, login_id=conf.public_jt808, key_for=credential.key_for)
    assigner = Assigner(db, directory, reactor, conf.public_jt808,
                        open_registration=conf.registration == "open",
                        registration=RegistrationPolicy.from_config(conf),
                        limits=Limits.of(conf))  # fmt: skip
    from cmsv6.metrics import (
        MetricsResource,
        amp_links_gauge,
        make_registry,
        role_gauge,
    )

    registry = make_registry()
    serving = Serving(reactor, config, db, directory, assigner, registry, credential)
    lock = ActiveLock(db, reactor, serving.start, serving.stop)
    lock.setServiceParent(top)

    class _Stop(service.Service):
        def stopService(self) -> Any:  # noqa: N802
            super().stopService()
            return serving.stop("shutting down")

    _Stop().setServiceParent(top)

    def tick() -> None:
        directory.tick()
        assigner.tick()

    role_gauge(registry, lambda: serving.services is not None)
    amp_links_gauge(registry, lambda: {"gateway": len(directory.gateways),
                                       "media": len(directory.media)})
    if conf.metrics:
        root = resource.Resource()
        root.putChild(b"metrics", MetricsResource(registry))
        strports.service(conf.metrics, server.Site(root), reactor=reactor).setServiceParent(top)

    timer = internet.TimerService(1.0, tick)
    timer.clock = reactor
    timer.setServiceParent(top)
    top.directory = directory  # type: ignore[attr-defined]
    top.assigner = assigner  # type: ignore[attr-defined]
    top.serving = serving  # type: ignore[attr-defined]
    top.lock = lock  # type: ignore[attr-defined]
    _log.info("login: waiting for the advisory lock to serve devices on {jt808}", jt808=conf.jt808)
    return top
