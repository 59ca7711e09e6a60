"""Media servers and login, over twisted.test.iosim (no sockets): announcing, who may
announce, the least-loaded choice, viewing grants, and OpenStream/CloseStream reaching a
device through its gateway as 0x9101/0x9102."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.test import iosim

from cmsv6.media.viewing import View, allows, verify_view, view_key
from cmsv6.plugins.login.directory import Directory
from cmsv6.plugins.media.cluster import LoginOpener, MediaLoginClient
from cmsv6.plugins.media.opener import OpenFailed
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import AvTransmissionControl, RealtimeAvRequest
from cmsv6.rpc.client import LoginLinkClient
from cmsv6.rpc.commands import (
    AnnounceGateway,
    AnnounceMedia,
    BadRequest,
    CommandTimeout,
    OpenStream,
    ReportMediaLoad,
)
from tests.plugins.login.test_rpc import FakeGateway, login_link, pair
from tests.support.cluster import MASTER, connect

PHONE = "13800000001"


def general(msg_id: int, result: int = 0) -> dict[str, Any]:
    body = encode_body(TerminalResponse(reply_serial=1, reply_id=msg_id, result=result))
    return {"msg_id": 0x0001, "version": 2013, "body": body}


class RecordingGateway(FakeGateway):
    """A gateway whose device answers every command with ``answer(msg_id)``."""

    def __init__(self, phones: tuple[str, ...] = (PHONE,)) -> None:
        super().__init__(phones)
        self.sent: list[tuple[str, int, bytes]] = []
        self.answer: Any = general

    def send_command(self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
                     body_2019: bytes | None = None) -> Any:  # fmt: skip
        self.sent.append((phone, msg_id, body))
        if phone not in self.sessions:
            return super().send_command(phone, msg_id, body)
        try:
            return defer.succeed(self.answer(msg_id))
        except Exception as e:  # noqa: BLE001 - handed back as the errback
            return defer.fail(e)


class Media:
    """A media server's link to login (the real MediaLoginClient) over iosim."""

    def __init__(self, directory: Directory, media_id: str = "media-1", streams: int = 0,
                 viewers: int = 0, key: bytes | None = None) -> None:  # fmt: skip
        from twisted.internet import reactor

        self.load = {"streams": streams, "viewers": viewers}
        self.client = MediaLoginClient(
            media_id, key or MASTER.key_for(media_id), ["tcp:127.0.0.1:1"], reactor,  # type: ignore[arg-type]
            f"http://{media_id}.example:8081", "10.1.2.3:7612", lambda: self.load,
        )  # fmt: skip
        self.client.clock = task.Clock()
        self.opener = LoginOpener(self.client)
        self.server = login_link(directory)
        self.link = LoginLinkClient(self.client)
        _, _, self.pump = iosim.connectedServerAndClient(lambda: self.server, lambda: self.link)
        self.announced: list[Any] = []
        self.client._announce(self.link).addBoth(self.announced.append)
        self.pump.flush()

    def call(self, d: defer.Deferred[Any]) -> Any:
        """What ``d`` fires with, once every link (this one and the gateways') is idle."""
        results: list[Any] = []
        d.addBoth(results.append)
        pumps = [self.pump, *PUMPS]
        while [p.pump() for p in pumps].count(True):
            pass
        assert results, "no answer"
        return results[0]


#: The gateways' links to login in the current test (Media.call pumps them too).
PUMPS: list[iosim.IOPump] = []


@pytest.fixture(autouse=True)
def _no_pumps_left() -> Any:
    PUMPS.clear()
    yield
    PUMPS.clear()


def gateway_with_device(directory: Directory, gateway: RecordingGateway) -> Any:
    client, server, link, pump = pair(directory, gateway)
    client._announce(link)
    pump.flush()
    assert directory.device_gateway(PHONE) == "gw-1"
    PUMPS[:] = [pump]
    return pump


