"""Playback over real loopback sockets, judged by FFmpeg: a fake DVR that answers the 0x9201
and 0x9202 the media server sends (through a fake opener) by connecting to the media
server's JT/T 1078 port and playing the test clip back with recording-time timestamps,
honouring pause, seek, fast-forward, rewind and keyframes as a DVR does; WS-FLV viewers
(autobahn) that also send control messages, HTTP-FLV viewers, and login's
``ControlPlayback`` over AMP.

The DVR plays only when the test pumps it, so what each viewer must get is known picture
by picture: every decoded picture is matched to the clip's by its pixels.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import av
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints
from twisted.protocols import amp
from twisted.test import iosim

from cmsv6.media.viewing import View, sign_view, view_key
from cmsv6.plugins.media.cluster import MediaLoginClient
from cmsv6.plugins.media.fanout import CLOSE_BAD_REQUEST, CLOSE_DEVICE, CLOSE_FORBIDDEN, StreamKey
from cmsv6.plugins.media.playback import END_OF_RECORDING, playbacks_of
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType, Packet
from cmsv6.rpc.commands import BadRequest, ControlPlayback, NoSuchPlayback
from tests.plugins.media.loopback import Dvr, Served, dvr, http_viewer, ws_viewer
from tests.plugins.media.support import (
    MEDIA_ID,
    PHONE,
    SERVER_KEY,
    SIM,
    START,
    clip,
    packets,
    play,
    token,
    wire,
)
from tests.support.device import until, within

CST = timezone(timedelta(hours=8))
FROM = datetime(2024, 5, 1, 10, 0, 0, tzinfo=CST)
#: The recording: 10 s, 250 pictures 40 ms apart, a keyframe every 25 (the clip looped).
SECONDS = 10
STEP = 40
GOP = 25
SESSION = "session-0123456789abcdef"


def playback_token(channel: int = 1, session: str = SESSION, phone: str = PHONE,
                   **params: Any) -> str:  # fmt: skip
    grant = {"id": session, "from": FROM.isoformat(),
             "to": (FROM + timedelta(seconds=SECONDS)).isoformat(), "mode": "normal", "speed": 1,
             "media": "audio_video", "stream": "any", "storage": "any", **params}  # fmt: skip
    view = View(MEDIA_ID, phone, channel, "playback", int(time.time() + 120), grant)
    return sign_view(view_key(SERVER_KEY), view)


def url(channel: int = 1, tok: str | None = None) -> str:
    return f"/playback/{PHONE}/{channel}.flv?token={playback_token(channel) if tok is None else tok}"


def reply(msg_id: int, result: int = 0) -> dict[str, Any]:
    return {"msg_id": 0x0001, "version": 2013,
            "body": encode_body(TerminalResponse(7, msg_id, result))}  # fmt: skip


class PlaybackDvr:
    """A DVR's playback of the recording from ``FROM``: the clip looped, recording-time
    timestamps (the unit's clock ``START`` at ``FROM``). ``pump(n)`` plays ``n`` steps:
    a picture (and its audio at ×1) forward; at ×N fast-forward every picture without
    audio; rewinding or in keyframes mode, the keyframe before (or after) the last."""

    def __init__(self, reactor: Any, port: int, refuse: bool = False, connects: bool = True) -> None:
        self.reactor = reactor
        self.port = port
        self.refuse = refuse
        self.connects = connects
        self.clip = clip()
        self.requests: list[Any] = []
        self.controls: list[Any] = []
        self.connection: Dvr | None = None
        self.channel = 1
        self.at = 0  # the next picture
        self.paused = False
        self.mode = "normal"  # "fast", "rewind", "keyframes"
        self.sent: list[int] = []  # pictures sent, in order
        self.frames = 0  # frames sent (video and audio)
        self.sequence = 0
        self.ended = False

    @property
    def pictures(self) -> int:
        return SECONDS * 1000 // STEP

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        message = decode_body(msg_id, body)
        if msg_id == 0x9201:
            self.requests.append(message)
            if self.refuse:
                return defer.succeed(reply(msg_id, 1))
            self.channel = message.channel
            if self.connects:
                dvr(self.reactor, self.port).addCallback(self._connected)
            return defer.succeed(reply(msg_id))
        assert msg_id == 0x9202, hex(msg_id)
        self.controls.append(message)
        action = message.action
        if action == 0:
            self.paused, self.mode = False, "normal"
        elif action == 1:
            self.paused = True
        elif action == 2:
            self.paused = True
        elif action == 3:
            self.mode = "fast"
        elif action == 4:
            self.mode = "rewind"
            self.at = max(0, (self.at - 1) // GOP * GOP)
        elif action == 5:
            ms = (message.position - FROM).total_seconds() * 1000
            self.at = int(ms // STEP) // GOP * GOP
        elif action == 6:
            self.mode = "keyframes"
            self.at = -(-self.at // GOP) * GOP
        return defer.succeed(reply(msg_id))

    def _connected(self, connection: Dvr) -> None:
        self.connection = connection

    def packets(self, frames: list[Frame]) -> list[Packet]:
        """The frames' packets, their sequence numbers going on from the last pump's."""
        out = []
        for p in packets(frames, sim=SIM):
            out.append(attrs.evolve(p, sequence=(p.sequence + self.sequence) & 0xFFFF))
        self.sequence = (self.sequence + len(out)) & 0xFFFF
        return out

    def pump(self, steps: int) -> None:
        assert self.connection is not None
        out: list[Frame] = []
        for _ in range(steps):
            if self.paused or self.ended:
                break
            if not 0 <= self.at < self.pictures:
                self.ended = True
                break
            i = self.at
            video = self.clip.video[i % len(self.clip.video)]
            ts = START + i * STEP
            out.append(Frame(self.channel, int(video.data_type), ts, video.payload, 98))
            self.sent.append(i)
            if self.mode == "normal":
                audio = self.clip.audio[i % len(self.clip.audio)]
                out.append(Frame(self.channel, int(DataType.AUDIO), ts, audio.payload,
                                 int(self.clip.audio_payload_type)))  # fmt: skip
            self.at += {"normal": 1, "fast": 1, "rewind": -GOP, "keyframes": GOP}[self.mode]
        self.frames += len(out)
        if out:
            self.connection.send(wire(self.packets(out)))
        if self.ended:
            self.connection.transport.loseConnection()


class Opener:
    """The media server's opener: live streams open at once; what it sends goes to the DVR."""

    def __init__(self) -> None:
        self.device: PlaybackDvr | None = None
        self.sent: list[tuple[int, Any]] = []
        self.opens = 0

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        self.opens += 1
        return defer.succeed(None)

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        return defer.succeed(None)

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        assert phone == PHONE
        self.sent.append((msg_id, decode_body(msg_id, body)))
        assert self.device is not None
        return self.device.send(phone, msg_id, body)

    def actions(self) -> list[int]:
        return [m.action for msg_id, m in self.sent if msg_id == 0x9202]


@defer.inlineCallbacks
def serve(refuse: bool = False, connects: bool = True, **changes: Any) -> Any:
    from twisted.internet import reactor

    opener = Opener()
    served = yield Served(reactor, opener, **changes).start()
    opener.device = PlaybackDvr(reactor, served.jt1078, refuse, connects)
    return served, opener.device, opener


class Client(WebSocketClientProtocol):
    """A WS-FLV viewer that also sends controls: binary messages in order, text messages
    (decoded), and how it was closed."""

    def onConnect(self, response: Any) -> None:  # noqa: N802
        self.chunks: list[bytes] = []
        self.texts: list[Any] = []
        self.factory.client = self

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        if isBinary:
            self.chunks.append(payload)
        else:
            self.texts.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))

    def control(self, **message: Any) -> None:
        self.sendMessage(json.dumps(message).encode(), isBinary=False)

    def answer(self, ident: Any) -> Any:
        return next((t for t in self.texts if t.get("id") == ident), None)

    @property
    def flv(self) -> bytes:
        return b"".join(getattr(self, "chunks", []))


