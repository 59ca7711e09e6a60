"""The media server's link to login end to end: real ``twistd login`` (one, or an active
and a standby) and ``twistd gateway`` processes on loopback, a scripted device on the
gateway, and the media server's ``login_service`` in this process: OpenStream reaches the
device as 0x9101 and comes back with its answer, in words when it is no."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, threads

from cmsv6.db.devices import add_device
from cmsv6.db.users import add_user
from cmsv6.plugins.media.cluster import LoginOpener, MediaLoginClient, login_service
from cmsv6.plugins.media.opener import Opened, OpenFailed
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import AvTransmissionControl, RealtimeAvRequest
from cmsv6.rpc import keys
from tests.support.device import DeviceProtocol, connect, until, within
from tests.support.process import KEYS, GatewayProcess, LoginProcess, free_port, master_key

PHONE = "13800000001"
#: A device that exists but never connects.
ABSENT = "13800000002"
USER, PASSWORD = "ops", "ops-password"


def media_key_file(media_id: str) -> Path:
    """Media server ``media_id``'s key file under the tests' master key (a media server's
    key proves its role: a gateway's key of that id would not do)."""
    directory = KEYS / "media"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{media_id}.key"
    if not path.exists():
        master = keys.load(master_key())
        keys.write(path, keys.server_credential(master, media_id, keys.MEDIA))
    return path


def logged(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except FileNotFoundError:
        return False


class Load:
    """A media server's streams and viewers, as ``server.load()`` gives them."""

    def __init__(self, streams: int = 0, viewers: int = 0) -> None:
        self.now = {"streams": streams, "viewers": viewers}

    def load(self) -> dict[str, int]:
        return dict(self.now)


class LiveCluster:
    """Login (and a standby with ``standby``), a gateway reporting to them, device PHONE on
    the gateway, a user who sees it, and media servers started with ``media()``."""

    def __init__(self, dsn: str, directory: Path, standby: bool = False) -> None:
        self.dsn = dsn
        self.directory = directory
        self.logins = [LoginProcess(dsn, directory / "login-a", "login-a")]
        if standby:
            self.logins.append(LoginProcess(dsn, directory / "login-b", "login-b"))
        for login in self.logins:
            login.directory.mkdir(parents=True)
        port, cluster = free_port(), free_port()
        extra = ["--id", "gw-1", "--public_jt808", f"127.0.0.1:{port}",
                 "--cluster", f"tcp:{cluster}:interface=127.0.0.1"]  # fmt: skip
        for login in self.logins:
            extra += ["--login", login.client_cluster]
        (directory / "gw").mkdir()
        self.gateway = GatewayProcess(dsn, port, directory / "gw", *extra)
        self.device: DeviceProtocol | None = None
        self.services: list[Any] = []
        self.token = ""

    @property
    def login(self) -> LoginProcess:
        return self.logins[0]

    @defer.inlineCallbacks
    def start(self) -> Any:
        from twisted.internet import reactor

        add_user(self.dsn, USER, PASSWORD, admin=True)
        add_device(self.dsn, PHONE, fleet="north", channels=4)
        add_device(self.dsn, ABSENT, fleet="north", channels=4)
        self.login.start()
        for standby in self.logins[1:]:
            standby.start(wait=False)
            yield until(lambda: logged(standby.log, "standing by"), "the standby to stand by")
        self.gateway.start()
        yield until(lambda: logged(self.login.log, "gateway gw-1 is live"), "gw-1 announced")
        self.device = yield connect(reactor, self.gateway.port, PHONE)
        yield self.device.login()
        self.token = (yield self.api("POST", "/api/v1/login",
                                     {"username": USER, "password": PASSWORD}))[1]["token"]
        yield self.until_online()

    @defer.inlineCallbacks
    def until_online(self, web: int | None = None) -> Any:
        for _ in range(600):
            status, device = yield self.api("GET", f"/api/v1/devices/{PHONE}", web=web)
            if status == 200 and device["gateway"] == "gw-1":
                return
            yield sleep(0.05)
        raise AssertionError(f"login never saw {PHONE} online")

    def media(self, media_id: str, load: Load, logins: list[LoginProcess] | None = None) -> tuple[MediaLoginClient, LoginOpener]:
        """Media server ``media_id``'s link to login, started (its key: the tests' key for
        that id); its client service and its opener."""
        conf = SimpleNamespace(
            id=media_id, login=tuple(l.client_cluster for l in (logins or self.logins)),
            cluster_key=str(media_key_file(media_id)), public_web=f"http://{media_id}.example:8081",
            public_jt1078="127.0.0.1:7612", open_timeout=20.0,
        )  # fmt: skip
        from twisted.internet import reactor

        client, opener = login_service(conf, load, reactor)
        assert isinstance(client, MediaLoginClient) and isinstance(opener, LoginOpener)
        client.startService()
        self.services.append(client)
        return client, opener

    def api(self, method: str, path: str, body: Any = None, web: int | None = None) -> defer.Deferred[Any]:
        """(status, JSON) of a request to login's Open API (in a thread)."""
        port = web or self.login.web
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        data = json.dumps(body).encode() if body is not None else None

        def call() -> tuple[int, Any]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                             method=method, headers=headers)  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.load(response)
            except urllib.error.HTTPError as e:
                return e.code, json.load(e)
            except OSError as e:
                return 0, {"error": {"code": "unreachable", "message": str(e)}}

        return threads.deferToThread(call)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        for s in self.services:
            yield within(s.stopService(), "a media server's link to stop")
        if self.device is not None and self.device.transport is not None:
            self.device.transport.loseConnection()
        self.gateway.stop()
        for login in self.logins:
            login.stop()


def sleep(seconds: float) -> defer.Deferred[None]:
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def announced(client: MediaLoginClient, times: int = 1) -> Any:
    yield until(lambda: client.announcements >= times and client.link is not None,
                f"{client.server_id} announced {times} time(s)")


@defer.inlineCallbacks
def failed(d: defer.Deferred[Any], what: str) -> Any:
    """The exception ``d`` fails with (an AssertionError if it succeeds)."""
    outcome = yield within(d.addCallbacks(lambda r: ("succeeded", r), lambda f: (None, f)), what)
    assert outcome[0] is None, f"{what}: {outcome[1]!r}"
    return outcome[1].value


@defer.inlineCallbacks
def answer(device: DeviceProtocol, msg_id: int, result: int = 0) -> Any:
    """The next ``msg_id`` the device gets, answered with a general response ``result``."""
    m = yield device.next(msg_id)
    device.send(TerminalResponse(m.header.serial, msg_id, result))
    return m


@pytest_twisted.inlineCallbacks
def test_open_and_close_reach_the_device(dsn: str, tmp_path: Path) -> None:
    """A media server's open reaches the device as 0x9101 with the media server's address
    (TCP port, UDP port 0), channel and stream, and fires once the device accepts; close
    reaches it as 0x9102 closing audio and video; login records both as the media
    server's commands."""
    cluster = LiveCluster(dsn, tmp_path)
    try:
        yield cluster.start()
        client, opener = cluster.media("media-1", Load())
        yield announced(client)
        d = opener.open(PHONE, 2, "sub")
        request = yield answer(cluster.device, 0x9101)
        assert request.body == RealtimeAvRequest("127.0.0.1", 7612, 0, 2, 0, 1)
        assert (yield within(d, "the open to succeed")) == Opened(None, None)
        d = opener.close(PHONE, 2, "sub")
        control = yield answer(cluster.device, 0x9102)
        assert control.body == AvTransmissionControl(2, 0, 0, 1)
        assert (yield within(d, "the close to succeed")) is None
        from tests.support.database import query

        def rows() -> list[Any]:
            return query(dsn, "SELECT msg_id, body->>'by', status FROM commands ORDER BY id")

        # The gateway records an outcome once it has answered; 0x9003 went just before the
        # 0x9101 (the device here does not answer it).
        yield until(lambda: [r[2] for r in rows() if r[0] != 0x9003] == ["replied", "replied"],
                    "the outcomes")  # fmt: skip
        assert sorted((r[0], r[1].endswith(": media server media-1")) for r in rows()) == [
            (0x9003, True), (0x9101, True), (0x9102, True)]
    finally:
        yield cluster.stop()


@pytest_twisted.inlineCallbacks
def test_refusal_offline_and_silence_in_words(dsn: str, tmp_path: Path) -> None:
    """A device that refuses, one that is offline and one that does not answer each fail
    the open with words naming the device and the step."""
    cluster = LiveCluster(dsn, tmp_path)
    try:
        yield cluster.start()
        client, opener = cluster.media("media-1", Load())
        yield announced(client)
        d = opener.open(PHONE, 1, "main")
        yield answer(cluster.device, 0x9101, result=1)
        error = yield failed(d, "the refusal")
        assert isinstance(error, OpenFailed)
        assert str(error) == (
            f"device {PHONE} channel 1 (main stream): device {PHONE} refused 0x9101 (open"
            " channel 1 main stream to 127.0.0.1:7612): result 1 (failure)")
        error = yield failed(opener.open(ABSENT, 1, "main"), "the offline device")
        assert isinstance(error, OpenFailed) and f"device {ABSENT} is offline" in str(error)
        opener.timeout = 0.1  # the gateway retransmits 3 times, then gives up
        d = opener.open(PHONE, 3, "main")
        for _ in range(4):
            yield cluster.device.next(0x9101)
        error = yield failed(d, "the silence")
        assert isinstance(error, OpenFailed)
        assert str(error).startswith(
            f"device {PHONE} channel 3 (main stream): device {PHONE} did not answer 0x9101")
    finally:
        yield cluster.stop()


@pytest_twisted.inlineCallbacks
def test_media_server_announces_again_after_a_takeover(dsn: str, tmp_path: Path) -> None:
    """Kill -9 the active login server: the media server announces itself to the standby
    that takes over (the standby's users get its URL) and opens streams through it."""
    cluster = LiveCluster(dsn, tmp_path, standby=True)
    try:
        yield cluster.start()
        client, opener = cluster.media("media-1", Load())
        yield announced(client)
        assert client.endpoint.connected_to == cluster.login.client_cluster
        status, body = yield cluster.api("POST", "/api/v1/login",
                                         {"username": USER, "password": PASSWORD})  # fmt: skip
        assert body["media"] == {"web": "http://media-1.example:8081"}
        cluster.login.kill()
        standby = cluster.logins[1]
        yield announced(client, 2)
        assert client.endpoint.connected_to == standby.client_cluster
        yield until(lambda: logged(standby.log, "media server media-1 is live"), "the announcement")
        status, body = yield cluster.api("POST", "/api/v1/login",
                                         {"username": USER, "password": PASSWORD}, web=standby.web)
        assert status == 200 and body["media"] == {"web": "http://media-1.example:8081"}
        cluster.token = body["token"]
        yield cluster.until_online(web=standby.web)
        d = opener.open(PHONE, 1, "main")
        yield answer(cluster.device, 0x9101)
        assert (yield within(d, "the open through the standby")) == Opened(None, None)
    finally:
        yield cluster.stop()


@pytest_twisted.inlineCallbacks
def test_twistd_media_announces_and_asks_through_login(dsn: str, tmp_path: Path) -> None:
    """``twistd media --login ...``'s service tree (in this process) announces itself with
    its public addresses and its load, and its opener asks the device through login."""
    from twisted.internet import reactor

    from cmsv6.plugins.media import tap

    cluster = LiveCluster(dsn, tmp_path)
    top = None
    try:
        yield cluster.start()
        options = tap.Options()
        options.parseOptions([
            "--id", "media-9", "--cluster_key", str(media_key_file("media-9")),
            "--jt1078", f"tcp:{free_port()}:interface=127.0.0.1", "--public_jt1078", "127.0.0.1:7999",
            "--web", f"tcp:{free_port()}:interface=127.0.0.1", "--public_web", "http://video.example:81",
            "--login", cluster.login.client_cluster,
        ])  # fmt: skip
        top = tap.makeService(options, reactor)
        top.startService()
        yield until(lambda: logged(cluster.login.log, "media server media-9 is live"), "announced")
        status, body = yield cluster.api("POST", f"/api/v1/devices/{PHONE}/live", {"channel": 1})
        assert status == 200 and body["http_flv"].startswith("http://video.example:81/live/")
        d = top.media.opener.open(PHONE, 4, "main")
        request = yield answer(cluster.device, 0x9101)
        assert request.body == RealtimeAvRequest("127.0.0.1", 7999, 0, 4, 0, 0)
        assert (yield within(d, "the open")) == Opened(None, None)
    finally:
        if top is not None:
            yield within(top.stopService(), "twistd media to stop")
        yield cluster.stop()


@defer.inlineCallbacks
def answer_attributes(device: DeviceProtocol, video: int, audio: int) -> Any:
    """The next 0x9003 the device gets, answered with its 0x1003 saying these codecs."""
    from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes

    m = yield device.next(0x9003)
    device.send(AvAttributes(audio, 1, 0, 1, 320, 0, video, 4, 4))
    return m


@pytest_twisted.inlineCallbacks
def test_the_devices_codecs_come_from_its_0x1003(dsn: str, tmp_path: Path) -> None:
    """Opening a device's stream asks its attributes (0x9003) through its gateway: its
    0x1003 comes back in the open's answer (H.264, G.711A: audio browsers get as AAC),
    login remembers it (the next open does not ask) and the Open API's live answer says
    it; a device that does not answer 0x9003 streams all the same, codecs unknown."""
    from cmsv6.protocols.jt808.messages.jt1078 import AvCodec

    cluster = LiveCluster(dsn, tmp_path)
    try:
        yield cluster.start()
        client, opener = cluster.media("media-1", Load())
        yield announced(client)
        status, body = yield cluster.api("POST", f"/api/v1/devices/{PHONE}/live", {"channel": 1})
        assert status == 200 and (body["codec"], body["audio"]) == (None, None)
        d = opener.open(PHONE, 1, "main")
        yield answer_attributes(cluster.device, AvCodec.H264, AvCodec.G711A)
        yield answer(cluster.device, 0x9101)
        opened = yield within(d, "the open")
        assert opened == Opened("h264", "g711a") and opened.audio is True
        d = opener.open(PHONE, 2, "main")
        yield answer(cluster.device, 0x9101)
        assert (yield within(d, "the second open")) == Opened("h264", "g711a")
        status, body = yield cluster.api("POST", f"/api/v1/devices/{PHONE}/live", {"channel": 2})
        assert status == 200 and (body["codec"], body["audio"]) == ("h264", "aac")
    finally:
        yield cluster.stop()
