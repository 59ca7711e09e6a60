"""One gateway per core: ``twistd gateway --processes N`` and the shared device port.

A Python gateway uses one core. To use every core of a machine, ``--processes N`` (0: one
per core) makes ``twistd gateway`` a supervisor that opens no database and no port: it
runs N workers, each a complete ``twistd gateway`` of its own, that the cluster sees as N
gateways (login's assignment spreads devices over them as over any gateways). Worker
``i`` (1..N) of gateway ``ID``:

- is gateway ``ID.i``, proving it with the key file ``cluster_key`` names once ``{id}`` is
  replaced by ``ID.i`` (``cmsv6 cluster key ID.i``): each worker holds its own key, never
  the master;
- listens for the cluster and metrics on the configured ports + i - 1;
- listens for devices, with ``--ports shared`` (the default), on the configured ``jt808``
  port itself, shared by every worker (``SO_REUSEPORT``: the kernel spreads connections
  evenly over the workers' sockets, and only processes of the same user may join), and
  announces the same ``public_jt808``; with ``--ports each``, on its own port (the
  configured one + i - 1, and ``public_jt808``'s + i - 1), where login's assignment
  sends devices.

The supervisor restarts a worker that ends (at once after a long life; after 1 s,
doubling to 30 s, while it keeps dying within 10 s of its start) and relays its log lines
with its id. On SIGTERM it sends each worker SIGTERM, waits for them (a worker closes its
devices' sessions in the database), and sends SIGKILL to any still there after
``KILL_AFTER`` seconds. A worker whose supervisor dies (even by SIGKILL) is sent SIGTERM
by the kernel (``PR_SET_PDEATHSIG``), so no worker outlives it holding the port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.address import escape, join_address, split_address, split_endpoint

_log = Logger()

#: Environment variable naming the supervisor's pid in its workers.
SUPERVISOR_ENV = "CMSV6_GATEWAY_SUPERVISOR"


@attrs.frozen
class TCPPort:
    """A TCP server endpoint's fields (``tcp:PORT:interface=...:backlog=...``)."""

    kind: str
    port: int
    interface: str = ""
    backlog: int = 50

    @classmethod
    def parse(cls, description: str) -> TCPPort:
        """ValueError, in words, unless ``description`` is a ``tcp``/``tcp6`` server endpoint."""
        fields = split_endpoint(description)
        if len(fields) == 1 or fields[0].isdigit():
            fields = ["tcp", *fields]
        kind = fields[0]
        if kind not in ("tcp", "tcp6"):
            raise ValueError(f"{description!r}: several processes need a tcp or tcp6 endpoint")
        positional = [f for f in fields[1:] if "=" not in f]
        named = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        unknown = set(named) - {"port", "interface", "backlog"}
        port = named.get("port", positional[0] if positional else "")
        if unknown or len(positional) > 1 or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{description!r} is not tcp:PORT[:interface=HOST][:backlog=N]")
        backlog = named.get("backlog", "50")
        if not backlog.isdigit():
            raise ValueError(f"{description!r}: backlog is a number")
        return cls(kind, int(port), named.get("interface", ""), int(backlog))

    def shifted(self, by: int) -> TCPPort:
        if not 0 < self.port + by < 65536:
            raise ValueError(f"port {self.port} + {by} is not a port")
        return attrs.evolve(self, port=self.port + by)

    def description(self) -> str:
        interface = f":interface={escape(self.interface)}" if self.interface else ""
        return f"{self.kind}:{self.port}{interface}:backlog={self.backlog}"


@attrs.define
class ReusePortEndpoint:
    """An ``IStreamServerEndpoint`` whose socket has ``SO_REUSEPORT``: several processes
    (of the same user) listen on one port and the kernel spreads connections over them.
    Twisted's ``tcp:`` endpoint has no such option, so the socket is made here and adopted
    (``reactor.adoptStreamPort``)."""

    reactor: Any
    address: TCPPort

    def listen(self, factory: IProtocolFactory) -> defer.Deferred[IListeningPort]:
        family = socket.AF_INET6 if self.address.kind == "tcp6" else socket.AF_INET
        interface = self.address.interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((interface, self.address.port))
            sock.listen(self.address.backlog)
            sock.setblocking(False)
            port = self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        except OSError as e:
            return defer.fail(error.CannotListenError(interface, self.address.port, e))
        finally:
            sock.close()  # the adopted port holds its own duplicate of the descriptor
        return defer.succeed(port)


def die_with_parent(parent: int) -> None:
    """Ask the kernel to send this process SIGTERM when its parent ends (Linux); if the
    parent ``parent`` is already gone, stop now."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        pr_set_pdeathsig = 1
        ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


@attrs.frozen
class WorkerPlan:
    """What worker ``index`` is told beyond the supervisor's own options."""

    name: str
    overrides: tuple[tuple[str, str], ...]
    reuse_port: bool


