"""``cmsv6 demo``: the whole system on one machine, with data kept under ``./var/``.

A private PostgreSQL (as the ``postgres`` user when run as root), the schema, a demo fleet,
user and 20 devices, then ``twistd login``, ``twistd gateway`` and ``cmsv6 sim`` with 20
simulated DVRs that arrive through the login server (which assigns them to the gateway).
It prints where to look; Ctrl-C stops everything; a second run reuses the data.

It is as safe as README.rst's "Running it safely" asks, on a small scale: every port is on
127.0.0.1 unless ``--listen`` names another address (the cluster, metrics and database
ports stay there whatever it says), and the servers connect to PostgreSQL as
``cmsv6_app``, a role that owns nothing and may only read and write rows, while the schema
belongs to ``cmsv6_owner`` (both with passwords, kept in ``var/pgpass``; the superuser has
none and is reachable through the cluster's private socket directory only).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from cmsv6.db.devices import add_device
from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import grant_app_role, upgrade
from cmsv6.db.users import add_user

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_FLEET = "demo buses"
FIRST_PHONE = 13900000000
PORTS = {"db": 15432, "login_jt808": 6608, "login_cluster": 6609, "web": 8080,
         "gateway_jt808": 7611, "gateway_cluster": 7613, "login_metrics": 9608,
         "gateway_metrics": 9611}
#: The schema's owner (runs the upgrade) and the servers' role (rows only).
OWNER_ROLE, APP_ROLE = "cmsv6_owner", "cmsv6_app"
LOOPBACK = "127.0.0.1"


def ports(offset: int = 0) -> dict[str, int]:
    """The demo's ports, each moved by ``offset`` (``--port-offset``)."""
    return {name: port + offset for name, port in PORTS.items()}


def role_dsn(var: Path, p: dict[str, int], role: str) -> str:
    """A demo role's DSN: its password is in ``var/pgpass``."""
    return f"host=127.0.0.1 port={p['db']} dbname=cmsv6 user={role} passfile={var / 'pgpass'}"


def reach(listen: str) -> str:
    """The address to reach what listens on ``listen`` from this machine (a wildcard
    address listens on loopback too)."""
    return LOOPBACK if ipaddress.ip_address(listen).is_unspecified else listen


def _interface(address: str) -> str:
    return address.replace(":", "\\:")  # an endpoint string escapes an IPv6 address's colons


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def config_text(var: Path, p: dict[str, int] = PORTS, listen: str = LOOPBACK) -> str:
    """The demo's configuration: devices' and users' ports on ``listen``, the rest on
    loopback."""
    on, public = _interface(listen), _host(reach(listen))
    return f"""# Written by cmsv6 demo: the demo's configuration.
[database]
dsn = "{role_dsn(var, p, APP_ROLE)}"

[login]
jt808 = "tcp:{p['login_jt808']}:interface={on}"
cluster = "tcp:{p['login_cluster']}:interface=127.0.0.1"
cluster_key = "{var / 'cluster' / 'cluster.key'}"
web = "tcp:{p['web']}:interface={on}"
public_jt808 = "{public}:{p['login_jt808']}"
registration = "known"
register_per_address = 1000    # every simulated DVR registers from 127.0.0.1
metrics = "tcp:{p['login_metrics']}:interface=127.0.0.1"

[gateway]
id = "gw-1"
jt808 = "tcp:{p['gateway_jt808']}:backlog=1024:interface={on}"
public_jt808 = "{public}:{p['gateway_jt808']}"
cluster = "tcp:{p['gateway_cluster']}:interface=127.0.0.1"
registration = "known"
login = ["tcp:127.0.0.1:{p['login_cluster']}"]
cluster_key = "{var / 'cluster' / 'gw-1.key'}"
media_dir = "{var / 'media'}"
metrics = "tcp:{p['gateway_metrics']}:interface=127.0.0.1"
"""


def cluster_keys(var: Path) -> None:
    """The cluster's keys, as ``cmsv6 cluster init var/cluster --server gw-1`` makes them
    (on the first run)."""
    from cmsv6.rpc import keys

    directory = var / "cluster"
    if (directory / "cluster.key").exists():
        return
    directory.mkdir(mode=0o700, exist_ok=True)
    master = keys.new_master()
    keys.write(directory / "gw-1.key", keys.server_credential(master, "gw-1"))
    keys.write(directory / "cluster.key", master)


def _secret(path: Path) -> str:
    """The secret kept in ``path`` (made on the first run), readable by us only."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(18) + "\n")
    return path.read_text().strip()


def setup_database(cluster: EmbeddedPostgres, var: Path, p: dict[str, int]) -> str:
    """The demo's roles and database, the schema upgraded by its owner and the servers' role
    granted what they need; the owner's DSN. As the superuser, through the socket."""
    passwords = {role: _secret(var / f"{role}.password") for role in (OWNER_ROLE, APP_ROLE)}
    pgpass = var / "pgpass"
    pgpass.touch(mode=0o600)
    pgpass.write_text("".join(f"127.0.0.1:{p['db']}:cmsv6:{role}:{pw}\n"
                              for role, pw in passwords.items()))  # fmt: skip
    conn = psycopg2.connect(cluster.socket_dsn("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for role, password in passwords.items():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
                hashed = encrypt_password(password, role, conn, "scram-sha-256")
                cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(hashed)))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'cmsv6'")
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE cmsv6 OWNER {OWNER_ROLE}")
            else:  # data of a demo from before the owner role: hand it over
                cur.execute(f"ALTER DATABASE cmsv6 OWNER TO {OWNER_ROLE}")
    finally:
        conn.close()
    conn = psycopg2.connect(cluster.socket_dsn("cmsv6"))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT c.oid::regclass::text FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
                " AND c.relowner <> %s::regrole", (OWNER_ROLE,))  # fmt: skip
            for (table,) in cur.fetchall():
                cur.execute(f"ALTER TABLE {table} OWNER TO {OWNER_ROLE}")
    finally:
        conn.close()
    owner = role_dsn(var, p, OWNER_ROLE)
    upgrade(owner)
    grant_app_role(owner, APP_ROLE)
    return owner


