"""Playback, its control, talk-back, PTZ and audio/video control through the Open API,
against the fake cluster and a real PostgreSQL: the grants signed for the media server (and
what they carry), the session login remembers and checks again, the commands sent, and
every error in words."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest_twisted

from cmsv6.db.users import add_user
from cmsv6.media.viewing import allows, verify_view, view_key
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes, AvCodec
from cmsv6.rpc.commands import (
    CommandTimeout,
    DeviceOffline,
    DeviceRefused,
    NoSuchPlayback,
    Unavailable,
)
from tests.support.database import query
from tests.web.support import LIVE_EXPIRES, MEDIA_ID, MEDIA_KEY, NORTH, SOUTH, Web, call, login

DEVICE = f"/api/v1/devices/{NORTH}"
PLAY = {"channel": 2, "from": "2026-11-24T01:00:00Z", "to": "2026-11-24T02:00:00Z"}


def granted(url: str, phone: str, channel: int, stream: str) -> dict[str, Any]:
    """The params of the URL's token, checked to be the media server's grant of exactly
    ``stream`` of ``channel`` of ``phone``."""
    (token,) = parse_qs(urlsplit(url).query)["token"]
    view = verify_view(view_key(MEDIA_KEY), token, LIVE_EXPIRES - 1, MEDIA_ID)
    assert allows(view, phone, channel, stream), view
    assert view.params is not None
    return view.params


def online(web: Web, media: str = "http://media.example:8081") -> None:
    web.cluster.gateways[NORTH] = "gw-1"
    web.cluster.media = media


@pytest_twisted.inlineCallbacks
def test_playback_grants_one_session_and_controls_reach_its_media_server(web: Web) -> None:
    """A playback answer's URLs are /playback/PHONE/CHANNEL.flv on the media server with a
    token granting "playback" of that channel and carrying the session (id, times in
    +08:00, mode, speed, media, stream, storage); its control goes to that media server
    for that session, with speed and the seek time in +08:00; each new playback is a new
    session."""
    online(web)
    web.cluster.codecs[NORTH] = ("h265", "aac")
    token = yield login(web)
    reply = yield call(web, "POST", f"{DEVICE}/playback",
                       {**PLAY, "mode": "fast_forward", "speed": 4, "stream": "sub"}, token=token)
    assert reply.status == 200, reply.body
    body = reply.body
    session = body["playback"]
    assert len(session) >= 16 and body["control"] == f"/api/v1/playback/{session}/control"
    assert body["codec"] == "h265" and body["expires"] == "2100-01-01T00:00:00+00:00"
    assert urlsplit(body["http_flv"])[:3] == ("http", "media.example:8081", f"/playback/{NORTH}/2.flv")
    assert body["ws_flv"] == "ws" + body["http_flv"][4:]
    assert granted(body["http_flv"], NORTH, 2, "playback") == {
        "id": session, "from": "2026-11-24T09:00:00+08:00", "to": "2026-11-24T10:00:00+08:00",
        "mode": "fast_forward", "speed": 4, "media": "audio_video", "stream": "sub",
        "storage": "any",
    }  # fmt: skip
    again = yield call(web, "POST", f"{DEVICE}/playback", {**PLAY, "to": None}, token=token)
    assert again.body["playback"] != session
    assert granted(again.body["http_flv"], NORTH, 2, "playback")["to"] is None
    for control, sent in (({"action": "pause"}, ("pause", None, None)),
                          ({"action": "fast_forward", "speed": 16}, ("fast_forward", 16, None)),
                          ({"action": "seek", "time": "2026-11-24T01:30:00Z"},
                           ("seek", None, "2026-11-24T09:30:00+08:00"))):  # fmt: skip
        reply = yield call(web, "POST", body["control"], control, token=token)
        assert reply.status == 200 and reply.body == {"ok": True}, reply.body
        assert web.cluster.controls[-1] == (MEDIA_ID, session, *sent)


@pytest_twisted.inlineCallbacks
def test_playback_refused_in_words(web: Web) -> None:
    """Playback requests that are not valid are 400 naming what is wrong; another fleet's
    device is 404; offline 409; no media server 503."""
    online(web)
    token = yield login(web)
    for bad, words in (({**PLAY, "channel": 9}, "channel 9 is not one of device"),
                       ({**PLAY, "channel": "1"}, "channel must be an integer"),
                       ({**PLAY, "speed": 3}, "speed must be one of 1, 2, 4, 8, 16"),
                       ({**PLAY, "mode": "slow"}, 'mode must be one of "normal", "fast_forward",'
                                                  ' "rewind", "keyframes", "single_frame"'),
                       ({**PLAY, "from": PLAY["to"]}, "from must be before to"),
                       ({**PLAY, "from": None}, "from must be an ISO 8601 time"),
                       ({**PLAY, "media": "any"}, "media must be one of"),
                       ({**PLAY, "storage": "tape"}, "storage must be one of")):  # fmt: skip
        reply = yield call(web, "POST", f"{DEVICE}/playback", bad, token=token)
        assert reply.status == 400 and words in reply.body["error"]["message"], (bad, reply.body)
    reply = yield call(web, "POST", f"/api/v1/devices/{SOUTH}/playback", PLAY, token=token)
    assert reply.status == 404
    web.cluster.media = None
    reply = yield call(web, "POST", f"{DEVICE}/playback", PLAY, token=token)
    assert reply.status == 503 and reply.body["error"]["code"] == "media_unavailable"
    web.cluster.gateways.clear()
    reply = yield call(web, "POST", f"{DEVICE}/playback", PLAY, token=token)
    assert reply.status == 409
    assert web.cluster.views == []


@pytest_twisted.inlineCallbacks
def test_playback_control_errors(web: Web) -> None:
    """An unknown session is 404, and so is a session for a user who may not see its device
    (checked again at each control); a bad action or speed 400; the media server's answers:
    no such playback 404, the device's refusal 502, offline 409, no answer 504, the media
    server gone 503, each in words."""
    online(web)
    token = yield login(web, "root")
    reply = yield call(web, "POST", f"{DEVICE}/playback", PLAY, token=token)
    control = reply.body["control"]
    reply = yield call(web, "POST", "/api/v1/playback/nosuchsessionatall/control",
                       {"action": "pause"}, token=token)  # fmt: skip
    assert reply.status == 404 and "no such playback session" in reply.body["error"]["message"]
    add_user(web.dsn, "sam", "sam-password", fleets=["south"])
    sam = yield login(web, "sam", "sam-password")
    reply = yield call(web, "POST", control, {"action": "pause"}, token=sam)
    assert reply.status == 404
    olga = yield login(web, "olga")  # north: she may
    reply = yield call(web, "POST", control, {"action": "pause"}, token=olga)
    assert reply.status == 200
    for bad, words in (({"action": "dance"}, "action must be one of"),
                       ({"action": "fast_forward"}, "fast_forward needs a speed"),
                       ({"action": "rewind", "speed": 3}, "speed must be one of"),
                       ({"action": "seek"}, "time must be an ISO 8601 time"),
                       ({"action": "pause", "time": "2026-11-24T01:30:00Z"}, "time is for seek only")):  # fmt: skip
        reply = yield call(web, "POST", control, bad, token=token)
        assert reply.status == 400 and words in reply.body["error"]["message"], (bad, reply.body)
    for error, status, words in ((NoSuchPlayback("over"), 404, "has no playback"),
                                 (DeviceRefused(f"device {NORTH} refused 0x9202: result 1 (failure)"),
                                  502, "result 1 (failure)"),
                                 (DeviceOffline("gone"), 409, "is offline"),
                                 (CommandTimeout("no answer"), 504, "did not answer the playback control"),
                                 (Unavailable("media server media-1 is gone"), 503, "is unavailable")):  # fmt: skip

        def fail(media: str, session: str, error: Exception = error) -> None:
            raise error

        web.cluster.control = fail
        reply = yield call(web, "POST", control, {"action": "pause"}, token=token)
        assert reply.status == status and words in reply.body["error"]["message"], reply.body


def accept(web: Web) -> list[tuple[int, bytes]]:
    """Answer every command with a general response result 0; the (msg_id, body) sent."""
    sent: list[tuple[int, bytes]] = []

    def respond(phone: str, msg_id: int, body: bytes) -> Any:
        sent.append((msg_id, body))
        return web.cluster.general_response(phone, msg_id, body)

    web.cluster.respond = respond
    return sent


@pytest_twisted.inlineCallbacks
def test_talk_grants_a_session_and_refuses_a_device_without_audio_output(web: Web) -> None:
    """The talk answer is the media server's wss:// talk URL (its public_web is https) with
    a token granting "talk" of that channel with a session id and broadcast, the device's
    audio codec from login's memory, and the PCM format; a device whose 0x1003 says it has
    no audio output is 409 in words; offline 409, no media server 503."""
    online(web, "https://media.example:8443")
    token = yield login(web)
    reply = yield call(web, "POST", f"{DEVICE}/talk", {"channel": 1, "broadcast": True}, token=token)
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"ws", "audio_codec", "format", "expires"}
    assert urlsplit(reply.body["ws"])[:3] == ("wss", "media.example:8443", f"/talk/{NORTH}/1")
    params = granted(reply.body["ws"], NORTH, 1, "talk")
    assert params["broadcast"] is True and len(params["id"]) >= 16
    assert reply.body["audio_codec"] is None
    assert reply.body["format"] == {"encoding": "pcm_s16le", "rate": 8000, "channels": 1,
                                    "frame_ms": [20, 40]}  # fmt: skip
    web.cluster.av[NORTH] = AvAttributes(AvCodec.G726, 1, 0, 1, 320, 1, AvCodec.H264, 1, 4)
    reply = yield call(web, "POST", f"{DEVICE}/talk", {"channel": 36}, token=token)
    assert reply.status == 200 and reply.body["audio_codec"] == "g726"
    assert granted(reply.body["ws"], NORTH, 36, "talk")["broadcast"] is False
    web.cluster.av[NORTH] = AvAttributes(AvCodec.G711A, 1, 0, 1, 320, 0, AvCodec.H264, 1, 4)
    reply = yield call(web, "POST", f"{DEVICE}/talk", {"channel": 1}, token=token)
    assert reply.status == 409 and reply.body["error"]["code"] == "no_audio_output"
    assert "has no audio output" in reply.body["error"]["message"]
    del web.cluster.av[NORTH]
    for bad, words in (({"channel": 9}, "channel 9 is not one of"),
                       ({"channel": 0}, "channel must be an integer from 1 to 255"),
                       ({"broadcast": "yes"}, "broadcast must be true or false")):  # fmt: skip
        reply = yield call(web, "POST", f"{DEVICE}/talk", bad, token=token)
        assert reply.status == 400 and words in reply.body["error"]["message"], reply.body
    reply = yield call(web, "POST", f"/api/v1/devices/{SOUTH}/talk", {}, token=token)
    assert reply.status == 404
    web.cluster.media = None
    reply = yield call(web, "POST", f"{DEVICE}/talk", {}, token=token)
    assert reply.status == 503
    web.cluster.gateways.clear()
    reply = yield call(web, "POST", f"{DEVICE}/talk", {}, token=token)
    assert reply.status == 409 and reply.body["error"]["code"] == "device_offline"


@pytest_twisted.inlineCallbacks
def test_live_and_playback_urls_are_secure_when_the_media_server_is(web: Web) -> None:
    """With an https:// public_web, live and playback answer wss:// and https:// URLs."""
    online(web, "https://media.example:8443/")
    token = yield login(web)
    for path, body in (("live", {"channel": 1}), ("playback", PLAY)):
        reply = yield call(web, "POST", f"{DEVICE}/{path}", body, token=token)
        assert reply.body["ws_flv"].startswith("wss://media.example:8443/"), reply.body
        assert reply.body["http_flv"].startswith("https://media.example:8443/"), reply.body


