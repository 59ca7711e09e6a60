"""``twistd gateway``: options and the service tree (one gateway, or with ``--processes``
a supervisor of several: ``cmsv6.plugins.gateway.workers``)."""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from twisted.application import internet, service, strports
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from cmsv6 import config as cfg
from cmsv6.db import devices as device_store
from cmsv6.db.service import Database, DatabaseUnavailable
from cmsv6.plugins.gateway import workers
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.plugins.gateway.rpc import ClusterFactory
from cmsv6.plugins.gateway.writer import PositionWriter
from cmsv6.rpc import keys
from cmsv6.terminal.limits import Handshakes, Limits
from cmsv6.terminal.registration import RegistrationPolicy

_log = Logger()


class Options(cfg.ServerOptions):
    """``--config FILE`` and every key of ``[database]`` and ``[gateway]``
    (``cmsv6.config``); ``self.config`` is the typed configuration."""

    synopsis = "[--config FILE] [--jt808 ENDPOINT] [--processes N] ..."
    sections = ("database", "gateway")
    #: Worker processes (``--processes``; 0 given: one per core); 1: this process is the gateway.
    processes: int = 1

    def postOptions(self) -> None:  # noqa: N802
        super().postOptions()
        self.processes = self.config.gateway.processes or os.cpu_count() or 1
        if self.processes == 1:
            return
        conf = self.config.gateway
        if conf.public_cluster:
            raise usage.UsageError("--processes: leave public_cluster empty (each worker's is"
                                   " derived from its own cluster port)")
        if (conf.cluster or conf.login) and "{id}" not in conf.cluster_key:
            raise usage.UsageError(
                "--processes: cluster_key names each worker's key file with {id} in it, e.g."
                f" /etc/cmsv6/{{id}}.key for {conf.id}.1 ... {conf.id}.{self.processes}"
                f" (make them with 'cmsv6 cluster key {conf.id}.1 --master FILE --out FILE', ...)"
            )
        try:
            self.workers = workers.plan_workers(
                self.processes, conf.id, conf.ports, conf.jt808, conf.public_jt808,
                conf.cluster, conf.metrics, conf.cluster_key if conf.cluster or conf.login else "",
            )  # fmt: skip
        except ValueError as e:
            raise usage.UsageError(f"--processes: {e}") from None


Options.optFlags = [
    ["reuse_port", None, "(set by --processes) share the jt808 port with other workers"],
]


def gateway_key(path: str, gateway_id: str) -> bytes:
    """This gateway's key from ``path`` (its own key file, or the master key); UsageError
    naming the file otherwise."""
    if not path:
        raise usage.UsageError(
            "[gateway] cluster_key is required with a cluster endpoint or login servers:"
            f" the file of this gateway's key (create it with 'cmsv6 cluster key {gateway_id}"
            " --master FILE --out FILE')"
        )
    try:
        credential = keys.load(path)
    except keys.KeyFileError as e:
        raise usage.UsageError(str(e)) from None
    key = credential.key_for(gateway_id)
    if key is None:
        raise usage.UsageError(f"{path} is {credential.describe()}, not gateway {gateway_id}'s")
    return key


class _DatabaseLast(service.MultiService):
    """The gateway's services: stopped together, except the database, which is stopped
    once the others have finished (their last words, closing the devices' sessions, are
    written to it)."""

    db: service.Service | None = None

    def stopService(self) -> defer.Deferred[Any]:  # noqa: N802
        service.Service.stopService(self)
        others = [defer.maybeDeferred(s.stopService) for s in reversed(list(self))
                  if s is not self.db]  # fmt: skip
        d = defer.DeferredList(others)
        if self.db is not None:
            db = self.db
            d.addCallback(lambda _: db.stopService())
        return d


#: How a worker runs ``twistd`` (the interpreter of the supervisor, no script path needed).
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def worker_commands(options: Options) -> list[tuple[str, list[str]]]:
    """(id, command line) of each worker: the options this process was given, each
    worker's own (``workers.plan_workers``), ``twistd -n`` logging to the supervisor."""
    plans: list[workers.WorkerPlan] = options.workers
    overridden = {key for key, _ in plans[0].overrides} | {"processes", "ports", "reuse_port"}
    given: list[str] = ["--config", options["config"]] if options["config"] else []
    for _, key, *_ in cfg._options(options.sections):
        value = options.get(key)
        if value is None or key in overridden:
            continue
        for one in value if isinstance(value, list) else [value]:
            given += [f"--{key}", str(one)]
    commands = []
    for plan in plans:
        own = [arg for key, value in plan.overrides for arg in (f"--{key}", value)]
        flags = ["--reuse_port"] if plan.reuse_port else []
        # A worker is one gateway, whatever the configuration file says of processes.
        commands.append((plan.name, [*TWISTD, "--nodaemon", "--pidfile=", "gateway", *given,
                                     *own, "--processes", "1", *flags]))  # fmt: skip
    return commands


def supervisor_service(options: Options, reactor: Any) -> service.MultiService:
    """``--processes N``: the workers under a supervisor; every worker's key file is read
    first, so a missing one stops twistd with the command that makes it."""
    conf = options.config.gateway
    for plan in options.workers:
        overrides = dict(plan.overrides)
        if "cluster_key" in overrides:
            gateway_key(overrides["cluster_key"], plan.name)
    top = service.MultiService()
    workers.Supervisor(reactor, worker_commands(options)).setServiceParent(top)
    _log.info("gateway {id}: {n} worker processes, devices on {jt808} ({ports})", id=conf.id,
              n=len(options.workers), jt808=conf.jt808, ports=conf.ports)
    return top


