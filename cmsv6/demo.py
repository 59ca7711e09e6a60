"""``cmsv6 demo``: the whole system on one machine, with data kept under ``./var/``.

A private PostgreSQL (as the ``postgres`` user when run as root), the schema, a demo fleet,
user and 20 devices, then ``twistd login``, ``twistd gateway``, ``twistd media`` and
``cmsv6 sim`` with 20 simulated DVRs (2 H.264 cameras each, driving around Shenzhen and
raising an emergency alarm now and then) that arrive through the login server (which assigns
them to the gateway) and stream their cameras to the media server when a viewer asks.
It prints where to look first (the web client's address and the demo user), then the rest
(and how to watch a camera with FFmpeg); Ctrl-C stops everything; a second run reuses the
data.

One demo per directory: ``var/demo.pid`` is locked while one runs, and a second says which
(pid, web address) and touches nothing. The demo stops only the PostgreSQL it started, and
never runs on without its servers: when one of them or PostgreSQL exits, it says which, how,
with the end of its log, and stops the rest.

It is as safe as README.rst's "Running it safely" asks, on a small scale: every port is on
127.0.0.1 unless ``--listen`` names another address (the cluster, metrics and database
ports stay there whatever it says), and the servers connect to PostgreSQL as
``cmsv6_app``, a role that owns nothing and may only read and write rows, while the schema
belongs to ``cmsv6_owner`` (both with passwords, kept in ``var/pgpass``; the superuser has
none and is reachable through the cluster's private socket directory only).
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psycopg2
from attrs import frozen
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from cmsv6.config import DEMO_CONFIG
from cmsv6.db.devices import add_device
from cmsv6.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from cmsv6.db.upgrade import grant_app_role, upgrade
from cmsv6.db.users import add_user
from cmsv6.sim.fleet import phones

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_FLEET = "demo buses"
FIRST_PHONE = 13900000000
#: As ``cmsv6 sim --first-phone`` gets it: 12 digits, what a 2013 header carries.
SIM_FIRST_PHONE = f"0{FIRST_PHONE}"
#: ``cmsv6 sim --plate-prefix``: the simulator numbers its plates from 00001.
PLATE_PREFIX = "粤B"
PORTS = {"db": 15432, "login_jt808": 6608, "login_cluster": 6609, "web": 8080,
         "gateway_jt808": 7611, "gateway_cluster": 7613, "login_metrics": 9608,
         "gateway_metrics": 9611, "media_jt1078": 7612, "media_web": 8081,
         "media_metrics": 9612}
#: The ports on ``--listen`` (the others are on 127.0.0.1 whatever it says).
PUBLIC = ("login_jt808", "web", "gateway_jt808", "media_jt1078", "media_web")
#: The media server's id in the demo's cluster (its key is ``var/cluster/media-1.key``).
MEDIA_ID = "media-1"
#: Camera channels of each demo device, in the database and in the simulator alike.
DEMO_CHANNELS = 2
#: The demo's cameras that send H.265 (``--h265-channels``; default none: a browser without
#: HEVC decoding plays H.265 only through the media server's transcoder, and recordings
#: played back not at all).
DEMO_H265_CHANNELS = ""
#: Seconds between a simulated DVR's positions (markers move this often), and the chance per
#: position of an emergency alarm: with 20 DVRs, one alarm every 40 s or so.
DEMO_INTERVAL = 2
DEMO_ALARM_PROBABILITY = 0.0025
#: Lines of a server's log shown when it exits.
LOG_TAIL_LINES = 10
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

[web]
media_dir = "{var / 'media'}"  # the gateway's: login serves its photos (GET /api/v1/media/ID)

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

[media]
id = "{MEDIA_ID}"
jt1078 = "tcp:{p['media_jt1078']}:backlog=1024:interface={on}"
public_jt1078 = "{public}:{p['media_jt1078']}"
web = "tcp:{p['media_web']}:interface={on}"
public_web = "http://{public}:{p['media_web']}"
login = ["tcp:127.0.0.1:{p['login_cluster']}"]
cluster_key = "{var / 'cluster' / f'{MEDIA_ID}.key'}"
metrics = "tcp:{p['media_metrics']}:interface=127.0.0.1"
"""


def cluster_keys(var: Path) -> None:
    """The cluster's keys in ``var/cluster``: the master, the gateway's and the media
    server's, those missing made (all on the first run; the media server's, later, in a
    demo's data from before it had one)."""
    from cmsv6.rpc import keys

    directory = var / "cluster"
    directory.mkdir(mode=0o700, exist_ok=True)
    keys.ensure(directory, "gw-1", media=[MEDIA_ID])


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


