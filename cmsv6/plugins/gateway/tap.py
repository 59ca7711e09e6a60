"""``twistd gateway``: options and the service tree."""

from __future__ import annotations

from typing import Any

from twisted.application import internet, service, strports
from twisted.logger import Logger
from twisted.python import usage

from cmsv6 import config as cfg
from cmsv6.db import devices as device_store
from cmsv6.db.positions import ThreadedWriter
from cmsv6.db.service import Database
from cmsv6.plugins.gateway.writer import PositionWriter
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.plugins.gateway.rpc import ClusterFactory

_log = Logger()


class Options(usage.Options):
    synopsis = "[--config FILE] [--jt808 ENDPOINT] ..."
    optParameters = [
        ["config", "c", None, "TOML configuration file ([gateway] and [database])"],
        ["dsn", None, None, "PostgreSQL DSN (libpq; multi-host allowed)"],
        ["id", None, None, "gateway id"],
        ["jt808", None, None, "endpoint for devices (e.g. tcp:7611)"],
        ["public_jt808", None, None, "address login gives devices (host:port)"],
        ["cluster", None, None, "AMP endpoint for commands from the cluster"],
        ["registration", None, None, "'open' (unknown terminals may register) or 'known'"],
        ["idle_timeout", None, None, "seconds without a frame before a device is dropped"],
        ["media_dir", None, None, "where uploaded photos and files are written"],
        ["metrics", None, None, "endpoint serving Prometheus /metrics (e.g. tcp:9611)"],
        ["capacity", None, None, "devices login sends to this gateway at most"],
        ["public_cluster", None, None, "client endpoint where login reaches 'cluster'"],
    ]

    def opt_login(self, value: str) -> None:  # noqa: N802
        """login server AMP endpoint (repeat for active and standby; '' = standalone)"""
        self["login"] = (self.get("login") or []) + ([value] if value else [])

    def postOptions(self) -> None:  # noqa: N802
        try:
            settings = cfg.load(self["config"], "gateway")
        except cfg.ConfigError as e:
            raise usage.UsageError(str(e)) from None
        gateway = settings["gateway"]
        for key in gateway:
            if self.get(key) is not None:
                gateway[key] = self[key]
        if self["dsn"]:
            settings["database"]["dsn"] = self["dsn"]
        if gateway["registration"] not in ("open", "known"):
            raise usage.UsageError("registration must be 'open' or 'known'")
        try:
            gateway["idle_timeout"] = float(gateway["idle_timeout"])
        except ValueError:
            raise usage.UsageError("idle_timeout must be a number of seconds") from None
        if not isinstance(gateway["login"], list) or not all(
            isinstance(a, str) for a in gateway["login"]
        ):
            raise usage.UsageError("login must be a list of endpoint strings")
        try:
            gateway["capacity"] = int(gateway["capacity"])
        except ValueError:
            raise usage.UsageError("capacity must be a number of devices") from None
        self.settings = settings


def makeService(options: Options, reactor: Any = None) -> service.MultiService:  # noqa: N802
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    settings = options.settings
    conf = settings["gateway"]
    top = service.MultiService()
    # Sessions' queries (registration, authentication, session rows): several in flight,
    # because each round trip waits for turns of a reactor busy with every device.
    db = Database(settings["database"]["dsn"], reactor, size=8)
    db.setServiceParent(top)
    threaded = ThreadedWriter(settings["database"]["dsn"], reactor, threads=3)
    writer = PositionWriter(db, reactor, concurrency=3, write=threaded.write)
    gateway = Gateway(
        db,
        reactor,
        conf["id"],
        conf["public_jt808"],
        open_registration=conf["registration"] == "open",
        idle_timeout=conf["idle_timeout"],
        media_dir=conf["media_dir"],
        writer=writer,
    )
    top.gateway = gateway  # type: ignore[attr-defined]

    def ready(_: object) -> Any:
        return device_store.close_gateway_sessions(
            db, gateway.id, gateway.now(), "gateway restarted"
        ).addErrback(lambda f: _log.warn("stale sessions not closed: {e}", e=f.getErrorMessage()))

    class _Startup(service.Service):
        def startService(self) -> None:  # noqa: N802
            super().startService()
            threaded.start()
            db.ready().addCallback(ready).addErrback(lambda f: None)

        def stopService(self) -> None:  # noqa: N802
            super().stopService()
            gateway.writer.stop()
            threaded.stop()

    _Startup().setServiceParent(top)
    strports.service(conf["jt808"], JT808Factory(gateway), reactor=reactor).setServiceParent(top)
    if conf["cluster"]:
        strports.service(conf["cluster"], ClusterFactory(gateway), reactor=reactor).setServiceParent(top)
    internet.TimerService(2.0, gateway.tick).setServiceParent(top)
    if conf["metrics"]:
        from twisted.web import resource as web_resource
        from twisted.web import server as web_server

        from cmsv6.metrics import MetricsResource, gateway_collector, make_registry

        registry = make_registry()
        gateway_collector(gateway, registry)
        root = web_resource.Resource()
        root.putChild(b"metrics", MetricsResource(registry))
        strports.service(conf["metrics"], web_server.Site(root), reactor=reactor).setServiceParent(top)
    if conf["login"]:
        from cmsv6.plugins.gateway.cluster import LoginClient, cluster_address

        public_cluster = conf["public_cluster"] or cluster_address(conf["cluster"], conf["public_jt808"])
        LoginClient(gateway, conf["login"], reactor, public_cluster, conf["capacity"]).setServiceParent(top)
        _log.info("gateway {id}: reporting to login at {login}", id=conf["id"],
                  login=", ".join(conf["login"]))
    _log.info("gateway {id}: devices on {jt808}, cluster on {cluster}", id=conf["id"],
              jt808=conf["jt808"], cluster=conf["cluster"])
    return top
