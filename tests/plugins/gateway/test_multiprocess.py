"""``twistd gateway --processes N`` as real processes on loopback: the workers share one
device port (SO_REUSEPORT) and each accepts connections, each announces itself to login
as a gateway of its own, a killed worker is restarted, and none outlives its supervisor."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path

import pytest_twisted

from tests.plugins.login.test_cluster import logged
from tests.support.device import until
from tests.support.process import (
    KEYS,
    GatewayProcess,
    LoginProcess,
    free_port,
    server_key,
)


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def supervisor(dsn: str, directory: Path, metrics: int, *extra: str) -> GatewayProcess:
    """``twistd gateway --processes 2`` as gateway ``gw-p``: workers gw-p.1 and gw-p.2, their
    keys under the tests' master, their metrics on ``metrics`` and ``metrics + 1``."""
    for worker in ("gw-p.1", "gw-p.2"):
        server_key(worker)
    return GatewayProcess(
        dsn, free_port(), directory, "--id", "gw-p", "--processes", "2",
        "--cluster_key", str(KEYS / "{id}.key"),
        "--metrics", f"tcp:{metrics}:interface=127.0.0.1", *extra,
    )  # fmt: skip


def connections(metrics: int) -> float:
    """The device connections a worker's /metrics counts (blocking: run in a thread)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("cmsv6_gateway_connections "):
                return float(line.split()[1])
    raise AssertionError("no cmsv6_gateway_connections in /metrics")


@pytest_twisted.inlineCallbacks
def test_workers_share_the_port_and_each_announces_itself(dsn: str, tmp_path: Path) -> None:
    """Two workers on one device port both accept connections (the kernel spreads them),
    and each announces itself to login under its own id and key."""
    login = LoginProcess(dsn, tmp_path, "login")
    held: list[socket.socket] = []
    gateway = None
    try:
        login.start()  # first: its ports are taken when the metrics pair is chosen
        metrics = free_pair()
        gateway = supervisor(dsn, tmp_path, metrics, "--login", login.client_cluster)
        gateway.start()
        yield until(lambda: logged(login.log, "gateway gw-p.1 is live")
                    and logged(login.log, "gateway gw-p.2 is live"), "both workers announced")
        for _ in range(40):
            held.append(socket.create_connection(("127.0.0.1", gateway.port)))
        counts: list[float] = []

        def all_counted() -> bool:
            counts[:] = [connections(metrics), connections(metrics + 1)]
            return sum(counts) == 40

        yield until(all_counted, "40 connections counted by the workers", in_thread=True)
        assert min(counts) > 0, f"one worker accepted nothing: {counts}"
    finally:
        for s in held:
            s.close()
        if gateway is not None:
            gateway.stop()
        login.stop()


def free_pair() -> int:
    """A port ``p`` with ``p + 1`` free too (the workers' metrics ports), both bound to check."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


@pytest_twisted.inlineCallbacks
def test_a_killed_worker_is_restarted_and_sigterm_stops_all(dsn: str, tmp_path: Path) -> None:
    """kill -9 of one worker: the supervisor starts another, which announces itself
    again; SIGTERM to the supervisor stops every worker."""
    login = LoginProcess(dsn, tmp_path, "login")
    gateway = supervisor(dsn, tmp_path, free_port(), "--login", login.client_cluster,
                         "--metrics", "")  # fmt: skip
    try:
        login.start()
        gateway.start()
        yield until(lambda: len(children(gateway.pid)) == 2, "two workers", in_thread=True)
        yield until(lambda: logged(login.log, "gateway gw-p.1 is live")
                    and logged(login.log, "gateway gw-p.2 is live"), "both workers announced")
        first = children(gateway.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        yield until(lambda: len(children(gateway.pid) - first) == 1
                    and len(children(gateway.pid)) == 2, "a new worker", in_thread=True)
        yield until(lambda: sum(line.count(" is live") for line in
                                login.log.read_text().splitlines()) >= 3,
                    "the new worker to announce itself")
        workers = children(gateway.pid)
        gateway.stop()
        # twistd ends by its signal once it has stopped cleanly; -9 would be stop()'s kill.
        assert gateway.proc is not None and gateway.proc.returncode == -signal.SIGTERM
        yield until(lambda: not any(alive(pid) for pid in workers), "the workers to end",
                    in_thread=True)
    finally:
        gateway.stop()
        login.stop()


@pytest_twisted.inlineCallbacks
def test_no_worker_outlives_its_supervisor(dsn: str, tmp_path: Path) -> None:
    """kill -9 of the supervisor: its workers are stopped too (none keeps the port)."""
    gateway = supervisor(dsn, tmp_path, free_port(), "--metrics", "")
    try:
        gateway.start()
        yield until(lambda: len(children(gateway.pid)) == 2, "two workers", in_thread=True)
        workers = children(gateway.pid)
        gateway.kill()
        yield until(lambda: not any(alive(pid) for pid in workers), "the workers to end",
                    in_thread=True)
    finally:
        gateway.stop()
