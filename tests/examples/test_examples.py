"""The integrators' examples (examples/python, examples/node) run against a running
``cmsv6 demo`` as a new integrator runs them, and say what they should: so they never rot.
Each runs as a subprocess, bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cmsv6.demo import APP_ROLE, FIRST_PHONE, ports, role_dsn
from tests.test_demo import demo_directory, free_offset, running_demo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PHONE = str(FIRST_PHONE)
#: Bound of one example's run.
RUN = 60.0
NODE = shutil.which("node")


def node_command() -> list[str]:
    """node, with the flag that gives Node 20 its built-in WebSocket (Node 22+ has it)."""
    assert NODE is not None
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    major = int(version.lstrip("v").split(".")[0])
    if major < 20:
        pytest.skip(f"the Node examples need Node 20.10 or later, not {version.strip()}")
    return [NODE, "--experimental-websocket"] if major < 22 else [NODE]


class Demo:
    def __init__(self, url: str, dsn: str) -> None:
        self.url, self.dsn = url, dsn

    def get(self, path: str) -> Any:
        login = urllib.request.Request(self.url + "/api/v1/login", method="POST",
                                       data=b'{"username": "demo", "password": "demo-password"}')  # fmt: skip
        with urllib.request.urlopen(login, timeout=10) as r:
            token = json.load(r)["token"]
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)

    def add_alarm(self, kind: str) -> int:
        """A new alarm of the first demo device, as a gateway writes one."""
        conn = psycopg2.connect(self.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO alarms (device_id, kind, started, latitude, longitude)"
                            " SELECT id, %s, %s, 22.5, 114.0 FROM devices WHERE phone = %s"
                            " RETURNING id", (kind, datetime.now(timezone.utc), PHONE))  # fmt: skip
                return int(cur.fetchone()[0])
        finally:
            conn.close()


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """``cmsv6 demo`` (3 devices) on free ports, once its first device is online and has
    reported positions."""
    with demo_directory() as home:
        offset = free_offset()
        with running_demo(home, offset, "--devices", "3"):
            p = ports(offset)
            demo = Demo(f"http://127.0.0.1:{p['web']}", role_dsn(home / "var", p, APP_ROLE))
            deadline = time.monotonic() + 90
            while True:
                first = demo.get(f"/api/v1/devices/{PHONE}")
                if first["online"] and demo.get(f"/api/v1/devices/{PHONE}/positions")["positions"]:
                    break
                assert time.monotonic() < deadline, f"device {PHONE} not online with positions: {first}"
                time.sleep(0.5)
            yield demo


def run(language: str, name: str, *args: str, demo: Demo, cwd: Path | None = None) -> str:
    """Run an example to its end (at most RUN seconds); its output."""
    if language == "python":
        command = [sys.executable, str(EXAMPLES / "python" / f"{name}.py"), *args]
    else:
        if NODE is None:
            pytest.skip("no node on this machine (the Node examples need Node 20.10 or later)")
        command = [*node_command(), str(EXAMPLES / "node" / f"{name}.mjs"), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN, cwd=cwd,
                            env={**os.environ, "CMSV6_URL": demo.url})  # fmt: skip
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


LANGUAGES = ["python", "node"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_login_and_devices(demo: Demo, language: str) -> None:
    """Logs in and lists the demo's 3 devices, the first online with its position."""
    out = run(language, "login_and_devices", demo=demo)
    assert "3 devices" in out
    assert any(line.startswith(f"{PHONE} ") and " online: " in line and " km/h" in line
               for line in out.splitlines()), out  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_follow_live(demo: Demo, language: str) -> None:
    """Authenticates over the WebSocket, subscribes and prints pushed positions."""
    out = run(language, "follow_live", "3", demo=demo)
    assert "authenticated as demo (admin)" in out and "subscribed to 3 devices" in out, out
    assert sum(line.startswith(("position ", "alarm ")) for line in out.splitlines()) >= 3, out


@pytest.mark.parametrize("language", LANGUAGES)
def test_track_geojson(demo: Demo, language: str, tmp_path: Path) -> None:
    """Writes a GeoJSON FeatureCollection of the day's track: longitude first (the demo
    drives around Shenzhen, 113-115 E, 22-23 N)."""
    out = run(language, "track_geojson", PHONE, "track.geojson", demo=demo, cwd=tmp_path)
    assert "written to track.geojson" in out, out
    track = json.loads((tmp_path / "track.geojson").read_text())
    assert track["type"] == "FeatureCollection"
    points = [f for f in track["features"] if f["geometry"]["type"] == "Point"]
    assert points and f"{PHONE}: {len(points)} positions" in out
    for p in points:
        lon, lat = p["geometry"]["coordinates"]
        assert 113 < lon < 115 and 22 < lat < 23, p


@pytest.mark.parametrize("language", LANGUAGES)
def test_text_message(demo: Demo, language: str) -> None:
    """Sends a text and prints the device's answer: a general response, ok."""
    out = run(language, "text_message", PHONE, f"hello from {language}", demo=demo)
    assert f"{PHONE} answered 0x0001, result 0 (ok)" in out, out


@pytest.mark.parametrize("language", LANGUAGES)
def test_live_video(demo: Demo, language: str) -> None:
    """Prints an ffplay command on the media server's HTTP-FLV URL with its token."""
    out = run(language, "live_video", PHONE, "1", demo=demo)
    (line,) = [x for x in out.splitlines() if x.startswith("ffplay ")]
    assert f"/live/{PHONE}/1.flv?" in line and "token=" in line, out


@pytest.mark.parametrize("language", LANGUAGES)
def test_handle_alarm(demo: Demo, language: str) -> None:
    """Lists the new alarms and acknowledges the oldest (one the test raised, or an older
    one): that alarm is then acknowledged by the demo user."""
    demo.add_alarm(f"bit:example_{language}")
    out = run(language, "handle_alarm", demo=demo)
    acknowledged = [x for x in out.splitlines() if " acknowledged by demo at " in x]
    assert acknowledged, out
    ident = int(acknowledged[0].split()[1])
    # Any vehicle's: the demo's DVRs raise alarms of their own, and the oldest may be one.
    alarm = demo.get("/api/v1/alarms?state=acknowledged")
    assert ident in {a["id"] for a in alarm["alarms"]}


@pytest.mark.parametrize("language", LANGUAGES)
def test_webhook_receiver(demo: Demo, language: str) -> None:
    """Registers itself, receives an alarm the test raises (delivered by the demo's active
    login server, signature checked by the example), then unregisters."""
    port = str(free_port())
    if language == "python":
        command = [sys.executable, str(EXAMPLES / "python" / "webhook_receiver.py"), port, "1",
                   "alarm.opened"]  # the demo's devices come and go: other events could come first
    else:
        if NODE is None:
            pytest.skip("no node on this machine")
        command = [*node_command(), str(EXAMPLES / "node" / "webhook_receiver.mjs"), port, "1",
                   "alarm.opened"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "CMSV6_URL": demo.url})  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "registered; listening" in first, first
        demo.add_alarm(f"bit:webhook_{language}")
        out, _ = proc.communicate(timeout=RUN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert f"alarm.opened bit:webhook_{language} on {PHONE} at " in out, out
    assert "removed" in out and demo.get("/api/v1/webhooks") == []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
