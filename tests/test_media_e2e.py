"""Issue 12's media end to end, every piece a real process on loopback: ``twistd login``,
``twistd gateway`` and ``twistd media`` on PostgreSQL, and ``cmsv6 sim`` DVRs arriving
through login. Through the Open API a user lists a DVR's recordings (a long list, sent
sub-packaged with a packet lost on the way), plays one back over HTTP-FLV and seeks,
pauses and fast-forwards it (FFmpeg decodes what came: times always increasing, a
keyframe after every control); talks to a driver (a tone sent as PCM arrives at the
simulated DVR in its G.726 and is heard there as that tone); and watches an H.265 camera
as HEVC and, transcoded, as H.264."""

from __future__ import annotations

import io
import json
import math
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, task

from cmsv6.db.devices import add_device
from cmsv6.db.users import add_user
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.jt1078 import QueryResources
from cmsv6.sim import recordings as sim_recordings
from tests.plugins.media.loopback import http_viewer, ws_viewer
from tests.support.database import query
from tests.support.device import until, within
from tests.support.process import GatewayProcess, LoginProcess, MediaProcess, free_port
from tests.test_live_e2e import CMSV6, api, decoded, metrics, target, text

SIM_FIRST = "013800000001"
PHONE = "13800000001"
USER, PASSWORD = "dispatcher", "dispatcher-password"