@frozen
class Server:
    """A process the demo started and watches: its name in messages, and its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def _start(name: str, args: list[str], log: Path) -> Server:
    with open(log, "ab") as out:  # the child has its own copy
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Server(name, proc, log)


def tail(path: Path, lines: int = LOG_TAIL_LINES, limit: int = 8192) -> str:
    """The last ``lines`` lines of the log at ``path`` (of its last ``limit`` bytes), in
    words for a message."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError as e:
        return f"its log {path} cannot be read ({e.strerror})"
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > limit:
        text = text[1:]  # the first line was cut
    if not text:
        return f"its log {path} is empty"
    return f"last lines of {path}:\n" + "\n".join("    " + line for line in text[-lines:])


def _status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"status {code}"


def exited(servers: list[Server], cluster: EmbeddedPostgres) -> str | None:
    """Why the demo cannot go on: the first of its processes found gone, with the end of its
    log (None while all run)."""
    if not cluster.alive:  # first: the servers may follow it
        return f"PostgreSQL exited; {tail(cluster.log)}"
    for server in servers:
        code = server.proc.poll()
        if code is not None:
            return f"{server.name} exited ({_status(code)}); {tail(server.log)}"
    return None


def _wait_port(host: str, port: int, server: Server, cluster: EmbeddedPostgres) -> None:
    for _ in range(300):
        gone = exited([server], cluster)
        if gone:
            raise SystemExit(f"cmsv6 demo: {gone}")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"cmsv6 demo: {server.name} is not listening on {port}; {tail(server.log)}")


def hold_lock(path: Path, web: str) -> IO[str] | None:
    """Hold ``path``'s lock, with our pid and web address in it, for as long as the returned
    file is open; None if another demo holds it. The file is never removed: a demo that
    opened it just before its removal would lock a file nobody else sees."""
    f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.truncate()
    f.write(f"{os.getpid()} {web}\n")
    f.flush()
    return f


def holder(path: Path) -> str:
    """The pid and web address the demo holding ``path``'s lock wrote there."""
    for _ in range(20):  # it writes them just after it takes the lock
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                words = f.read(256).split()
        except OSError:
            words = []
        if len(words) == 2 and words[0].isdigit():
            return f"pid {words[0]}, {words[1]}"
        time.sleep(0.05)
    return "pid unknown"


def busy_ports(p: dict[str, int], listen: str) -> list[str]:
    """The demo's ports that something else has taken (another demo on other data, or the
    servers of one that was killed), as "8080 (web)"."""
    busy = []
    for name, port in p.items():
        host = listen if name in PUBLIC else LOOPBACK
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                s.bind((host, port))
            except OSError:
                busy.append(f"{port} ({name})")
    return busy


def demo_devices(count: int) -> list[tuple[str, str]]:
    """(phone, plate) of the demo's devices: the phones and plates ``cmsv6 sim`` gives its
    devices with the demo's arguments (``sim_args``), plates numbered from 1 as it does."""
    return [(phone, f"{PLATE_PREFIX}{i + 1:05d}")
            for i, phone in enumerate(phones(SIM_FIRST_PHONE, count))]  # fmt: skip


def add_demo_devices(dsn: str, count: int) -> None:
    """The demo's devices in its fleet (a second run puts their plates right)."""
    for phone, plate in demo_devices(count):
        add_device(dsn, phone, plate=plate, fleet=DEMO_FLEET, channels=DEMO_CHANNELS)


def sim_args(var: Path, p: dict[str, int], listen: str, devices: int,
             h265_channels: str = DEMO_H265_CHANNELS) -> list[str]:  # fmt: skip
    """``cmsv6 sim``'s arguments: the demo's devices, through the login server, with the
    cameras the database says they have (the encoded clip kept in ``var``)."""
    return [
        "--server", f"tcp:{_interface(reach(listen))}:{p['login_jt808']}",
        "--devices", str(devices), "--first-phone", SIM_FIRST_PHONE,
        "--plate-prefix", PLATE_PREFIX,
        "--interval", str(DEMO_INTERVAL), "--version", "mixed",
        "--state", str(var / "sim-state.json"),
        "--alarm-probability", str(DEMO_ALARM_PROBABILITY), "--gap-probability", "0.002",
        "--channels", str(DEMO_CHANNELS), "--cache-dir", str(var / "sim-clip"),
        *(["--h265-channels", h265_channels] if h265_channels else []),
    ]  # fmt: skip