def test_media_announces_and_login_answers_its_url() -> None:
    """A media server that proved its id is live in login's memory, with its addresses and
    load; the login answer's media URL is its public_web; its link dropping kills it."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    assert directory.media_server() is None
    media = Media(directory, streams=2, viewers=3)
    assert media.announced and media.client.announcements == 1
    entry = directory.media["media-1"]
    assert (entry.public_web, entry.public_jt1078, entry.load) == (
        "http://media-1.example:8081", "10.1.2.3:7612", 5)
    assert directory.media_server() == "http://media-1.example:8081"
    media.load["viewers"] = 10
    media.client._report()
    media.pump.flush()
    assert entry.load == 12
    media.link.transport.loseConnection()
    media.pump.flush()
    assert directory.media == {} and directory.media_server() is None
    assert media.client.link is None


def test_only_the_proven_id_announces_a_media_server() -> None:
    """A link announces a media server only under the id it proved; a gateway's link, or a
    gateway's id, cannot announce one (nor a media server's a gateway); an impostor is
    refused and nothing is announced."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    announce = {"public_web": "http://x:1", "public_jt1078": "10.0.0.1:7612", "streams": 0,
                "viewers": 0}  # fmt: skip
    # A gateway's key announcing media-1.
    client, _, pump = connect(login_link(directory), server_id="gw-1")
    failures: list[Any] = []
    client.callRemote(AnnounceMedia, id="media-1", **announce).addErrback(failures.append)
    pump.flush()
    assert failures and failures[0].check(BadRequest)
    assert "proved 'gw-1', not 'media-1'" in failures[0].getErrorMessage()
    # The gateway announcing itself, then as a media server under its own id.
    client.callRemote(AnnounceGateway, id="gw-1", public_jt808="10.0.0.1:7611", cluster="",
                      capacity=10).addErrback(failures.append)  # fmt: skip
    client.callRemote(AnnounceMedia, id="gw-1", **announce).addErrback(failures.append)
    pump.flush()
    assert len(failures) == 2 and failures[1].check(BadRequest)
    assert "gw-1 is a gateway" in failures[1].getErrorMessage()
    # Another link proving gw-1's id cannot announce a media server while gw-1 is live.
    other, _, pump2 = connect(login_link(directory), server_id="gw-1")
    other.callRemote(AnnounceMedia, id="gw-1", **announce).addErrback(failures.append)
    pump2.flush()
    assert len(failures) == 3 and "gw-1 is a gateway" in failures[2].getErrorMessage()
    assert directory.media == {}
    # A media server cannot then announce itself as a gateway.
    media = Media(directory)
    media.link.callRemote(AnnounceGateway, id="media-1", public_jt808="10.0.0.1:7611", cluster="",
                          capacity=10).addErrback(failures.append)  # fmt: skip
    media.pump.flush()
    assert len(failures) == 4 and "media-1 is a media server" in failures[3].getErrorMessage()
    assert list(directory.gateways) == ["gw-1"] and list(directory.media) == ["media-1"]


def test_a_link_without_the_key_never_announces() -> None:
    """A media server holding a wrong key for its id fails the challenge: it is never
    announced."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    media = Media(directory, key=bytes(32))
    assert media.announced and media.client.announcements == 0
    assert directory.media == {}


def test_least_loaded_media_server_and_its_grant() -> None:
    """live_view picks the media server with the fewest streams and viewers and signs a
    grant with that server's viewing key for exactly the asked stream; a stream a device
    was asked to open to one server goes on there."""
    clock = task.Clock()
    clock.advance(1_000_000)
    directory = Directory(clock, key_for=MASTER.key_for)
    busy = Media(directory, "media-a", streams=3, viewers=4)
    idle = Media(directory, "media-b", streams=1, viewers=2)
    view = directory.live_view(PHONE, 2, "sub")
    assert view is not None and (view.media, view.public_web) == ("media-b", "http://media-b.example:8081")
    key = view_key(MASTER.key_for("media-b"))  # type: ignore[arg-type]
    granted = verify_view(key, view.token, clock.seconds(), "media-b")
    assert granted == View("media-b", PHONE, 2, "sub", view.expires)
    assert allows(granted, PHONE, 2, "sub") and not allows(granted, PHONE, 1, "sub")
    assert view.expires > clock.seconds()
    # The busy one becomes the idle one.
    busy.load.update(streams=0, viewers=0)
    busy.client._report()
    busy.pump.flush()
    assert directory.live_view(PHONE, 2, "sub").media == "media-a"  # type: ignore[union-attr]
    # A device streaming to media-b keeps its viewers there.
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    assert idle.call(idle.opener.open(PHONE, 2, "sub")) is None
    assert directory.live_view(PHONE, 2, "sub").media == "media-b"  # type: ignore[union-attr]
    assert directory.live_view(PHONE, 1, "sub").media == "media-a"  # type: ignore[union-attr]


def test_open_stream_sends_0x9101_with_the_media_address() -> None:
    """OpenStream from a media server reaches the device's gateway as 0x9101 with the media
    server's public_jt1078 (TCP port, UDP port 0), the channel, audio and video, and the
    stream; CloseStream as 0x9102 closing audio and video; both recorded as the media
    server's."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    media = Media(directory)
    assert media.call(media.opener.open(PHONE, 3, "sub")) is None
    (phone, msg_id, body), = gateway.sent
    assert (phone, msg_id) == (PHONE, 0x9101)
    assert decode_body(0x9101, body) == RealtimeAvRequest("10.1.2.3", 7612, 0, 3, 0, 1)
    assert media.call(media.opener.open(PHONE, 1, "main")) is None
    assert decode_body(0x9101, gateway.sent[-1][2]) == RealtimeAvRequest("10.1.2.3", 7612, 0, 1, 0, 0)
    assert media.call(media.opener.close(PHONE, 3, "sub")) is None
    assert gateway.sent[-1][1] == 0x9102
    assert decode_body(0x9102, gateway.sent[-1][2]) == AvTransmissionControl(3, 0, 0, 1)