class Cluster:
    """login, a gateway, a media server and a simulated DVR with two cameras."""

    def __init__(self, dsn: str, tmp_path: Path, *sim_args: str) -> None:
        for name in ("login", "gw", "media"):
            (tmp_path / name).mkdir()
        add_user(dsn, USER, PASSWORD, admin=True)
        add_device(dsn, PHONE, fleet="buses", channels=2)
        self.dsn = dsn
        self.tmp_path = tmp_path
        self.login = LoginProcess(dsn, tmp_path / "login")
        port, self.gateway_metrics = free_port(), free_port()
        self.gateway = GatewayProcess(dsn, port, tmp_path / "gw", "--id", "gw-1", "--public_jt808",
                                      f"127.0.0.1:{port}", "--login", self.login.client_cluster,
                                      "--metrics", f"tcp:{self.gateway_metrics}:interface=127.0.0.1")  # fmt: skip
        self.media = MediaProcess(tmp_path / "media", [self.login.client_cluster], "media-1",
                                  "--linger", "1")  # fmt: skip
        self.sim_args = sim_args
        self.sim_log = tmp_path / "sim.log"
        self.sim: subprocess.Popen[bytes] | None = None
        self.token = ""

    @defer.inlineCallbacks
    def start(self) -> Any:
        from twisted.internet import reactor

        self.login.start()
        self.gateway.start()
        yield until(lambda: "gateway gw-1 is live" in text(self.login.log), "the gateway announced")
        self.media.start()
        yield until(lambda: "media server media-1 is live" in text(self.login.log), "media announced")
        with open(self.sim_log, "ab") as out:
            self.sim = subprocess.Popen(
                [CMSV6, "sim", "-v", "--server", f"tcp:127.0.0.1:{self.login.jt808}",
                 "--devices", "1", "--first-phone", SIM_FIRST, "--channels", "2",
                 "--interval", "5", "--state", str(self.tmp_path / "sim-state.json"),
                 *self.sim_args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        _, body = yield api(self.login.web, "POST", "/api/v1/login",
                            {"username": USER, "password": PASSWORD})  # fmt: skip
        self.token = body["token"]
        for _ in range(600):
            status, device = yield api(self.login.web, "GET", f"/api/v1/devices/{PHONE}",
                                       token=self.token)  # fmt: skip
            if status == 200 and device["online"]:
                return
            yield task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{PHONE} never online:\n{text(self.sim_log)[-2000:]}")

    def call(self, method: str, path: str, body: Any = None) -> defer.Deferred[Any]:
        return api(self.login.web, method, path, body, self.token)

    def stop(self) -> None:
        if self.sim is not None and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGINT)
            try:
                self.sim.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        self.media.stop()
        self.gateway.stop()
        self.login.stop()

    def commands(self, msg_id: int) -> list[str]:
        """The status of each ``msg_id`` sent to the DVR, oldest first."""
        rows = query(self.dsn, "SELECT c.status FROM commands c JOIN devices d ON d.id = c.device_id"
                               " WHERE d.phone = %s AND c.msg_id = %s ORDER BY c.id", (PHONE, msg_id))  # fmt: skip
        return [status for (status,) in rows]


@contextmanager
def cleanup(cluster: Cluster, viewers: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for viewer in viewers:
            transport = getattr(viewer, "transport", None)
            if transport is not None and transport.connected:
                transport.abortConnection()
        cluster.stop()


def pictures(data: bytes) -> int:
    played = decoded(data)
    return 0 if played is None else len(played.video_pts)


@pytest.mark.deadline(180)
@pytest_twisted.inlineCallbacks
def test_recordings_listed_and_one_played_back_with_controls(dsn: str, tmp_path: Path) -> None:
    """A two-day list of recordings arrives whole though the DVR lost a packet of it on
    the way (the gateway asked again, 0x8003): exactly what the DVR has. One is played
    back over HTTP-FLV; seek, pause, resume and fast-forward through the Open API each
    reach the DVR (0x9202, answered), and FFmpeg decodes the whole playback with times
    that only increase and a keyframe after every control."""
    from twisted.internet import reactor

    cluster = Cluster(dsn, tmp_path, "--lose-packet", "2")
    viewers: list[Any] = []
    with cleanup(cluster, viewers):
        yield cluster.start()
        today = datetime.now(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
        start, end = today - timedelta(days=2), today  # whole days: every file has ended
        status, listed = yield cluster.call(
            "GET", f"/api/v1/devices/{PHONE}/recordings?from={start.isoformat().replace('+', '%2B')}"
                   f"&to={end.isoformat().replace('+', '%2B')}&timeout=10")  # fmt: skip
        assert status == 200, listed
        expected = sim_recordings.query(
            SIM_FIRST, 2, 3, QueryResources(0, start, end, 0, 3, 0, 0), time.time())
        assert len(expected) > 2 * 1000 // 28, "the list must need several packets"
        got = [(r["channel"], r["start"], r["end"], r["stream"], r["storage"], r["size"])
               for r in listed["recordings"]]  # fmt: skip
        want = [(r.channel, r.start.isoformat(), r.end.isoformat(),
                 {1: "main", 2: "sub"}[r.stream_type], {1: "main", 2: "backup"}[r.storage_type], r.file_size)
                for r in expected]  # fmt: skip
        assert got == want
        assert all(r["start"].endswith("+08:00") for r in listed["recordings"])
        scraped = yield metrics(cluster.gateway_metrics)
        asked = [line for line in scraped.splitlines()
                 if line.startswith('cmsv6_gateway_events_total{event="packets_requested"}')]  # fmt: skip
        assert asked and float(asked[0].split()[-1]) >= 1, "the lost packet was never asked for"

        first = next(r for r in listed["recordings"] if r["channel"] == 1 and r["stream"] == "main")
        status, urls = yield cluster.call("POST", f"/api/v1/devices/{PHONE}/playback",
                                          {"channel": 1, "from": first["start"], "to": first["end"]})  # fmt: skip
        assert status == 200, urls
        assert urls["control"] == f"/api/v1/playback/{urls['playback']}/control"
        viewer = yield http_viewer(reactor, cluster.media.web, target(urls["http_flv"]))
        viewers.append(viewer)
        yield until(lambda: pictures(viewer.body) >= 40, "the first pictures of the playback",
                    timeout=40, every=0.5)  # fmt: skip
        assert viewer.status == 200
        begin = datetime.fromisoformat(first["start"])
        controls = [
            {"action": "seek", "time": (begin + timedelta(minutes=5)).isoformat()},
            {"action": "pause"},
            {"action": "resume"},
            {"action": "fast_forward", "speed": 4},
            {"action": "seek", "time": (begin + timedelta(minutes=1)).isoformat()},
        ]
        marks: list[int] = []
        for control in controls:
            status, answer = yield cluster.call("POST", urls["control"], control)
            assert status == 200 and answer == {"ok": True}, (control, answer)
            marks.append(len(viewer.body))
            if control["action"] != "pause":
                seen = pictures(viewer.body)
                yield until(lambda seen=seen: pictures(viewer.body) >= seen + 10,
                            f"pictures after {control['action']}", timeout=40, every=0.5)  # fmt: skip
        assert cluster.commands(0x9201) == ["replied"]
        yield until(lambda: cluster.commands(0x9202) == ["replied"] * len(controls),
                    "every control answered by the DVR", in_thread=True)  # fmt: skip

        data = viewer.body
        container = av.open(io.BytesIO(data), format="flv")
        assert container.streams.video[0].codec_context.name == "h264"
        packets = [(p.pos, p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size]
        container.close()
        times = [pts for _, pts, _ in packets]
        assert all(a < b for a, b in zip(times, times[1:])), "playback times went back"
        played = decoded(data)
        assert played is not None and played.errors == 0 and played.corrupt == 0
        for mark, control in zip(marks, controls):
            # The answer came once the media server had begun waiting for a keyframe:
            # whatever picture is muxed after it, its GOP starts with a keyframe.
            after = [key for pos, _, key in packets if pos >= mark]
            assert after and True in after, f"no keyframe after {control}"
            assert after.index(True) <= 2 * 25, f"a GOP and more without a keyframe after {control}"
        viewer.transport.loseConnection()
        yield within(viewer.lost, "the playback viewer gone")
        yield until(lambda: cluster.commands(0x9202)[-1:] == ["replied"]
                    and len(cluster.commands(0x9202)) == len(controls) + 1,
                    "the DVR told to stop the playback", in_thread=True)  # fmt: skip
        assert "Traceback" not in text(cluster.media.log)


TONE = 1000
RATE = 8000


def tone_pcm(seconds: float) -> bytes:
    n = int(seconds * RATE)
    return struct.pack(f"<{n}h", *(int(12000 * math.sin(2 * math.pi * TONE * i / RATE)) for i in range(n)))


class Talker(WebSocketClientProtocol):
    def onOpen(self) -> None:  # noqa: N802
        self.texts: list[Any] = []
        self.flv = bytearray()
        self.factory.talker = self
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        if isBinary:
            self.flv += payload
        else:
            self.texts.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))


@pytest.mark.deadline(180)
@pytest_twisted.inlineCallbacks
def test_talk_back_and_an_h265_camera(dsn: str, tmp_path: Path) -> None:
    """A dispatcher talks to a DVR that speaks G.726: 2 s of a 1 kHz tone sent as PCM over
    the talk-back WebSocket is heard by the simulated DVR as 1 kHz; the DVR's own sound
    comes back as AAC in FLV; hanging up sends 0x9102 (close talk). Its H.265 camera plays
    as HEVC (enhanced FLV) and, asked for H.264, as H.264."""
    from twisted.internet import reactor

    cluster = Cluster(dsn, tmp_path, "--audio-codec", "g726", "--h265-channels", "2")
    viewers: list[Any] = []
    with cleanup(cluster, viewers):
        yield cluster.start()
        status, grant = yield cluster.call("POST", f"/api/v1/devices/{PHONE}/talk", {"channel": 1})
        assert status == 200, grant
        assert grant["format"]["rate"] == RATE
        factory = WebSocketClientFactory(grant["ws"], reactor=reactor)
        factory.protocol = Talker
        factory.opened, factory.closed = defer.Deferred(), defer.Deferred()
        yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", cluster.media.web).connect(factory)
        talker = yield within(factory.opened, "the talk-back socket open")
        viewers.append(talker)
        yield until(lambda: any(t.get("type") == "ready" for t in talker.texts),
                    "the DVR ready to talk", timeout=30)  # fmt: skip
        ready = next(t for t in talker.texts if t.get("type") == "ready")
        assert ready["codec"] == "g726", ready
        pcm = tone_pcm(2.0)
        chunk = RATE * 2 * 40 // 1000  # 40 ms
        for at in range(0, len(pcm), chunk):
            talker.sendMessage(pcm[at : at + chunk], isBinary=True)
            yield task.deferLater(reactor, 0.04, lambda: None)  # a microphone's pace
        yield until(lambda: len(talker.flv) > 2000, "the DVR's voice back", timeout=20)
        talker.sendClose(1000)
        yield within(factory.closed, "the talk-back socket closed")
        yield until(lambda: "talk-back heard" in text(cluster.sim_log), "the DVR's report", timeout=30)
        heard = next(line for line in text(cluster.sim_log).splitlines() if "talk-back heard" in line)
        assert "g726" in heard and f" {TONE} Hz" in heard, heard
        seconds = float(heard.split(" frames, ")[1].split(" s,")[0])
        assert seconds >= 1.5, heard
        yield until(lambda: "replied" in cluster.commands(0x9102), "0x9102 (close talk) answered",
                    in_thread=True)  # fmt: skip
        container = av.open(io.BytesIO(bytes(talker.flv)), format="flv")
        assert container.streams.audio[0].codec_context.name == "aac"
        container.close()

        for codec, name in ((None, "hevc"), ("h264", "h264")):
            status, urls = yield cluster.call("POST", f"/api/v1/devices/{PHONE}/live", {"channel": 2})
            assert status == 200, urls
            path = target(urls["http_flv"]) + (f"&codec={codec}" if codec else "")
            viewer = yield http_viewer(reactor, cluster.media.web, path)
            viewers.append(viewer)
            yield until(lambda: pictures(viewer.body) >= 30, f"{name} pictures", timeout=60, every=0.5)
            container = av.open(io.BytesIO(viewer.body), format="flv")
            assert container.streams.video[0].codec_context.name == name
            container.close()
            played = decoded(viewer.body)
            assert played is not None and played.errors == 0 and played.corrupt == 0
            assert played.keyframes and played.keyframes[0] == played.video_pts[0]
            viewer.transport.loseConnection()
            yield within(viewer.lost, "the viewer gone")
        assert "Traceback" not in text(cluster.media.log)
