"""Live video end to end, every piece a real process on loopback: ``twistd login``,
``twistd gateway`` and ``twistd media`` on PostgreSQL, and ``cmsv6 sim`` DVRs that arrive
through login. A user asks the Open API where to watch a camera and watches it over
HTTP-FLV and WS-FLV at once; FFmpeg (PyAV) decodes what both got; URLs without the right
token are refused; when both viewers leave, the device is told to stop (0x9102)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import pytest
import pytest_twisted
from twisted.internet import defer, task, threads

from cmsv6.db.devices import add_device
from cmsv6.db.users import add_user
from tests.media.tones import TONE, dominant
from tests.plugins.media.loopback import http_viewer, ws_viewer
from tests.plugins.media.support import Played, play
from tests.support.database import query
from tests.support.device import until, within
from tests.support.process import GatewayProcess, LoginProcess, MediaProcess, free_port

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))
#: The simulator's two DVRs, as it numbers them (12 digits: a 2013 header) and canonical.
SIM_FIRST = "013800000001"
WATCHED, OTHER = "13800000001", "13800000002"
USER, PASSWORD = "viewer", "viewer-password"
#: Pictures each viewer must get (the clip is 25 fps: a few seconds of real time).
PICTURES = 50


def text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def api(port: int, method: str, path: str, body: Any = None, token: str = "") -> defer.Deferred[Any]:
    """(status, JSON) of an Open API request, in a thread."""

    def call() -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"authorization": f"Bearer {token}"} if token else {},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    return threads.deferToThread(call)


def metrics(port: int) -> defer.Deferred[str]:
    def call() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()

    return threads.deferToThread(call)


def target(url: str) -> str:
    """The path and query of ``url``, as a viewer sends them."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def decoded(data: bytes) -> Played | None:
    """What FFmpeg makes of ``data`` so far (None while it is too short to open)."""
    try:
        return play(data)
    except Exception:  # noqa: BLE001 - not enough bytes for FFmpeg yet
        return None


def enough(data: bytes) -> bool:
    """``PICTURES`` pictures and a second of audio or more."""
    played = decoded(data)
    return played is not None and len(played.video_pts) >= PICTURES and len(played.audio) >= 8000


def stops(dsn: str, phone: str) -> list[str]:
    """The status of each 0x9102 sent to ``phone`` (login records the media server's
    commands as it does the Open API's)."""
    rows = query(dsn, "SELECT c.status FROM commands c JOIN devices d ON d.id = c.device_id"
                      " WHERE d.phone = %s AND c.msg_id = %s ORDER BY c.id", (phone, 0x9102))  # fmt: skip
    return [status for (status,) in rows]


def check_played(data: bytes, who: str) -> None:
    """Pictures decode from a keyframe on, their times increase, and the AAC audio is the
    simulator's 1 kHz tone."""
    played = play(data)
    assert played.video_pts and played.keyframes, who
    assert played.keyframes[0] == played.video_pts[0], f"{who}: not a keyframe first"
    assert all(a < b for a, b in zip(played.video_pts, played.video_pts[1:])), who
    assert played.corrupt == 0 and played.errors == 0, who
    assert played.audio_codec == "aac", who
    container = av.open(io.BytesIO(data), format="flv")
    rate = container.streams.audio[0].codec_context.sample_rate
    container.close()
    middle = len(played.audio) // 2
    assert dominant(list(played.audio[middle : middle + 1024]), rate) == TONE, who