#: Reads one field of the JSON on stdin (python3: not every machine has jq).
_FIELD = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"{}\"])'"


def watch_line(web: str, password: str, phone: str, channel: int = 1) -> str:
    """A shell line that logs in as the demo user, asks for ``phone``'s live ``channel``
    and plays its HTTP-FLV URL with ffplay."""
    login = (f"curl -s -X POST {web}/api/v1/login"
             f""" -d '{{"username": "{DEMO_USER}", "password": "{password}"}}'""")
    live = (f'curl -s -X POST -H "Authorization: Bearer $T" {web}/api/v1/devices/{phone}/live'
            f""" -d '{{"channel": {channel}}}'""")
    return (f"T=$({login} | {_FIELD.format('token')}) &&"
            f' ffplay "$({live} | {_FIELD.format("http_flv")})"')


def shown(path: Path) -> str:
    """``path`` as a user in this directory would type it (relative when it is below)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def client_note() -> str:
    """What the banner adds to the web client's line: nothing, or why the page cannot work
    yet (its npm packages never copied in: ``make client``)."""
    from cmsv6.web.site import PACKAGED_CLIENT_DIR

    if (PACKAGED_CLIENT_DIR / "vendor").is_dir():
        return ""
    return ("\n                   its map and video players are missing: run `make client` in the"
            " cmsv6 checkout, and install cmsv6 again if it was not installed with -e")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # Handlers of our own: a process started in the background inherits SIGINT ignored, and
    # SIGTERM would otherwise end us without stopping the servers and the database.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    var = Path(args.var).resolve()
    p = ports(args.port_offset)
    web = f"http://{_host(reach(args.listen))}:{p['web']}"
    # One demo per directory: a second one would share (and, going, stop) the first's
    # PostgreSQL. Checked before anything in var/ is touched.
    try:
        var.mkdir(parents=True, exist_ok=True)
        lock = hold_lock(var / "demo.pid", web)
    except OSError as e:
        print(f"cmsv6 demo: cannot use {var}: {e.strerror}", file=sys.stderr, flush=True)
        return 1
    if lock is None:
        print(f"cmsv6 demo: already running ({holder(var / 'demo.pid')}) on {var}; stop it"
              " first (Ctrl-C) or give this one another directory and ports"
              " (--var DIR --port-offset N)", file=sys.stderr, flush=True)  # fmt: skip
        return 1
    try:
        return _run(args, var, p, web)
    finally:
        lock.truncate(0)  # nobody holds it now
        lock.close()


def _run(args: argparse.Namespace, var: Path, p: dict[str, int], web: str) -> int:
    logs = var / "log"
    logs.mkdir(exist_ok=True)
    bindir = Path(sys.executable).parent
    config = var / DEMO_CONFIG
    listen = args.listen
    cluster = EmbeddedPostgres(var / "pg", port=p["db"], host_auth="scram-sha-256")
    leftover = cluster.running  # left by a demo that was killed: we hold the lock, none uses it
    # The servers' ports first: servers a killed demo left behind still use its PostgreSQL.
    busy = busy_ports({name: port for name, port in p.items() if name != "db" or not leftover},
                      listen)  # fmt: skip
    if busy:
        print(f"cmsv6 demo: in use: port {', '.join(busy)} (another demo, or the servers of one"
              f" that was killed: see {logs}); --port-offset N moves every port",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    if leftover:
        # Started again, it listens on this run's port with this run's authentication, and
        # is ours to stop.
        print(f"cmsv6 demo: restarting the PostgreSQL (pid {cluster.pid}) an earlier demo left"
              f" running in {cluster.directory}", flush=True)  # fmt: skip
        cluster.stop()
        if cluster.running:
            print(f"cmsv6 demo: the PostgreSQL in {cluster.directory} does not stop;"
                  f" {tail(cluster.log)}", file=sys.stderr, flush=True)  # fmt: skip
            return 1
    config.write_text(config_text(var, p, listen))
    cluster_keys(var)
    first_run = not cluster.initialized
    print(f"cmsv6 demo: {'setting up' if first_run else 'reusing'} {var}", flush=True)
    cluster.init()
    servers: list[Server] = []
    try:
        try:
            cluster.start()
        except EmbeddedPostgresError as e:
            print(f"cmsv6 demo: {e}; {tail(cluster.log)}", file=sys.stderr, flush=True)
            return 1
        dsn = setup_database(cluster, var, p)
        # The published password only while nothing but this machine can reach the web port.
        loopback = ipaddress.ip_address(listen).is_loopback
        password = DEMO_PASSWORD if loopback else _secret(var / "demo.password")
        add_user(dsn, DEMO_USER, password, admin=True, fleets=[DEMO_FLEET])
        add_demo_devices(dsn, args.devices)
        twistd = str(bindir / "twistd")
        # Login's device and web ports both (they open one after the other): the banner
        # must not send a user to a port that is not there yet.
        for name, what, ports_up in (("login", "the login server", (p["login_jt808"], p["web"])),
                                     ("gateway", "the gateway", (p["gateway_jt808"],)),
                                     ("media", "the media server",
                                      (p["media_jt1078"], p["media_web"]))):  # fmt: skip
            server = _start(what, [twistd, "-n", "--pidfile=", name, "--config", str(config)],
                            logs / f"{name}.log")  # fmt: skip
            servers.append(server)
            for port in ports_up:
                _wait_port(reach(listen), port, server, cluster)
        servers.append(_start("the simulator", [str(bindir / "cmsv6"), "sim",
                                                *sim_args(var, p, listen, args.devices,
                                                          args.h265_channels)],
                              logs / "sim.log"))  # fmt: skip
        # As a user types it (the simulator pads it to the 12 digits of a 2013 header).
        watched = str(FIRST_PHONE)
        where = ("127.0.0.1 only (--listen ADDRESS to open it to a network)" if loopback else
                 f"{listen} (devices' and users' ports); cluster, metrics and database on 127.0.0.1")
        print(f"""