def client(reactor: Any, port: int, path: str) -> WebSocketClientFactory:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}", reactor=reactor)
    factory.protocol = Client
    factory.closed = defer.Deferred()
    factory.client = None
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return factory


# -- FFmpeg's reading, picture by picture ----------------------------------------------------


def _key(frame: Any) -> str:
    """A picture's luma, row by row (without the decoder's line padding)."""
    plane = frame.planes[0]
    data = bytes(plane)
    rows = (data[r * plane.line_size : r * plane.line_size + frame.width] for r in range(frame.height))
    return hashlib.sha1(b"".join(rows)).hexdigest()


_REFERENCE: dict[str, int] = {}


def reference() -> dict[str, int]:
    """Each clip picture's luma → its index in the clip."""
    if not _REFERENCE:
        codec = av.CodecContext.create("h264", "r")
        decoded = []
        for f in clip().video:
            decoded += codec.decode(av.Packet(f.payload))
        decoded += codec.decode(None)
        for n, frame in enumerate(decoded):
            _REFERENCE[_key(frame)] = n
    return _REFERENCE


def pictures(flv: bytes) -> list[tuple[int, bool, int]]:
    """(pts, keyframe, the clip picture it shows) of each picture FFmpeg decodes."""
    container = av.open(io.BytesIO(flv), format="flv")
    assert container.streams.video[0].codec_context.name == "h264"
    out = []
    ref = reference()
    for frame in container.decode(video=0):
        assert not frame.is_corrupt
        out.append((int(frame.pts), bool(frame.key_frame), ref[_key(frame)]))
    container.close()
    return out


