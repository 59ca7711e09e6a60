"""Run ``twistd gateway`` and ``twistd login`` as real processes for tests and benchmarks."""

from __future__ import annotations

import atexit
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cmsv6.rpc import keys

TWISTD = str(Path(sys.executable).with_name("twistd"))

#: The cluster's keys for every server the tests start: one master (login), one key per id.
KEYS = Path(tempfile.mkdtemp(prefix="cmsv6-keys-"))
atexit.register(shutil.rmtree, KEYS, True)


def master_key() -> Path:
    """The tests' cluster master key file (login's ``cluster_key``)."""
    return keys.ensure(KEYS)


def server_key(server_id: str) -> Path:
    """The key file of gateway ``server_id`` under the tests' master key."""
    keys.ensure(KEYS, server_id)
    return KEYS / f"{server_id}.key"


def media_key(media_id: str) -> Path:
    """The key file of media server ``media_id`` under the tests' master key (a key proves
    its server's role: a gateway's key of that id would not do)."""
    path = KEYS / "media" / f"{media_id}.key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        keys.write(path, keys.server_credential(keys.load(master_key()), media_id, keys.MEDIA))
    return path


def listening(port: int) -> bool:
    """Something accepts connections on ``port`` of 127.0.0.1."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port}")


class ServerProcess:
    """A server started with ``twistd -n`` as a child process."""

    proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """kill -9: no shutdown, no flush."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


class GatewayProcess(ServerProcess):
    def __init__(self, dsn: str, port: int, directory: Path, *extra: str) -> None:
        self.dsn = dsn
        self.port = port
        self.directory = directory
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def id(self) -> str:
        """The gateway's id (``--id`` among the extra arguments, else the default)."""
        extra = list(self.extra)
        return extra[extra.index("--id") + 1] if "--id" in extra else "gw-1"

    def start(self, wait: bool = True) -> None:
        """Start it; with ``wait``, until it listens for devices (its database answers)."""
        self.starts += 1
        log = self.directory / f"gateway-{self.starts}.log"
        self.proc = subprocess.Popen(
            [
                TWISTD, "-n", "--pidfile=", f"--logfile={log}", "gateway",
                "--dsn", self.dsn,
                "--jt808", f"tcp:{self.port}:interface=127.0.0.1:backlog=1024",
                "--cluster", "",
                "--registration", "open",
                "--media_dir", str(self.directory / "media"),
                "--cluster_key", str(server_key(self.id)),
                *self.extra,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        if wait:
            wait_port(self.port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoginProcess(ServerProcess):
    def __init__(self, dsn: str, directory: Path, name: str = "login", *extra: str) -> None:
        self.dsn = dsn
        self.directory = directory
        self.name = name
        self.extra = extra
        self.jt808 = free_port()
        self.cluster = free_port()
        self.web = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}-{self.starts}.log"

    def start(self, wait: bool = True) -> None:
        """Start it; with ``wait``, until it listens (is active)."""
        self.starts += 1
        self.proc = subprocess.Popen(
            [
                TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "login",
                "--dsn", self.dsn,
                "--jt808", f"tcp:{self.jt808}:interface=127.0.0.1",
                "--cluster", f"tcp:{self.cluster}:interface=127.0.0.1",
                "--web", f"tcp:{self.web}:interface=127.0.0.1",
                "--public_jt808", f"127.0.0.1:{self.jt808}",
                "--registration", "open",
                "--cluster_key", str(master_key()),
                *self.extra,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        if wait:
            wait_port(self.jt808)

    @property
    def client_cluster(self) -> str:
        return f"tcp:127.0.0.1:{self.cluster}"


def media_key(server_id: str) -> Path:
    """The key file of media server ``server_id`` under the tests' master key."""
    keys.ensure(KEYS, media=[server_id])
    return KEYS / f"{server_id}.key"


class MediaProcess(ServerProcess):
    """``twistd media`` reporting to ``login`` (client endpoints; none: standalone), on
    loopback ports of its own: ``jt1078``, ``web`` and ``metrics``."""

    def __init__(self, directory: Path, login: list[str], server_id: str = "media-1", *extra: str) -> None:
        self.directory = directory
        self.login = login
        self.id = server_id
        self.extra = extra
        self.jt1078, self.web, self.metrics = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.directory / f"{self.id}-{self.starts}.log"

    def start(self, wait: bool = True) -> None:
        """Start it; with ``wait``, until it listens for devices and viewers."""
        self.starts += 1
        logins = [arg for endpoint in self.login for arg in ("--login", endpoint)]
        self.proc = subprocess.Popen(
            [
                TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "media",
                "--id", self.id,
                "--jt1078", f"tcp:{self.jt1078}:interface=127.0.0.1",
                "--public_jt1078", f"127.0.0.1:{self.jt1078}",
                "--web", f"tcp:{self.web}:interface=127.0.0.1",
                "--public_web", f"http://127.0.0.1:{self.web}",
                "--metrics", f"tcp:{self.metrics}:interface=127.0.0.1",
                "--cluster_key", str(media_key(self.id)),
                *logins,
                *self.extra,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        if wait:
            wait_port(self.web)
            wait_port(self.jt1078)