def test_stream_failures_in_words() -> None:
    """A device that refuses, is offline, or does not answer, a gateway that is gone, and a
    media server without a link: each an OpenFailed naming the device and the step."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_pump = gateway_with_device(directory, gateway)
    media = Media(directory)
    gateway.answer = lambda msg_id: general(msg_id, result=3)
    refused = media.call(media.opener.open(PHONE, 1, "main"))
    assert refused.check(OpenFailed)
    assert str(refused.value) == (
        f"device {PHONE} channel 1 (main stream): device {PHONE} refused 0x9101 (open channel 1"
        " main stream to 10.1.2.3:7612): result 3 (not supported)")
    gateway.answer = lambda msg_id: {"msg_id": 0x0200, "version": 2013, "body": b""}
    other = media.call(media.opener.open(PHONE, 1, "main"))
    assert "answered 0x9101 (open channel 1 main stream to 10.1.2.3:7612) with 0x0200" in str(other.value)

    def silent(msg_id: int) -> Any:
        raise CommandTimeout("no reply after 3 retransmissions")

    gateway.answer = silent
    timeout = media.call(media.opener.open(PHONE, 1, "main"))
    assert f"device {PHONE} did not answer 0x9101" in str(timeout.value)
    offline = media.call(media.opener.open("13800000009", 1, "main"))
    assert str(offline.value) == (
        "device 13800000009 channel 1 (main stream): device 13800000009 is offline: no gateway"
        " has it (0x9101 (open channel 1 main stream to 10.1.2.3:7612) not sent)")
    bad = media.call(media.opener.open(PHONE, 1, "hd"))
    assert bad.check(OpenFailed) and "stream 'hd' is not" in str(bad.value)
    # The gateway's link gone, login finds no gateway for the device any more.
    gateway_pump.client.transport.loseConnection()
    gateway_pump.flush()
    gone = media.call(media.opener.open(PHONE, 1, "main"))
    assert f"device {PHONE} is offline" in str(gone.value)
    media.link.transport.loseConnection()
    media.pump.flush()
    unlinked = media.call(media.opener.open(PHONE, 1, "main"))
    assert str(unlinked.value) == (f"device {PHONE} channel 1 (main stream): cannot open the"
                                   " stream: no login server reachable (tried tcp:127.0.0.1:1)")


def test_streams_only_for_announced_media_servers() -> None:
    """A link that did not announce a media server (a gateway's, say) cannot ask for a
    stream, nor report a media load: nothing is sent to the device."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    client, _, pump = connect(login_link(directory), server_id="gw-2")
    failures: list[Any] = []
    client.callRemote(OpenStream, phone=PHONE, channel=1, stream="main",
                      address="10.9.9.9:1").addErrback(failures.append)  # fmt: skip
    client.callRemote(ReportMediaLoad, streams=1, viewers=1).addErrback(failures.append)
    pump.flush()
    assert len(failures) == 2 and all(f.check(BadRequest) for f in failures)
    assert "announce the media server first" in failures[0].getErrorMessage()
    assert gateway.sent == []


def test_silent_media_server_is_dead() -> None:
    """A media server that stops reporting is dropped and its link closed."""
    clock = task.Clock()
    directory = Directory(clock, key_for=MASTER.key_for)
    media = Media(directory)
    clock.advance(directory.STALE_AFTER + 1)
    directory.tick()
    media.pump.flush()
    assert directory.media == {} and media.client.link is None


def test_remembered_streams_are_bounded() -> None:
    """A media server that never closes its streams does not grow login's memory past
    MAX_OPENED: the oldest are forgotten first."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    directory.MAX_OPENED = 3
    media = Media(directory)
    entry = directory.media["media-1"]
    for channel in range(1, 6):
        directory.stream_opened(entry, PHONE, channel, "main")
    assert list(entry.opened) == [(PHONE, 3, "main"), (PHONE, 4, "main"), (PHONE, 5, "main")]
    assert media.client.announcements == 1