def shown(expected: list[int]) -> list[int]:
    """The clip pictures recording pictures ``expected`` show."""
    return [i % 100 for i in expected]


def check(pics: list[tuple[int, bool, int]]) -> None:
    """Strictly increasing time, and a keyframe wherever the pictures jump."""
    pts = [p for p, _, _ in pics]
    assert all(b > a for a, b in zip(pts, pts[1:])), pts
    assert pics[0][1]
    for (_, _, before), (_, key, n) in zip(pics, pics[1:]):
        if n != (before + 1) % 100:
            assert key and n % GOP == 0, (before, n)


# -- the tests ---------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_ws_playback_with_pause_seeks_and_fast_forward_restarts_at_keyframes() -> None:
    """A WS-FLV viewer plays a recording back and controls it (with and without "id"):
    0x9201 carries the media server's address and the times in +08:00; after pause/resume,
    a seek back, a seek forward, ×4 fast-forward and resume, FFmpeg decodes every picture
    the output should have and no other, each control's first picture a keyframe, times
    strictly increasing (a quarter of the device's step at ×4). The DVR's end of the
    range closes the viewer with 1000 "end of the recording"."""
    from twisted.internet import reactor

    served, device, opener = yield serve(public_jt1078="192.0.2.7:7612")
    try:
        factory = client(reactor, served.web, url())
        yield until(lambda: device.connection is not None, "the DVR's connection")
        (request,) = device.requests
        assert (request.server_ip, request.tcp_port, request.udp_port) == ("192.0.2.7", 7612, 0)
        assert (request.channel, request.mode, request.speed, request.media_type) == (1, 0, 0, 0)
        body = encode_body(request)
        assert bytes.fromhex("240501100000") in body and bytes.fromhex("240501100010") in body
        session = playbacks_of(served.media).sessions[SESSION]
        stream = session.stream

        def pumped(n: int) -> Any:
            device.pump(n)
            return until(lambda: stream.frames == device.frames, "the DVR's frames in")

        def control(ident: Any = None, **message: Any) -> Any:
            count = len(opener.actions())
            if ident is None:
                factory.client.control(**message)
                return until(lambda: len(opener.actions()) > count, f"{message} at the DVR")
            factory.client.control(id=ident, **message)
            return until(lambda: factory.client.answer(ident) is not None, f"the answer to {ident}")

        yield pumped(37)
        yield control(1, action="pause")
        assert factory.client.answer(1) == {"id": 1, "ok": True}
        yield pumped(10)  # paused: nothing
        yield control(action="resume")
        yield pumped(30)
        yield control("back", action="seek", time=(FROM + timedelta(seconds=1.5)).isoformat())
        yield pumped(20)
        yield control({"n": 3}, action="seek", time="2024-05-01T02:00:06.5Z")
        yield pumped(20)
        yield control(action="fast_forward", speed=4)
        yield pumped(20)
        yield control(action="resume")
        yield pumped(100)
        code, reason = yield within(factory.closed, "the viewer closed")
        assert (code, reason) == (1000, END_OF_RECORDING)
        assert [m.action for m in device.controls] == [1, 0, 5, 5, 3, 0]
        assert device.controls[4].speed == 3  # ×4 is code 3
        assert device.controls[3].position == FROM + timedelta(seconds=6)  # 02:00:06Z in +08:00
        assert all(t == {"id": t["id"], "ok": True} for t in factory.client.texts)
        assert len(factory.client.texts) == 3

        pics = pictures(factory.client.flv)
        check(pics)
        expected = [*range(0, 37), *range(50, 67), *range(25, 45), *range(150, 170),
                    *range(175, 190), *range(200, 250)]  # fmt: skip
        assert [n for _, _, n in pics] == shown(expected)
        restarts = [0, 37, 54, 74, 94, 109]  # where each control's pictures begin
        assert all(pics[i][1] for i in restarts)
        pts = [p for p, _, _ in pics]
        assert {b - a for a, b in zip(pts[94:108], pts[95:109])} == {STEP // 4}
        assert {b - a for a, b in zip(pts[110:150], pts[111:151])} == {STEP}
        played = play(factory.client.flv)
        assert played.audio_codec == "aac" and played.errors == 0
        assert list(played.audio_pts) == sorted(played.audio_pts)
        assert SESSION not in playbacks_of(served.media).sessions
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_login_controls_an_http_playback_through_control_playback() -> None:
    """Login's ControlPlayback (over AMP, on the locator of the media server's link to
    login): keyframes only, then rewind ×2 (keyframes going back, shown at 500 ms
    steps), then stop: the HTTP-FLV viewer gets a stream FFmpeg decodes and a proper end
    (the last chunk); the DVR is told to stop and its connection is closed. An unknown
    session is NO_SUCH_PLAYBACK, a bad action BAD_REQUEST, in words."""
    from twisted.internet import reactor

    served, device, opener = yield serve()
    try:
        viewer = yield http_viewer(reactor, served.web, url())
        yield until(lambda: device.connection is not None, "the DVR's connection")
        session = playbacks_of(served.media).sessions[SESSION]
        stream = session.stream

        login_client = MediaLoginClient(MEDIA_ID, SERVER_KEY, ["tcp:127.0.0.1:1"], reactor,
                                        "http://x", "127.0.0.1:1", served.media.load,
                                        media=served.media)  # fmt: skip
        locator = login_client.locator_for(None)
        assert isinstance(locator, amp.CommandLocator)
        login, _, pump = iosim.connectedServerAndClient(lambda: amp.AMP(locator=locator), amp.AMP)

        def call(**arguments: Any) -> Any:
            """The answer, or the Failure (the fake opener answers at once)."""
            outcome: list[Any] = []
            login.callRemote(ControlPlayback, **arguments).addBoth(outcome.append)
            pump.flush()
            (answer,) = outcome
            return answer

        def pumped(n: int) -> Any:
            device.pump(n)
            return until(lambda: stream.frames == device.frames, "the DVR's frames in")

        yield pumped(60)
        assert call(session=SESSION, action="keyframes") == {}
        yield pumped(3)  # 75, 100, 125
        assert call(session=SESSION, action="rewind", speed=2) == {}
        yield pumped(3)  # 125, 100, 75
        missing = call(session="no-such-session-00000", action="pause")
        assert missing.check(NoSuchPlayback) and "no-such-session" in missing.getErrorMessage()
        bad = call(session=SESSION, action="jump")
        assert bad.check(BadRequest) and "'jump' is not one of" in bad.getErrorMessage()
        slow = call(session=SESSION, action="fast_forward")
        assert slow.check(BadRequest) and "needs a speed" in slow.getErrorMessage()
        assert call(session=SESSION, action="stop") == {}
        yield within(viewer.lost, "the viewer's response ended", timeout=10)
        yield within(device.connection.lost, "the DVR's connection closed")
        assert opener.actions() == [6, 4, 2]
        assert viewer.status == 200 and bytes(viewer.raw).endswith(b"\r\n0\r\n\r\n")
        pics = pictures(viewer.body)
        check(pics)
        assert [n for _, _, n in pics] == shown([*range(0, 60), 75, 100, 125, 125, 100, 75])
        pts = [p for p, _, _ in pics]
        assert pts[-2] - pts[-3] == pts[-1] - pts[-2] == 1000 // 2
        assert SESSION not in playbacks_of(served.media).sessions
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_live_and_playback_of_one_channel_at_once() -> None:
    """A channel streams live while it is played back: the playback's 0x9201 connection is
    taken by the playback session, the live one stays live; both viewers' FLV decode to
    the pictures their own connection sent. Two viewers of one session share one 0x9201;
    when both leave, 0x9202 stop goes out and the DVR's connection is closed."""
    from twisted.internet import reactor

    served, device, opener = yield serve()
    try:
        live_factory, _ = ws_viewer(reactor, served.web,
                                    f"/live/{PHONE}/1.flv?stream=main&token={token()}")  # fmt: skip
        live_dvr = yield dvr(reactor, served.jt1078)
        key = StreamKey(PHONE, 1, "main")
        yield until(lambda: key in served.media.streams, "the live stream")
        c = clip()
        live_frames = [Frame(1, int(f.data_type), START + f.timestamp, f.payload, 98)
                       for f in c.video[:50]]  # fmt: skip
        live_dvr.send(wire(packets(live_frames)))
        live = served.media.streams[key]
        yield until(lambda: live.frames == 50, "the live frames")

        first = client(reactor, served.web, url())
        second = client(reactor, served.web, url())
        yield until(lambda: device.connection is not None, "the DVR's playback connection")
        session = playbacks_of(served.media).sessions[SESSION]
        yield until(lambda: len(session.stream.viewers) == 2, "both playback viewers")
        assert len(device.requests) == 1 and opener.opens == 1
        device.pump(40)
        yield until(lambda: session.stream.frames == device.frames, "the playback's frames")
        assert session.stream.source is not live.source and live.source is not None
        assert served.media.load()["viewers"] == 3
        yield until(lambda: len(pictures_or_none(first.client.flv)) == 40, "the playback pictures")
        yield until(lambda: len(pictures_or_none(second.client.flv)) == 40, "the second viewer's")
        yield until(lambda: len(pictures_or_none(live_factory.viewer.flv)) == 50, "live pictures")
        assert [n for _, _, n in pictures(first.client.flv)] == list(range(40))
        assert [n for _, _, n in pictures(live_factory.viewer.flv)] == list(range(50))
        first.client.sendClose(1000)
        yield within(first.closed, "the first viewer gone")
        assert opener.actions() == []  # one viewer still watches
        second.client.sendClose(1000)
        yield within(device.connection.lost, "the DVR's playback connection closed")
        assert opener.actions() == [2]
        assert live.source is not None and key in served.media.streams
    finally:
        yield served.stop()


def pictures_or_none(flv: bytes) -> list[Any]:
    try:
        return pictures(flv)
    except Exception:  # noqa: BLE001 - not enough bytes for FFmpeg yet
        return []


@pytest_twisted.inlineCallbacks
def test_a_device_that_refuses_or_never_connects_is_said_in_words() -> None:
    """The DVR answering 0x9201 with a failure closes the viewer with 4502 and its words;
    a DVR that accepts but never connects, after open_timeout, with words naming the
    device and the step, and 0x9202 stop is sent."""
    from twisted.internet import reactor

    served, device, opener = yield serve(refuse=True)
    try:
        factory = client(reactor, served.web, url())
        code, reason = yield within(factory.closed, "the refused viewer")
        assert code == CLOSE_DEVICE
        assert reason == (f"device {PHONE} refused 0x9201 (channel 1 from"
                          " 2024-05-01T10:00:00+08:00): result 1 (failure)")
    finally:
        yield served.stop()
    served, device, opener = yield serve(connects=False, open_timeout=0.5)
    try:
        http = yield http_viewer(reactor, served.web, url())
        yield within(http.lost, "the viewer answered")
        assert http.status == 502
        assert (f"device {PHONE} did not open its playback connection (channel 1) within 0.5 s"
                in http.body.decode())  # fmt: skip
        assert opener.actions() == [2]
    finally:
        yield served.stop()


@pytest_twisted.inlineCallbacks
def test_bad_urls_tokens_and_controls_are_refused_in_words() -> None:
    """Malformed playback params are 400 (HTTP) and 4004 (WS) in words; a live token or
    another channel's is 403/4003; a control with an id that cannot be made is answered
    ok false in words, without an id not at all; a control message over 1 KiB closes the
    socket with 4004."""
    from twisted.internet import reactor

    served, device, opener = yield serve()
    try:
        bad = playback_token(speed=3)
        http = yield http_viewer(reactor, served.web, url(tok=bad))
        yield within(http.lost, "the bad request answered")
        assert http.status == 400 and "speed '3' is not one of 1, 2, 4, 8, 16" in http.body.decode()
        ws = client(reactor, served.web, url(tok=playback_token(**{"from": "2024-05-01 10:00"})))
        code, reason = yield within(ws.closed, "the WS refusal")
        assert code == CLOSE_BAD_REQUEST and "has no UTC offset" in reason
        ws = client(reactor, served.web, url(tok=token()))
        code, reason = yield within(ws.closed, "a live token refused")
        assert code == CLOSE_FORBIDDEN and "(main stream), not a playback" in reason
        ws = client(reactor, served.web, url(channel=2, tok=playback_token(channel=1)))
        code, reason = yield within(ws.closed, "another channel's token refused")
        assert code == CLOSE_FORBIDDEN
        assert device.requests == []

        factory = client(reactor, served.web, url())
        yield until(lambda: device.connection is not None, "the DVR's connection")
        device.pump(5)
        stream = playbacks_of(served.media).sessions[SESSION].stream
        yield until(lambda: stream.frames == device.frames, "the DVR's frames in")
        factory.client.control(action="jump")
        factory.client.control(id="a", action="jump")
        factory.client.control(id="b", action="seek", time="yesterday")
        factory.client.control(id="c", action="rewind", speed=3)
        yield until(lambda: len(factory.client.texts) == 3, "three answers")
        assert factory.client.texts[0]["id"] == "a" and not factory.client.texts[0]["ok"]
        assert "'jump' is not one of" in factory.client.texts[0]["error"]
        assert "is not an ISO 8601 time" in factory.client.answer("b")["error"]
        assert "speed '3' is not one of" in factory.client.answer("c")["error"]
        assert opener.actions() == []
        factory.client.control(id="d", action="pause", pad="x" * 1024)
        code, reason = yield within(factory.closed, "the oversized control")
        assert code == CLOSE_BAD_REQUEST and "at most 1024 bytes" in reason
        assert factory.client.answer("d") is None
        yield within(device.connection.lost, "the DVR released")
        assert opener.actions() == [2]
    finally:
        yield served.stop()