#: The garbage collector's thresholds once the gateway runs (Python's: 700, 10, 10).
GC_THRESHOLDS = (20_000, 10, 10)


def quiet_collector() -> None:
    """Keep the cyclic garbage collector off the hot path once the gateway is up.

    Nearly everything a report allocates is freed by reference counting, but Python's
    default first threshold (700 net allocations) still ran a collection every few
    hundred reports and, whenever reports queued behind a commit, promoted them to the
    old generation, whose full collections (140 ms each at 4,000 devices) took 12 % of a
    core (perf, bench/RESULTS.md). So: everything made at start-up (modules, classes,
    configuration) is frozen out of collections, and a collection runs after 20,000 net
    allocations; cyclic garbage stays bounded by that."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    _log.info("garbage collector: {n} start-up objects frozen, thresholds {t}",
              n=gc.get_freeze_count(), t=gc.get_threshold())


def makeService(options: Options, reactor: Any = None) -> service.MultiService:  # noqa: N802
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    if options.processes > 1:
        return supervisor_service(options, reactor)
    supervisor = os.environ.get(workers.SUPERVISOR_ENV)
    if supervisor and supervisor.isdigit():
        workers.die_with_parent(int(supervisor))
    conf = options.config.gateway
    dsn = options.config.database.dsn
    key = gateway_key(conf.cluster_key, conf.id) if conf.cluster or conf.login else b""
    top = _DatabaseLast()
    # Sessions' queries (registration, authentication, session rows): several in flight,
    # because each round trip waits for turns of a reactor busy with every device; the
    # position writer's batches on threads of their own (``Database.run_batch``).
    db = Database(dsn, reactor, size=8, writer_threads=3)
    db.setServiceParent(top)
    top.db = db
    writer = PositionWriter(db, reactor, concurrency=3)
    gateway = Gateway(
        db,
        reactor,
        conf.id,
        conf.public_jt808,
        open_registration=conf.registration == "open",
        registration=RegistrationPolicy.from_config(conf),
        limits=Limits.of(conf),
        idle_timeout=conf.idle_timeout,
        media_dir=conf.media_dir,
        writer=writer,
    )
    top.gateway = gateway  # type: ignore[attr-defined]

    def ready(_: object) -> Any:
        return device_store.close_gateway_sessions(
            db, gateway.id, gateway.now(), "gateway restarted"
        ).addErrback(lambda f: _log.warn("stale sessions not closed: {e}", e=f.getErrorMessage()))

    # At most max_handshakes connections between accept and authentication: past it the
    # port stops accepting and a reconnect storm waits in the kernel's listen backlog.
    gateway.handshakes = Handshakes(conf.max_handshakes)
    if options["reuse_port"]:
        try:
            shared = workers.TCPPort.parse(conf.jt808)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        endpoint: Any = workers.ReusePortEndpoint(reactor, shared)
    else:
        endpoint = endpoints.serverFromString(reactor, conf.jt808)
    devices = internet.StreamServerEndpointService(gateway.handshakes.paced(endpoint),
                                                   JT808Factory(gateway))  # fmt: skip
    devices._raiseSynchronously = True  # as strports.service: a port in use fails the start

    def _stopped_first(f: Failure) -> None:
        f.trap(DatabaseUnavailable)  # stopped before the database answered: nothing to start

    after_listening: list[service.Service] = []

    def listen(_: object) -> None:
        # Devices are let in once the database answers: before that a registration or an
        # authentication could get no answer at all (a unit retries; an operator wonders).
        if top.running and devices.parent is None:
            devices.setServiceParent(top)
            # Only then does login hear of this gateway: it would otherwise send devices
            # to a port that does not accept yet (or, with --processes, to its siblings).
            for s in after_listening:
                s.setServiceParent(top)
            quiet_collector()

    class _Startup(service.Service):
        def startService(self) -> None:  # noqa: N802
            super().startService()
            d = db.ready().addCallback(ready).addCallback(listen)
            d.addErrback(_stopped_first).addErrback(lambda f: _log.failure("gateway start-up", f))

        def stopService(self) -> Any:  # noqa: N802
            super().stopService()
            gateway.writer.stop()
            # Devices' sessions are closed by us, and recorded so, while the database is up.
            return gateway.stop()

    _Startup().setServiceParent(top)
    if conf.cluster:
        # Only links proving this gateway's own id (login with the master, cmsv6 send).
        cluster = ClusterFactory(gateway, lambda i: key if i == conf.id else None, reactor)
        strports.service(conf.cluster, cluster, reactor=reactor).setServiceParent(top)
    internet.TimerService(2.0, gateway.tick).setServiceParent(top)
    if conf.metrics:
        from twisted.web import resource as web_resource
        from twisted.web import server as web_server

        from cmsv6.metrics import MetricsResource, gateway_collector, make_registry

        registry = make_registry()
        gateway_collector(gateway, registry)
        root = web_resource.Resource()
        root.putChild(b"metrics", MetricsResource(registry))
        strports.service(conf.metrics, web_server.Site(root), reactor=reactor).setServiceParent(top)
    if conf.login:
        from cmsv6.plugins.gateway.cluster import LoginClient, cluster_address

        public_cluster = conf.public_cluster or cluster_address(conf.cluster, conf.public_jt808)
        client = LoginClient(gateway, list(conf.login), reactor, public_cluster, conf.capacity, key)
        after_listening.append(client)  # started once devices get in (see listen)
        _log.info("gateway {id}: reporting to login at {login}", id=conf.id,
                  login=", ".join(conf.login))
    _log.info("gateway {id}: devices on {jt808}, cluster on {cluster}", id=conf.id,
              jt808=conf.jt808, cluster=conf.cluster)
    return top