def _start(name: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out: IO[bytes] = open(log, "ab")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.demo_name = name  # type: ignore[attr-defined]
    proc.demo_log = log  # type: ignore[attr-defined]
    return proc


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    import socket

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"cmsv6 demo: {what} exited; see {log}")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"cmsv6 demo: {what} is not listening on {port}; see {log}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # Handlers of our own: a process started in the background inherits SIGINT ignored, and
    # SIGTERM would otherwise end us without stopping the servers and the database.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    var = Path(args.var).resolve()
    logs = var / "log"
    logs.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    config = var / "demo.toml"
    p = ports(args.port_offset)
    listen = args.listen
    near = _host(reach(listen))
    config.write_text(config_text(var, p, listen))
    cluster_keys(var)
    cluster = EmbeddedPostgres(var / "pg", port=p["db"], host_auth="scram-sha-256")
    first_run = not cluster.initialized
    print(f"cmsv6 demo: {'setting up' if first_run else 'reusing'} {var}", flush=True)
    cluster.init()
    cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dsn = setup_database(cluster, var, p)
        # The published password only while nothing but this machine can reach the web port.
        loopback = ipaddress.ip_address(listen).is_loopback
        password = DEMO_PASSWORD if loopback else _secret(var / "demo.password")
        add_user(dsn, DEMO_USER, password, admin=True, fleets=[DEMO_FLEET])
        for i in range(args.devices):
            add_device(dsn, str(FIRST_PHONE + i), plate=f"粤B{i:05d}", fleet=DEMO_FLEET)
        twistd = str(bindir / "twistd")
        # Login's device and web ports both (they open one after the other): the banner
        # must not send a user to a port that is not there yet.
        for name, ports_up in (("login", (p["login_jt808"], p["web"])),
                               ("gateway", (p["gateway_jt808"],))):  # fmt: skip
            log = logs / f"{name}.log"
            proc = _start(name, [twistd, "-n", "--pidfile=", name, "--config", str(config)], log)
            procs.append(proc)
            for port in ports_up:
                _wait_port(reach(listen), port, proc, name, log)
        sim_log = logs / "sim.log"
        procs.append(_start("sim", [
            str(bindir / "cmsv6"), "sim", "--server",
            f"tcp:{_interface(reach(listen))}:{p['login_jt808']}",
            "--devices", str(args.devices), "--first-phone", f"0{FIRST_PHONE}",
            "--interval", "5", "--version", "mixed", "--state", str(var / "sim-state.json"),
            "--alarm-probability", "0.01", "--gap-probability", "0.002",
        ], sim_log))  # fmt: skip
        web = f"http://{near}:{p['web']}"
        where = ("127.0.0.1 only (--listen ADDRESS to open it to a network)" if loopback else
                 f"{listen} (devices' and users' ports); cluster, metrics and database on 127.0.0.1")
        print(f"""
cmsv6 demo is running ({args.devices} simulated DVRs arrive through the login server).

  listening    {where}
  Open API     {web}/api/openapi.json
  log in       curl -s -X POST {web}/api/v1/login -d '{{"username": "{DEMO_USER}", "password": "{password}"}}'
  devices      curl -s -H "Authorization: Bearer TOKEN" {web}/api/v1/devices
  login metrics    http://127.0.0.1:{p['login_metrics']}/metrics
  gateway metrics  http://127.0.0.1:{p['gateway_metrics']}/metrics
  database     psql "{role_dsn(var, p, APP_ROLE)}"  (the servers' role: rows only)
  logs         {logs}/login.log, gateway.log, sim.log
  user         {DEMO_USER} / {password}

Ctrl-C stops everything; the data stays in {var} for the next run.
""", flush=True)  # fmt: skip
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    print(f"cmsv6 demo: {proc.demo_name} exited (see {proc.demo_log});"  # type: ignore[attr-defined]
                          " stopping", flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        print("\ncmsv6 demo: stopping", flush=True)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is procs[-1] else signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.stop()
        print("cmsv6 demo: stopped", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--var", default=os.environ.get("CMSV6_VAR", "var"),
                        help="where the demo keeps its database, logs and files")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: until Ctrl-C)")
    parser.add_argument("--listen", type=_address, default=LOOPBACK, metavar="ADDRESS",
                        help="address of the devices' and users' ports (default 127.0.0.1: this"
                             " machine only; 0.0.0.0: every interface, with a random password"
                             " for the demo user); the others stay on 127.0.0.1")
    parser.add_argument("--port-offset", type=_offset, default=0,
                        help="add N to every port (15432, 6608, 6609, 8080, 7611, 7613, 9608,"
                             " 9611), to run beside services on the default ports")


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _offset(text: str) -> int:
    n = int(text)
    if not 0 <= n <= 65535 - max(PORTS.values()):
        raise argparse.ArgumentTypeError(f"the offset must be between 0 and {65535 - max(PORTS.values())}")
    return n