@pytest.mark.deadline(150)
@pytest_twisted.inlineCallbacks
def test_a_user_watches_a_simulated_camera(dsn: str, tmp_path: Path) -> None:
    """Through the Open API's URLs a user watches one camera over HTTP-FLV and WS-FLV at
    once: both decode (keyframe first, times increasing, the AAC 1 kHz tone); a URL
    without a token is refused (HTTP 403) and another device's token too (WS 4003); once
    both viewers have left, the device gets 0x9102 and media's /metrics counts no stream."""
    from twisted.internet import reactor

    for name in ("login", "gw", "media"):
        (tmp_path / name).mkdir()
    add_user(dsn, USER, PASSWORD, admin=True)
    for phone in (WATCHED, OTHER):
        add_device(dsn, phone, fleet="buses", channels=2)
    login = LoginProcess(dsn, tmp_path / "login")
    port = free_port()
    gateway = GatewayProcess(dsn, port, tmp_path / "gw", "--id", "gw-1", "--public_jt808",
                             f"127.0.0.1:{port}", "--login", login.client_cluster)  # fmt: skip
    media = MediaProcess(tmp_path / "media", [login.client_cluster], "media-1", "--linger", "1")
    sim_log = tmp_path / "sim.log"
    sim: subprocess.Popen[bytes] | None = None
    viewers: list[Any] = []
    try:
        login.start()
        gateway.start()
        yield until(lambda: "gateway gw-1 is live" in text(login.log), "the gateway announced")
        media.start()
        yield until(lambda: "media server media-1 is live" in text(login.log), "media announced")
        with open(sim_log, "ab") as out:
            sim = subprocess.Popen(
                [CMSV6, "sim", "-v", "--server", f"tcp:127.0.0.1:{login.jt808}",
                 "--devices", "2", "--first-phone", SIM_FIRST, "--channels", "2",
                 "--interval", "5", "--state", str(tmp_path / "sim-state.json")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        _, body = yield api(login.web, "POST", "/api/v1/login",
                            {"username": USER, "password": PASSWORD})  # fmt: skip
        token = body["token"]
        for phone in (WATCHED, OTHER):
            for _ in range(600):
                status, device = yield api(login.web, "GET", f"/api/v1/devices/{phone}", token=token)
                if status == 200 and device["online"]:
                    break
                yield task.deferLater(reactor, 0.1, lambda: None)
            else:
                raise AssertionError(f"{phone} never online:\n{text(sim_log)[-2000:]}")
        status, urls = yield api(login.web, "POST", f"/api/v1/devices/{WATCHED}/live",
                                 {"channel": 1}, token)  # fmt: skip
        assert status == 200, urls
        _, other = yield api(login.web, "POST", f"/api/v1/devices/{OTHER}/live", {"channel": 1}, token)
        watched_path = target(urls["http_flv"])
        assert urls["ws_flv"] == f"ws://127.0.0.1:{media.web}{watched_path}"
        assert urls["http_flv"] == f"http://127.0.0.1:{media.web}{watched_path}"

        # Refused: no token at all; the other device's token on this device's URL.
        bare = yield http_viewer(reactor, media.web, watched_path.split("&token=")[0])
        yield within(bare.lost, "the tokenless viewer refused")
        assert bare.status == 403, bytes(bare.raw[:200])
        other_token = target(other["http_flv"]).split("&token=")[1]
        factory, _ = ws_viewer(reactor, media.web, watched_path.split("&token=")[0]
                               + f"&token={other_token}")  # fmt: skip
        code, reason = yield within(factory.closed, "the WS viewer with another device's token")
        assert code == 4003, (code, reason)

        # Two viewers at once, over both transports.
        http = yield http_viewer(reactor, media.web, watched_path)
        viewers.append(http)
        ws, _ = ws_viewer(reactor, media.web, target(urls["ws_flv"]))
        yield until(lambda: http.status is not None, "the HTTP-FLV response")
        assert http.status == 200, bytes(http.raw[:300])
        yield until(lambda: enough(http.body) and enough(getattr(getattr(ws, "viewer", None), "flv", b"")),
                    "both viewers' pictures and sound", timeout=40, every=0.5)  # fmt: skip
        viewers.append(ws.viewer)
        check_played(http.body, "HTTP-FLV")
        check_played(ws.viewer.flv, "WS-FLV")

        assert stops(dsn, WATCHED) == []  # not while anyone watches
        # Both leave: after the linger the device is told to stop.
        http.transport.loseConnection()
        ws.viewer.sendClose(1000)
        yield within(http.lost, "the HTTP-FLV viewer gone")
        yield within(ws.closed, "the WS-FLV viewer gone")
        yield until(lambda: stops(dsn, WATCHED) == ["replied"], "0x9102 answered by the device",
                    in_thread=True)  # fmt: skip
        for _ in range(100):
            scraped = yield metrics(media.metrics)
            if "cmsv6_media_streams 0.0" in scraped.splitlines():
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        else:
            raise AssertionError(f"media still counts a stream:\n{scraped}")
        assert "Traceback" not in text(media.log)
    finally:
        for viewer in viewers:
            if viewer.transport is not None and viewer.transport.connected:
                viewer.transport.abortConnection()
        if sim is not None and sim.poll() is None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        media.stop()
        gateway.stop()
        login.stop()