@pytest_twisted.inlineCallbacks
def test_ptz_and_av_control_send_their_messages(web: Web) -> None:
    """Each PTZ action goes out as its message (0x9301-0x9306) with the named values coded
    as the standard says, 0x9102 switches a stream; each is recorded and answered ok; bad
    values are 400 naming the field, a refusal 502, another fleet's device 404."""
    online(web)
    sent = accept(web)
    token = yield login(web)
    for body, msg_id, fields in (
        ({"action": "rotate", "direction": "left", "speed": 200}, 0x9301, {"direction": 3, "speed": 200}),
        ({"action": "focus", "adjust": "decrease"}, 0x9302, {"adjust": 1}),
        ({"action": "iris", "adjust": "increase"}, 0x9303, {"adjust": 0}),
        ({"action": "wiper", "state": "on"}, 0x9304, {"action": 1}),
        ({"action": "infrared", "state": "off"}, 0x9305, {"action": 0}),
        ({"action": "zoom", "adjust": "out"}, 0x9306, {"adjust": 1}),
    ):  # fmt: skip
        reply = yield call(web, "POST", f"{DEVICE}/ptz", {"channel": 2, **body}, token=token)
        assert reply.status == 200 and reply.body["ok"] is True, (body, reply.body)
        assert sent[-1][0] == msg_id
        decoded = decode_body(msg_id, sent[-1][1])
        assert decoded.channel == 2 and {k: getattr(decoded, k) for k in fields} == fields
    reply = yield call(web, "POST", f"{DEVICE}/av-control",
                       {"channel": 1, "action": "switch_stream", "stream": "sub"}, token=token)  # fmt: skip
    assert reply.status == 200, reply.body
    control = decode_body(0x9102, sent[-1][1])
    assert (control.channel, control.command, control.switch_stream) == (1, 1, 1)
    (row,) = query(web.dsn, "SELECT msg_id, status FROM commands WHERE id = %s", (reply.body["command"],))
    assert row == (0x9102, "replied")
    for path, bad, words in (("ptz", {"channel": 1, "action": "spin"}, "action must be one of"),
                             ("ptz", {"channel": 1, "action": "rotate", "direction": "around"},
                              "direction must be one of"),
                             ("ptz", {"channel": 1, "action": "rotate", "direction": "up", "speed": 300},
                              "speed must be from 0 to 255"),
                             ("ptz", {"channel": 5, "action": "wiper", "state": "on"}, "channel 5 is not one of"),
                             ("ptz", {"channel": 1, "action": "zoom", "adjust": "sideways"}, "adjust must be one of"),
                             ("av-control", {"channel": 1, "action": "explode"}, "action must be one of"),
                             ("av-control", {"channel": 1, "action": "switch_stream", "stream": "x"},
                              "stream must be one of")):  # fmt: skip
        reply = yield call(web, "POST", f"{DEVICE}/{path}", bad, token=token)
        assert reply.status == 400 and words in reply.body["error"]["message"], (bad, reply.body)

    def refuse(phone: str, msg_id: int, body: bytes) -> Any:
        answer = TerminalResponse(reply_serial=1, reply_id=msg_id, result=1)
        return {"msg_id": 0x0001, "version": 2013, "body": encode_body(answer)}

    web.cluster.respond = refuse
    reply = yield call(web, "POST", f"{DEVICE}/ptz", {"channel": 1, "action": "wiper", "state": "on"},
                       token=token)  # fmt: skip
    assert reply.status == 502 and "result 1 (failure)" in reply.body["error"]["message"]
    reply = yield call(web, "POST", f"/api/v1/devices/{SOUTH}/ptz", {"channel": 1, "action": "wiper",
                       "state": "on"}, token=token)  # fmt: skip
    assert reply.status == 404


