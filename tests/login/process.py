"""Run ``twistd login`` as a real process for tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.gateway.process import TWISTD, ServerProcess, free_port, wait_port


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
                *self.extra,
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
        )
        if wait:
            wait_port(self.jt808)

    @property
    def client_cluster(self) -> str:
        return f"tcp:127.0.0.1:{self.cluster}"
