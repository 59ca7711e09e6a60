"""An embedded PostgreSQL: a private, self-contained cluster that we create and run in a
directory of ours, for the tests, ``cmsv6 demo`` and the benchmarks (never production).

PostgreSQL refuses to run as root; when we are root the cluster's directory is given to the
``postgres`` user and every server command runs as that user. The server listens on
127.0.0.1 and a socket directory inside the cluster directory (only its owner may enter).
The superuser connects through that socket without a password. Over TCP, ``host_auth``
says how roles authenticate: ``trust`` (the tests: reachable from this machine only) or
``scram-sha-256`` (``cmsv6 demo``: its roles have passwords, the superuser none, so the
superuser is reachable through the socket only). Not for production.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

#: Where Debian puts the PostgreSQL 15 server binaries.
BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
SUPERUSER = "cmsv6"


class EmbeddedPostgresError(Exception):
    pass


def find_bindir() -> Path:
    for candidate in BINDIRS:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise EmbeddedPostgresError("PostgreSQL server binaries not found (apt-get install postgresql-15)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``directory`` (data, sockets, log), on 127.0.0.1:``port``."""

    def __init__(self, directory: Path | str, port: int | None = None,
                 host_auth: str = "trust") -> None:  # fmt: skip
        self.directory = Path(directory).resolve()
        self.data = self.directory / "data"
        self.sockets = self.directory / "run"
        self.log = self.directory / "postgresql.log"
        self.port = port if port is not None else free_port()
        self.bindir = find_bindir()
        self.host_auth = host_auth
        #: ``start()`` started the server (it was not running already): the one who may
        #: stop it again, when others may be using a server that was there before.
        self.started = False

    # -- commands ------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            self._traverse()  # again: another may have closed a parent (pytest does, its base)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def _own(self) -> None:
        """As root, give the cluster directory to postgres (and let it reach it)."""
        if os.geteuid() != 0:
            return
        shutil.chown(self.directory, "postgres", "postgres")
        for path in self.directory.rglob("*"):
            shutil.chown(path, "postgres", "postgres")
        self._traverse()

    def _traverse(self) -> None:
        """Let postgres through every parent of the cluster directory (traverse only)."""
        parent = self.directory.parent
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
            parent = parent.parent

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster if it does not exist yet (a second run reuses it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        self._own()
        os.chmod(self.sockets, 0o700)  # the superuser's way in, without a password
        if self.initialized:
            self._write_hba()  # a second run may ask for another authentication
            return
        self._run(
            "initdb",
            "-D", str(self.data),
            "-U", SUPERUSER,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# cmsv6 embedded cluster\n"
                "listen_addresses = '127.0.0.1'\n"
                "max_connections = 200\n"
                "shared_buffers = 128MB\n"
                "wal_level = replica\n"
                "max_wal_senders = 4\n"
                "fsync = on\n"
            )
        self._write_hba()

    def _write_hba(self) -> None:
        """Trust on the socket, ``host_auth`` on 127.0.0.1 (read when the server starts)."""
        auth = self.host_auth
        (self.data / "pg_hba.conf").write_text(
            "# Written by cmsv6.db.embedded\n"
            "local all all trust\n"
            "local replication all trust\n"
            f"host all all 127.0.0.1/32 {auth}\n"
            f"host replication all 127.0.0.1/32 {auth}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.data / "pg_hba.conf", "postgres", "postgres")

    def start(self, timeout: float = 120.0) -> None:
        """Start the server, unless it runs already (then ``started`` stays False). pg_ctl
        returns as soon as the server is ready: the timeout is for a loaded machine, where
        a new cluster's first start took over 30 s."""
        if self.running:
            return
        self._run(
            "pg_ctl", "start", "-w", "-t", str(int(timeout)),
            "-D", str(self.data), "-l", str(self.log),
            "-o", f"-p {self.port} -k {self.sockets}",
        )  # fmt: skip
        self.started = True
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self._run(
                "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, check=False
            )
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"PostgreSQL on port {self.port} not ready; see {self.log}")

    def stop(self, mode: str = "fast") -> None:
        if self.initialized:
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data), check=False)

    def kill(self) -> None:
        """Stop as a crash would (immediate mode: no shutdown checkpoint)."""
        self.stop("immediate")

    @property
    def running(self) -> bool:
        if not self.initialized:
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, as its ``postmaster.pid`` says (None without one)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        """The postmaster of ``postmaster.pid`` exists: a cheap check, without pg_ctl (a
        server stopped cleanly removes the file; one killed leaves it, with a dead pid)."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # somebody else's process: it exists
            return True
        return True

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres") -> str:
        """The superuser's DSN over TCP (with ``host_auth="trust"`` only)."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={SUPERUSER}"

    def socket_dsn(self, dbname: str = "postgres") -> str:
        """The superuser's DSN through the socket directory (for its owner, or root)."""
        return f"host={self.sockets} port={self.port} dbname={dbname} user={SUPERUSER}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        r = self._run(
            "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.sockets), "-p", str(self.port), "-U", SUPERUSER, "-d", dbname,
            "-c", sql,
        )  # fmt: skip
        return r.stdout.strip()

    def create_database(self, name: str, template: str = "template1") -> str:
        """Create database ``name`` (if missing) and return its DSN."""
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.dsn(name)

    def standby(self, directory: Path | str, port: int | None = None) -> EmbeddedPostgres:
        """A streaming standby of this cluster (pg_basebackup -R), initialised, not started."""
        other = EmbeddedPostgres(directory, port)
        other.directory.mkdir(parents=True, exist_ok=True)
        other.sockets.mkdir(exist_ok=True)
        other._own()
        other._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
            "-D", str(other.data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
        )  # fmt: skip
        return other

    def promote(self) -> None:
        self._run("pg_ctl", "promote", "-w", "-D", str(self.data))