@pytest_twisted.inlineCallbacks
def test_av_attributes_asked_decoded_and_remembered(web: Web) -> None:
    """0x9003 goes out; the 0x1003 comes back with codec names and numbers, and login
    remembers it (the talk answer then says its codec); no answer is 504, offline 409."""
    online(web)
    attributes = AvAttributes(AvCodec.G711A, 1, 0, 1, 320, 1, AvCodec.H265, 2, 4)

    def respond(phone: str, msg_id: int, body: bytes) -> Any:
        assert msg_id == 0x9003
        return {"msg_id": 0x1003, "version": 2013, "body": encode_body(attributes)}

    web.cluster.respond = respond
    token = yield login(web)
    reply = yield call(web, "GET", f"{DEVICE}/av-attributes", token=token)
    assert reply.status == 200, reply.body
    assert {k: v for k, v in reply.body.items() if k != "command"} == {
        "audio_codec": "g711a", "audio_channels": 1, "audio_sample_rate": 8000,
        "audio_sample_bits": 16, "audio_frame_length": 320, "audio_output": True,
        "video_codec": "h265", "max_audio_channels": 2, "max_video_channels": 4,
    }  # fmt: skip
    assert web.cluster.av[NORTH] == attributes

    def silent(phone: str, msg_id: int, body: bytes) -> Any:
        raise CommandTimeout("no reply")

    web.cluster.respond = silent
    reply = yield call(web, "GET", f"{DEVICE}/av-attributes?timeout=2", token=token)
    assert reply.status == 504 and "within 2 s" in reply.body["error"]["message"]
    web.cluster.gateways.clear()
    reply = yield call(web, "GET", f"{DEVICE}/av-attributes", token=token)
    assert reply.status == 409


def test_playback_sessions_expire_and_are_bounded() -> None:
    """A session lives ``lifetime`` seconds from when it was made or last used, and past
    ``limit`` sessions the least recently used goes."""
    from cmsv6.web.playback import PlaybackSessions

    sessions = PlaybackSessions(limit=2, lifetime=100.0)
    sessions.add("a", "media-1", NORTH, 1, now=0.0)
    sessions.add("b", "media-1", NORTH, 1, now=0.0)
    assert sessions.get("a", now=50.0) is not None  # used: lives to 150
    assert sessions.get("b", now=100.0) is None  # expired
    assert sessions.get("a", now=149.0) is not None
    sessions.add("c", "media-2", NORTH, 2, now=150.0)
    sessions.add("d", "media-2", NORTH, 2, now=151.0)
    assert len(sessions) == 2 and sessions.get("a", now=152.0) is None
    assert sessions.get("c", now=152.0).media == "media-2"  # type: ignore[union-attr]
    assert len(PlaybackSessions.new_id()) >= 16
