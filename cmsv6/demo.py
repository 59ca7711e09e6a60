"""``cmsv6 demo``: the whole system on one machine, with data kept under ``./var/``.

A private PostgreSQL (as the ``postgres`` user when run as root), the schema, a demo fleet,
user and 20 devices, then ``twistd login``, ``twistd gateway`` and ``cmsv6 sim`` with 20
simulated DVRs that arrive through the login server (which assigns them to the gateway).
It prints where to look; Ctrl-C stops everything; a second run reuses the data.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from cmsv6.db.devices import add_device
from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import upgrade
from cmsv6.db.users import add_user

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_FLEET = "demo buses"
FIRST_PHONE = 13900000000
PORTS = {"db": 15432, "login_jt808": 6608, "login_cluster": 6609, "web": 8080,
         "gateway_jt808": 7611, "gateway_cluster": 7613}


def ports(offset: int = 0) -> dict[str, int]:
    """The demo's ports, each moved by ``offset`` (``--port-offset``)."""
    return {name: port + offset for name, port in PORTS.items()}


def config_text(var: Path, p: dict[str, int] = PORTS) -> str:
    return f"""# Written by cmsv6 demo: the demo's configuration.
[database]
dsn = "host=127.0.0.1 port={p['db']} dbname=cmsv6 user=cmsv6"

[login]
jt808 = "tcp:{p['login_jt808']}"
cluster = "tcp:{p['login_cluster']}:interface=127.0.0.1"
web = "tcp:{p['web']}"
public_jt808 = "127.0.0.1:{p['login_jt808']}"
registration = "known"

[gateway]
id = "gw-1"
jt808 = "tcp:{p['gateway_jt808']}:backlog=1024"
public_jt808 = "127.0.0.1:{p['gateway_jt808']}"
cluster = "tcp:{p['gateway_cluster']}:interface=127.0.0.1"
registration = "known"
login = ["tcp:127.0.0.1:{p['login_cluster']}"]
media_dir = "{var / 'media'}"
"""


def _start(name: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out: IO[bytes] = open(log, "ab")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.demo_name = name  # type: ignore[attr-defined]
    proc.demo_log = log  # type: ignore[attr-defined]
    return proc


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    import socket

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"cmsv6 demo: {what} exited; see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
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
    config.write_text(config_text(var, p))
    cluster = EmbeddedPostgres(var / "pg", port=p["db"])
    first_run = not cluster.initialized
    print(f"cmsv6 demo: {'setting up' if first_run else 'reusing'} {var}", flush=True)
    cluster.init()
    cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dsn = cluster.create_database("cmsv6")
        upgrade(dsn)
        add_user(dsn, DEMO_USER, DEMO_PASSWORD, admin=True, fleets=[DEMO_FLEET])
        for i in range(args.devices):
            add_device(dsn, str(FIRST_PHONE + i), plate=f"粤B{i:05d}", fleet=DEMO_FLEET)
        twistd = str(bindir / "twistd")
        for name, port in (("login", p["login_jt808"]), ("gateway", p["gateway_jt808"])):
            log = logs / f"{name}.log"
            proc = _start(name, [twistd, "-n", "--pidfile=", name, "--config", str(config)], log)
            procs.append(proc)
            _wait_port(port, proc, name, log)
        sim_log = logs / "sim.log"
        procs.append(_start("sim", [
            str(bindir / "cmsv6"), "sim", "--server", f"tcp:127.0.0.1:{p['login_jt808']}",
            "--devices", str(args.devices), "--first-phone", f"0{FIRST_PHONE}",
            "--interval", "5", "--version", "mixed", "--state", str(var / "sim-state.json"),
            "--alarm-probability", "0.01", "--gap-probability", "0.002",
        ], sim_log))  # fmt: skip
        web = f"http://127.0.0.1:{p['web']}"
        print(f"""
cmsv6 demo is running ({args.devices} simulated DVRs arrive through the login server).

  Open API     {web}/api/openapi.json
  log in       curl -s -X POST {web}/api/v1/login -d '{{"username": "{DEMO_USER}", "password": "{DEMO_PASSWORD}"}}'
  devices      curl -s -H "Authorization: Bearer TOKEN" {web}/api/v1/devices
  database     psql "host=127.0.0.1 port={p['db']} dbname=cmsv6 user=cmsv6"
  logs         {logs}/login.log, gateway.log, sim.log
  user         {DEMO_USER} / {DEMO_PASSWORD}

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
    parser.add_argument("--port-offset", type=_offset, default=0,
                        help="add N to every port (15432, 6608, 6609, 8080, 7611, 7613), to run"
                             " beside services on the default ports")


def _offset(text: str) -> int:
    n = int(text)
    if not 0 <= n <= 65535 - max(PORTS.values()):
        raise argparse.ArgumentTypeError(f"the offset must be between 0 and {65535 - max(PORTS.values())}")
    return n