def plan_workers(
    count: int,
    gateway_id: str,
    ports: str,
    jt808: str,
    public_jt808: str,
    cluster: str,
    metrics: str,
    cluster_key: str,
) -> list[WorkerPlan]:
    """Each worker's id and settings (see the module docstring); ValueError in words."""
    devices = TCPPort.parse(jt808)
    cluster_port = TCPPort.parse(cluster) if cluster else None
    metrics_port = TCPPort.parse(metrics) if metrics else None
    public_host, public_port = split_address(public_jt808)
    plans = []
    for i in range(1, count + 1):
        worker_id = f"{gateway_id}.{i}"
        over = [("id", worker_id)]
        if ports == "each":
            over.append(("jt808", devices.shifted(i - 1).description()))
            over.append(("public_jt808", join_address(public_host, public_port + i - 1)))
        else:
            over.append(("jt808", devices.description()))
        over.append(("cluster", cluster_port.shifted(i - 1).description() if cluster_port else ""))
        over.append(("metrics", metrics_port.shifted(i - 1).description() if metrics_port else ""))
        if cluster_key:
            over.append(("cluster_key", cluster_key.replace("{id}", worker_id)))
        plans.append(WorkerPlan(worker_id, tuple(over), ports != "each"))
    return plans


class _WorkerProtocol(protocol.ProcessProtocol):
    """A worker's output, relayed to the supervisor's log a line at a time (bounded)."""

    MAX_LINE = 16 * 1024

    def __init__(self, supervisor: Supervisor, name: str) -> None:
        self.supervisor = supervisor
        self.name = name
        self._buffers: dict[int, bytes] = {}

    def childDataReceived(self, fd: int, data: bytes) -> None:  # noqa: N802
        lines = (self._buffers.get(fd, b"") + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._relay(line)
        if len(rest) > self.MAX_LINE:
            self._relay(rest[: self.MAX_LINE] + b" [cut]")
            rest = b""
        self._buffers[fd] = rest

    def _relay(self, line: bytes) -> None:
        _log.info("[{worker}] {line}", worker=self.name, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:  # noqa: N802
        for rest in self._buffers.values():
            if rest:
                self._relay(rest)
        self.supervisor.ended(self.name, reason)


class Supervisor(service.Service):
    """Runs the workers, restarts one that ends, stops them all (see the module docstring)."""

    #: Seconds a worker has to stop after SIGTERM before it is sent SIGKILL.
    KILL_AFTER = 30.0
    #: A worker that ends within this many seconds of its start is restarted with back-off.
    SHORT_LIFE = 10.0
    MIN_DELAY, MAX_DELAY = 1.0, 30.0

    def __init__(self, reactor: Any, commands: Sequence[tuple[str, list[str]]],
                 env: dict[str, str] | None = None) -> None:
        self.reactor = reactor
        self.commands = dict(commands)
        self.env = dict(os.environ if env is None else env)
        self.processes: dict[str, Any] = {}
        self.started_at: dict[str, float] = {}
        self.delay = {name: self.MIN_DELAY for name in self.commands}
        self.restarts = {name: 0 for name in self.commands}
        self._pending: dict[str, IDelayedCall] = {}
        self._kills: dict[str, IDelayedCall] = {}
        self._all_ended: list[defer.Deferred[None]] = []

    def startService(self) -> None:  # noqa: N802
        super().startService()
        for name in self.commands:
            self.spawn(name)

    def spawn(self, name: str) -> None:
        self._pending.pop(name, None)
        if not self.running or name in self.processes:
            return
        args = self.commands[name]
        env = {**self.env, SUPERVISOR_ENV: str(os.getpid())}
        self.started_at[name] = self.reactor.seconds()
        self.processes[name] = self.reactor.spawnProcess(
            _WorkerProtocol(self, name), args[0], args, env=env, childFDs={0: "w", 1: "r", 2: "r"}
        )
        _log.info("worker {name} started (pid {pid})", name=name, pid=self.processes[name].pid)

    def ended(self, name: str, reason: Failure) -> None:
        self.processes.pop(name, None)
        kill = self._kills.pop(name, None)
        if kill is not None and kill.active():
            kill.cancel()
        code, sig = getattr(reason.value, "exitCode", None), getattr(reason.value, "signal", None)
        how = f"signal {sig}" if sig is not None else f"exit code {code}"
        if not self.running:
            _log.info("worker {name} stopped ({how})", name=name, how=how)
            if not self.processes:
                waiting, self._all_ended = self._all_ended, []
                for d in waiting:
                    d.callback(None)
            return
        lived = self.reactor.seconds() - self.started_at.get(name, 0.0)
        if lived < self.SHORT_LIFE:
            delay = self.delay[name]
            self.delay[name] = min(delay * 2, self.MAX_DELAY)
        else:
            delay, self.delay[name] = 0.0, self.MIN_DELAY
        self.restarts[name] += 1
        _log.warn("worker {name} ended after {lived:.0f} s ({how}); restarting it in {delay:.0f} s",
                  name=name, lived=lived, how=how, delay=delay)
        self._pending[name] = self.reactor.callLater(delay, self.spawn, name)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802
        super().stopService()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        if not self.processes:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._all_ended.append(d)
        for name, process in list(self.processes.items()):
            self._signal(process, "TERM")
            self._kills[name] = self.reactor.callLater(self.KILL_AFTER, self._signal, process, "KILL")
        return d

    @staticmethod
    def _signal(process: Any, name: str) -> None:
        try:
            process.signalProcess(name)
        except error.ProcessExitedAlready:
            pass
