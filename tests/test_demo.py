"""``make demo`` (``cmsv6 demo``) brought up and down: a user can log in with the printed
credentials, sees the 20 simulated devices and watches a camera as the banner says; it
listens on 127.0.0.1 only, serves each server's metrics there, and its servers' database
role may not do more than rows; SIGTERM stops every process it started."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cmsv6.db.embedded import SUPERUSER, EmbeddedPostgres
from cmsv6.demo import FIRST_PHONE, PORTS, ports
from tests.plugins.media.support import play
from tests.support.process import listening

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))
#: How long the demo may take to come up (a cold initdb included) or to stop.
UP, DOWN = 120.0, 60.0


def free_offset() -> int:
    """A port offset at which every demo port is free (the defaults may be in use)."""
    for _ in range(200):
        offset = random.randrange(10_000, 65_535 - max(PORTS.values()))
        try:
            for port in ports(offset).values():
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return offset
    pytest.skip("no free set of ports for the demo")


def children(pid: int) -> dict[int, str]:
    """{pid: command line} of the processes whose parent is ``pid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmdline
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def http(url: str, body: Any = None, token: str | None = None) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")  # fmt: skip
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


class Output:
    """A process's stdout, read line by line in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def demo_directory() -> Iterator[Path]:
    """An empty directory for a demo, removed afterwards; outside pytest's base temporary
    directory, which a pytest starting meanwhile (another run) closes to all but its owner,
    while the demo's PostgreSQL runs as postgres when we are root."""
    directory = Path(tempfile.mkdtemp(prefix="cmsv6-demo-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    """The directory a test's demo runs in (``demo_directory``)."""
    with demo_directory() as directory:
        yield directory


@contextmanager
def running_demo(cwd: Path, offset: int, *args: str) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """``cmsv6 demo`` in ``cwd`` on ports moved by ``offset``, once its banner is out; then
    killed with whatever it started, its PostgreSQL included."""
    proc = subprocess.Popen(
        [CMSV6, "demo", "--port-offset", str(offset), *args], cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    out = Output(proc)
    try:
        deadline = time.monotonic() + UP
        while "Ctrl-C stops everything" not in out.text:  # the banner's last line
            assert proc.poll() is None, f"the demo exited:\n{out.text}"
            assert time.monotonic() < deadline, f"no banner in {UP} s:\n{out.text}"
            time.sleep(0.2)
        yield proc, out
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        pg = cwd / "var" / "pg"
        if (pg / "data" / "postmaster.pid").exists():
            EmbeddedPostgres(pg, port=ports(offset)["db"]).stop("immediate")


def exit_status(proc: subprocess.Popen[str], out: Output) -> int:
    """The demo's exit status, once it has exited by itself (within DOWN seconds)."""
    try:
        return proc.wait(timeout=DOWN)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the demo still runs after {DOWN} s:\n{out.text}") from None


def stream_bytes(url: str, limit: int = 400_000, seconds: float = 8.0) -> bytes:
    """What an HTTP-FLV URL sends, up to ``limit`` bytes or ``seconds``."""
    out = bytearray()
    deadline = time.monotonic() + seconds
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        while len(out) < limit and time.monotonic() < deadline:
            chunk = response.read1(65536)
            if not chunk:
                break
            out += chunk
    return bytes(out)


def banner_value(lines: list[str], label: str) -> str:
    (line,) = [x for x in lines if x.strip().startswith(label + " ")]
    return line.strip()[len(label):].strip()


def listening_addresses(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp* gives them) of the sockets listening on
    ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def check_database_role(dsn: str) -> None:
    """The banner's database role is no superuser and may not create roles or tables; the
    superuser cannot log in over TCP (it has no password)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
                        " WHERE rolname = current_user")  # fmt: skip
            assert cur.fetchone() == (False, False, False)
            for statement in ("CREATE ROLE intruder SUPERUSER", "CREATE TABLE intruder (x int)"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()
    superuser = " ".join(f"user={SUPERUSER}" if f.startswith("user=") else f
                         for f in dsn.split() if not f.startswith("passfile="))  # fmt: skip
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(superuser + " connect_timeout=5").close()


def test_demo_up_and_down(home: Path) -> None:
    """``cmsv6 demo`` run in an empty directory prints its banner, which opens with the web
    client's address (serving the client's page) and the user, says it listens on
    127.0.0.1 and names each server's metrics endpoint (served there), PostgreSQL's log and
    the admin commands' configuration; every port it opens
    listens on 127.0.0.1 only; its database role is not a superuser and cannot create
    roles; the printed user logs in through the Open API and sees the 20 demo devices, some
    online; the banner's live video request gives an HTTP-FLV URL on the media server whose
    bytes decode to pictures from a keyframe on, with AAC audio; SIGTERM stops it with
    status 0, and the servers, the simulator and PostgreSQL are all gone."""
    offset = free_offset()
    p = ports(offset)
    proc = subprocess.Popen(
        [CMSV6, "demo", "--port-offset", str(offset)], cwd=home, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    out = Output(proc)
    pg = home / "var" / "pg"
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + UP
        while "cmsv6 demo is running" not in out.text:
            assert proc.poll() is None, f"the demo exited:\n{out.text}"
            assert time.monotonic() < deadline, f"no banner in {UP} s:\n{out.text}"
            time.sleep(0.2)
        time.sleep(0.2)  # the rest of the banner (printed in one write)
        web = banner_value(out.lines, "Open API").removesuffix("/api/openapi.json")
        assert web == f"http://127.0.0.1:{p['web']}"
        # First what a new user needs: the web client's address and whom to sign in as.
        start = out.lines.index(next(x for x in out.lines if "cmsv6 demo is running" in x))
        firsts = [x.split()[:2] for x in out.lines[start + 1:] if x.strip()][:2]
        assert firsts == [["web", "client"], ["user", "demo"]], out.text
        assert banner_value(out.lines, "web client").split()[0] == f"{web}/"
        with urllib.request.urlopen(f"{web}/", timeout=5) as response:
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert b'id="signin"' in response.read()
        assert banner_value(out.lines, "listening").startswith("127.0.0.1 only")
        for server, family in (("login", "cmsv6_login_active"), ("gateway", "cmsv6_gateway_info"),
                               ("media", "cmsv6_media_info")):  # fmt: skip
            url = banner_value(out.lines, f"{server} metrics")
            assert url == f"http://127.0.0.1:{p[server + '_metrics']}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                assert family in response.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{web}/metrics", timeout=5)
        pg_log = Path(banner_value(out.lines, "PostgreSQL log"))
        assert pg_log == pg / "postgresql.log"
        assert "ready to accept connections" in pg_log.read_text(errors="replace")
        config = "var/demo.toml"  # relative: the demo's own directory is where it was started
        assert banner_value(out.lines, "admin commands") == f"{CMSV6} device list --config {config}"
        assert "[database]" in (home / config).read_text()
        for name, port in p.items():
            assert listening_addresses(port) == {"0100007F"}, name  # 127.0.0.1, nothing else
        check_database_role(banner_value(out.lines, "database").split('"')[1])
        user, password = banner_value(out.lines, "user").split(" / ")
        token = http(f"{web}/api/v1/login", {"username": user, "password": password})["token"]
        devices: list[dict[str, Any]] = []
        while not any(d["online"] for d in devices):
            assert time.monotonic() < deadline, f"no device online in {UP} s: {devices}"
            devices = http(f"{web}/api/v1/devices", token=token)
            time.sleep(0.5)
        assert len(devices) == 20 and {d["fleet"] for d in devices} == {"demo buses"}
        assert all(d["gateway"] == "gw-1" for d in devices if d["online"])
        phone = str(FIRST_PHONE)
        live = banner_value(out.lines, "live video")
        assert f"{web}/api/v1/devices/{phone}/live" in live and "ffplay" in out.text
        while not next(d for d in devices if d["phone"] == phone)["online"]:
            assert time.monotonic() < deadline, f"{phone} never online: {devices}"
            time.sleep(0.5)
            devices = http(f"{web}/api/v1/devices", token=token)
        urls = http(f"{web}/api/v1/devices/{phone}/live", {"channel": 1}, token=token)
        assert urls["http_flv"].startswith(f"http://127.0.0.1:{p['media_web']}/live/{phone}/1.flv?")
        played = play(stream_bytes(urls["http_flv"]))
        assert len(played.video_pts) > 10 and played.keyframes[0] == played.video_pts[0]
        assert played.audio_codec == "aac" and played.audio

        started = children(proc.pid)
        postmaster = int((pg / "data" / "postmaster.pid").read_text().split()[0])
        started[postmaster] = "postgres"
        assert sum("twistd" in c for c in started.values()) == 3, started
        assert sum(" sim " in c for c in started.values()) == 1, started
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DOWN) == 0, out.text
        deadline = time.monotonic() + 10  # an orphan's exit may take a moment to show
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [c for pid, c in started.items() if alive(pid)]
        assert not [name for name, port in p.items() if listening(port)]
        assert out.text.rstrip().endswith("cmsv6 demo: stopped")
    finally:
        try:  # the demo and whatever it started in its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if (pg / "data" / "postmaster.pid").exists():
            EmbeddedPostgres(pg, port=p["db"]).stop("immediate")