cmsv6 demo is running ({args.devices} simulated DVRs arrive through the login server).

  web client       {web}/  (open it in a browser){client_note()}
  user             {DEMO_USER} / {password}

  listening        {where}
  Open API         {web}/api/openapi.json
  log in           curl -s -X POST {web}/api/v1/login -d '{{"username": "{DEMO_USER}", "password": "{password}"}}'
  devices          curl -s -H "Authorization: Bearer TOKEN" {web}/api/v1/devices
  login metrics    http://127.0.0.1:{p['login_metrics']}/metrics
  gateway metrics  http://127.0.0.1:{p['gateway_metrics']}/metrics
  media metrics    http://127.0.0.1:{p['media_metrics']}/metrics
  live video       curl -s -X POST -H "Authorization: Bearer TOKEN" {web}/api/v1/devices/{watched}/live -d '{{"channel": 1}}'
  watch it         ffplay (FFmpeg) on the "http_flv" URL that gives (or "ws_flv" in a browser player):
                   {watch_line(web, password, watched)}
  database         psql "{role_dsn(var, p, APP_ROLE)}"  (the servers' role: rows only)
  logs             {logs}/login.log, gateway.log, media.log, sim.log
  PostgreSQL log   {cluster.log}
  admin commands   {shown(bindir / 'cmsv6')} device list --config {shown(config)}

Ctrl-C stops everything; the data stays in {var} for the next run.
""", flush=True)  # fmt: skip
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            gone = exited(servers, cluster)
            if gone:  # the rest cannot work without it: say why, and stop them
                print(f"cmsv6 demo: {gone}\ncmsv6 demo: stopping the rest", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        print("\ncmsv6 demo: stopping", flush=True)
        return 0
    finally:
        for server in reversed(servers):
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGINT if server is servers[-1] else signal.SIGTERM)
        for server in reversed(servers):
            try:
                server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
        if cluster.started:  # never a PostgreSQL that was running before (another's)
            cluster.stop()
        print("cmsv6 demo: stopped", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--var", default=os.environ.get("CMSV6_VAR", "var"),
                        help="where the demo keeps its database, logs and files")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--h265-channels", default=DEMO_H265_CHANNELS, metavar="N[,N...]",
                        help=f"cameras of the {DEMO_CHANNELS} that send H.265 (default none: all"
                             " H.264, which every browser plays)")
    parser.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: until Ctrl-C)")
    parser.add_argument("--listen", type=_address, default=LOOPBACK, metavar="ADDRESS",
                        help="address of the devices' and users' ports (default 127.0.0.1: this"
                             " machine only; 0.0.0.0: every interface, with a random password"
                             " for the demo user); the others stay on 127.0.0.1")
    parser.add_argument("--port-offset", type=_offset, default=0,
                        help="add N to every port (15432, 6608, 6609, 8080, 7611, 7613, 9608,"
                             " 9611, 7612, 8081, 9612), to run beside services on the default"
                             " ports")


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
