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
from cmsv6.plugins.media.opener import Opened, OpenFailed
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvAttributes,
    AvCodec,
    AvTransmissionControl,
    RealtimeAvRequest,
)
from cmsv6.rpc import keys
from cmsv6.rpc.client import LoginLinkClient
from cmsv6.rpc.commands import (
    AnnounceGateway,
    AnnounceMedia,
    BadRequest,
    CommandTimeout,
    DevicesChanged,
    OpenStream,
    ReportMediaLoad,
)
from tests.plugins.login.test_rpc import FakeGateway, login_link, pair
from tests.support.cluster import MASTER, connect

PHONE = "13800000001"


def media_key(media_id: str) -> bytes:
    """Media server ``media_id``'s key under MASTER (it proves the role too)."""
    return keys.server_credential(MASTER, media_id, keys.MEDIA).key


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
            answer = self.answer(msg_id)
        except Exception as e:  # noqa: BLE001 - handed back as the errback
            return defer.fail(e)
        return answer if isinstance(answer, defer.Deferred) else defer.succeed(answer)


class Media:
    """A media server's link to login (the real MediaLoginClient) over iosim."""

    def __init__(self, directory: Directory, media_id: str = "media-1", streams: int = 0,
                 viewers: int = 0, key: bytes | None = None) -> None:  # fmt: skip
        from twisted.internet import reactor

        self.load = {"streams": streams, "viewers": viewers}
        self.client = MediaLoginClient(
            media_id, key or media_key(media_id), ["tcp:127.0.0.1:1"], reactor,
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
    """A link announces a media server only under the id and the role it proved: a
    gateway's key cannot announce one, not even under its own id while that gateway is
    offline, nor a media server's key a gateway; a media server's key cannot take the id of
    a live gateway; an impostor is refused and nothing is announced."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    announce = {"public_web": "http://x:1", "public_jt1078": "10.0.0.1:7612", "streams": 0,
                "viewers": 0}  # fmt: skip
    failures: list[Any] = []
    # gw-1 is offline (never announced); its key announces media-1, then a media server gw-1.
    client, server, pump = connect(login_link(directory), server_id="gw-1")
    client.callRemote(AnnounceMedia, id="media-1", **announce).addErrback(failures.append)
    client.callRemote(AnnounceMedia, id="gw-1", **announce).addErrback(failures.append)
    pump.flush()
    assert len(failures) == 2 and all(f.check(BadRequest) for f in failures)
    assert "proved the key of gateway 'gw-1', not of a media server 'media-1'" in failures[0].getErrorMessage()
    assert "proved the key of gateway 'gw-1', not of a media server 'gw-1'" in failures[1].getErrorMessage()
    assert server.counters["impostor"] == 2 and directory.media == {}
    # The gateway announcing itself; a media server's key for the same id cannot then take it.
    client.callRemote(AnnounceGateway, id="gw-1", public_jt808="10.0.0.1:7611", cluster="",
                      capacity=10).addErrback(failures.append)  # fmt: skip
    pump.flush()
    assert len(failures) == 2 and list(directory.gateways) == ["gw-1"]
    other, _, pump2 = connect(login_link(directory), server_id="media gw-1", key=media_key("gw-1"))
    other.callRemote(AnnounceMedia, id="gw-1", **announce).addErrback(failures.append)
    pump2.flush()
    assert len(failures) == 3 and "gw-1 is a gateway" in failures[2].getErrorMessage()
    assert directory.media == {}
    # A media server's key cannot announce a gateway, under its own id or another.
    media = Media(directory)
    for gateway_id in ("media-1", "gw-2"):
        media.link.callRemote(AnnounceGateway, id=gateway_id, public_jt808="10.0.0.1:7611",
                              cluster="", capacity=10).addErrback(failures.append)  # fmt: skip
    media.pump.flush()
    assert len(failures) == 5
    assert "proved the key of media 'media-1', not of a gateway 'media-1'" in failures[3].getErrorMessage()
    assert "not of a gateway 'gw-2'" in failures[4].getErrorMessage()
    assert list(directory.gateways) == ["gw-1"] and list(directory.media) == ["media-1"]


def test_a_gateway_key_is_not_a_media_key() -> None:
    """A gateway's key (its old key file) proves the gateway and nothing else: as a media
    server's key for the same id it fails the challenge, and login's viewing grants for a
    media server are signed with that server's media key, not the gateway's."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway_key = MASTER.key_for("gw-1")
    assert gateway_key is not None and gateway_key != media_key("gw-1")
    media = Media(directory, "gw-1", key=gateway_key)
    assert media.announced and media.client.announcements == 0 and directory.media == {}
    assert media.server.counters["bad proof"] == 1


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
    key = view_key(media_key("media-b"))
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
    assert idle.call(idle.opener.open(PHONE, 2, "sub")) == Opened(None, None)
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
    assert media.call(media.opener.open(PHONE, 3, "sub")) == Opened(None, None)
    (_, asked, _), (phone, msg_id, body) = gateway.sent
    assert (asked, phone, msg_id) == (0x9003, PHONE, 0x9101)
    assert decode_body(0x9101, body) == RealtimeAvRequest("10.1.2.3", 7612, 0, 3, 0, 1)
    assert media.call(media.opener.open(PHONE, 1, "main")) == Opened(None, None)
    assert [m for _, m, _ in gateway.sent] == [0x9003, 0x9101, 0x9101]  # not asked again
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


def attributes(video: int = AvCodec.H264, audio: int = AvCodec.G711A) -> AvAttributes:
    return AvAttributes(audio, 1, 0, 1, 320, 0, video, 4, 4)


def device_with(attrs: AvAttributes) -> Any:
    """A device's answer to each message: 0x1003 ``attrs`` to 0x9003, else accepted."""

    def answer(msg_id: int) -> dict[str, Any]:
        if msg_id == 0x9003:
            return {"msg_id": 0x1003, "version": 2013, "body": encode_body(attrs)}
        return general(msg_id)

    return answer


def test_open_stream_answers_the_devices_codecs() -> None:
    """Opening a device's first stream asks its attributes (0x9003, before the 0x9101): the
    answer names its codecs (audio that browsers can get as AAC); login remembers them
    (the next stream does not ask, the Open API's live answer says them) until the device
    goes offline."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_pump = gateway_with_device(directory, gateway)
    media = Media(directory)
    assert directory.live_codecs(PHONE) == (None, None)
    gateway.answer = device_with(attributes())
    opened = media.call(media.opener.open(PHONE, 1, "main"))
    assert opened == Opened("h264", "g711a")
    assert (opened.audio, opened.video_type, opened.audio_type) == (True, 98, 6)
    assert [m for _, m, _ in gateway.sent] == [0x9003, 0x9101]
    assert directory.live_codecs(PHONE) == ("h264", "aac")
    gateway.answer = device_with(attributes(AvCodec.H265, AvCodec.G729))
    assert media.call(media.opener.open(PHONE, 2, "main")) == Opened("h264", "g711a")
    assert [m for _, m, _ in gateway.sent] == [0x9003, 0x9101, 0x9101]
    # Offline: forgotten; asked again, and now the unit says H.265 and G.729.
    client = gateway_pump.client
    client.callRemote(DevicesChanged, online=[], offline=[PHONE])
    client.callRemote(DevicesChanged, online=[PHONE], offline=[])
    gateway_pump.flush()
    assert directory.live_codecs(PHONE) == (None, None)
    opened = media.call(media.opener.open(PHONE, 1, "main"))
    assert opened == Opened("h265", "code 5") and opened.audio is False
    assert directory.live_codecs(PHONE) == ("h265", None)


def test_a_device_that_does_not_say_its_codecs() -> None:
    """A device that refuses 0x9003 or does not answer it still streams: its codecs are
    unknown (None, no error), and it is not asked again for AV_UNKNOWN_FOR seconds; one
    whose 0x1003 is late does not hold the stream up past ATTRIBUTES_GRACE, and its late
    answer is remembered."""
    from cmsv6.plugins.login import streams

    clock = task.Clock()
    directory = Directory(clock, key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    media = Media(directory)
    gateway.answer = lambda msg_id: general(msg_id, result=3 if msg_id == 0x9003 else 0)
    assert media.call(media.opener.open(PHONE, 1, "main")) == Opened(None, None)
    assert media.call(media.opener.open(PHONE, 1, "main")) == Opened(None, None)
    assert [m for _, m, _ in gateway.sent] == [0x9003, 0x9101, 0x9101]

    def silent(msg_id: int) -> Any:
        if msg_id == 0x9003:
            raise CommandTimeout("no reply after 3 retransmissions")
        return general(msg_id)

    gateway.answer = silent
    clock.advance(directory.AV_UNKNOWN_FOR)
    assert media.call(media.opener.open(PHONE, 1, "main")) == Opened(None, None)
    assert [m for _, m, _ in gateway.sent][3:] == [0x9003, 0x9101]
    # A late 0x1003.
    late: defer.Deferred[Any] = defer.Deferred()
    gateway.answer = lambda msg_id: late if msg_id == 0x9003 else general(msg_id)
    clock.advance(directory.AV_UNKNOWN_FOR)
    opening = media.opener.open(PHONE, 1, "main")
    results: list[Any] = []
    opening.addBoth(results.append)
    media.pump.flush()
    PUMPS[0].flush()
    media.pump.flush()
    assert results == [] and directory.av_asking
    clock.advance(streams.ATTRIBUTES_GRACE)
    media.pump.flush()
    media.pump.flush()
    assert results == [Opened(None, None)]
    late.callback(device_with(attributes())(0x9003))
    PUMPS[0].flush()
    assert directory.live_codecs(PHONE) == ("h264", "aac") and not directory.av_asking


def test_remembered_attributes_are_bounded() -> None:
    """Login remembers at most MAX_AV devices' attributes, the least recently told go
    first, and each for AV_FOR seconds at most."""
    clock = task.Clock()
    directory = Directory(clock)
    directory.MAX_AV = 2
    for phone in ("13800000001", "13800000002", "13800000003"):
        directory.remember_av(phone, attributes())
    assert list(directory.av) == ["13800000002", "13800000003"]
    assert directory.live_codecs("13800000001") == (None, None)
    clock.advance(directory.AV_FOR)
    assert directory.live_codecs("13800000003") == (None, None) and list(directory.av) == ["13800000002"]
