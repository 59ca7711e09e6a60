"""``POST /api/v1/devices/{phone}/live`` on a real login server with media servers announced
over their AMP links: the URLs point at the least-loaded media server (or the one the
stream goes to already) and carry a viewing token that media server accepts for exactly
that stream."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest_twisted
from twisted.internet import defer

from cmsv6.db.users import add_user
from cmsv6.media.viewing import ViewRefused, allows, verify_view, view_key
from cmsv6.rpc import keys
from tests.plugins.media.test_cluster import (
    ABSENT,
    PHONE,
    Load,
    LiveCluster,
    announced,
    answer,
    sleep,
)
from tests.support.device import within
from tests.support.process import master_key


def media_key(media_id: str) -> bytes:
    """The viewing key of media server ``media_id`` (derived from its cluster key)."""
    key = keys.load(master_key()).key_for(keys.identity(keys.MEDIA, media_id))
    assert key is not None
    return view_key(key)


def token_of(url: str) -> tuple[str, str, dict[str, list[str]]]:
    """(base, path, query) of a video URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path, parse_qs(parts.query)


@defer.inlineCallbacks
def live(cluster: LiveCluster, channel: int, stream: str, phone: str = PHONE) -> Any:
    status, body = yield cluster.api("POST", f"/api/v1/devices/{phone}/live",
                                     {"channel": channel, "stream": stream})  # fmt: skip
    return status, body


@defer.inlineCallbacks
def served_by(cluster: LiveCluster, media_id: str, channel: int = 1, stream: str = "main") -> Any:
    """Wait until login sends viewers of ``stream`` of ``channel`` to ``media_id`` (load
    reports arrive every two seconds)."""
    for _ in range(400):
        status, body = yield live(cluster, channel, stream)
        if status == 200 and body["http_flv"].startswith(f"http://{media_id}.example"):
            return body
        yield sleep(0.05)
    raise AssertionError(f"login never chose {media_id}: {status} {body}")


@pytest_twisted.inlineCallbacks
def test_live_urls_carry_a_grant_for_exactly_that_stream(dsn: str, tmp_path: Path) -> None:
    """Without a media server live video is 503; with one announced, the answer's WS-FLV
    and HTTP-FLV URLs are on its public_web, for the device's channel and stream, with a
    token its viewing key accepts for that media server only and that grants exactly that
    phone, channel and stream until ``expires``; an offline device is 409; a user who does
    not see the device gets 404."""
    cluster = LiveCluster(dsn, tmp_path)
    try:
        yield cluster.start()
        status, body = yield live(cluster, 2, "sub")
        assert status == 503 and body["error"]["code"] == "media_unavailable"
        client, _ = cluster.media("media-1", Load())
        yield announced(client)
        status, body = yield live(cluster, 2, "sub")
        assert status == 200, body
        assert set(body) == {"ws_flv", "http_flv", "codec", "audio", "expires"}
        base, path, query = token_of(body["http_flv"])
        assert (base, path, query["stream"]) == ("http://media-1.example:8081",
                                                 f"/live/{PHONE}/2.flv", ["sub"])  # fmt: skip
        assert body["ws_flv"] == "ws" + body["http_flv"][4:]
        (token,) = query["token"]
        expires = datetime.fromisoformat(body["expires"]).timestamp()
        view = verify_view(media_key("media-1"), token, expires - 1, "media-1")
        assert view.expires == expires
        assert allows(view, PHONE, 2, "sub")
        assert not allows(view, PHONE, 2, "main") and not allows(view, PHONE, 1, "sub")
        assert not allows(view, ABSENT, 2, "sub")
        for key, media_id, now in ((media_key("media-2"), "media-1", expires - 1),
                                   (media_key("media-1"), "media-2", expires - 1),
                                   (media_key("media-1"), "media-1", expires + 1)):  # fmt: skip
            try:
                verify_view(key, token, now, media_id)
            except ViewRefused:
                continue
            raise AssertionError(f"the token works for {media_id} at {now}")
        status, body = yield live(cluster, 1, "main", phone=ABSENT)
        assert status == 409 and body["error"]["code"] == "device_offline"
        add_user(dsn, "sam", "sam-password", fleets=["south"])
        status, body = yield cluster.api("POST", "/api/v1/login",
                                         {"username": "sam", "password": "sam-password"})  # fmt: skip
        cluster.token = body["token"]
        status, body = yield live(cluster, 1, "main")
        assert status == 404
    finally:
        yield cluster.stop()


@pytest_twisted.inlineCallbacks
def test_least_loaded_media_server_and_a_stream_stays_put(dsn: str, tmp_path: Path) -> None:
    """With two media servers, viewers go to the one with fewer streams and viewers, and
    follow the load as it changes; a stream a device was asked to open to one media server
    keeps its viewers there, whatever the load."""
    cluster = LiveCluster(dsn, tmp_path)
    try:
        yield cluster.start()
        busy, idle = Load(streams=3, viewers=4), Load(streams=1, viewers=2)
        a, _ = cluster.media("media-a", busy)
        b, opener_b = cluster.media("media-b", idle)
        yield announced(a)
        yield announced(b)
        body = yield served_by(cluster, "media-b")
        (token,) = token_of(body["http_flv"])[2]["token"]
        expires = datetime.fromisoformat(body["expires"]).timestamp()
        assert verify_view(media_key("media-b"), token, expires - 1, "media-b").media == "media-b"
        status, answer_body = yield cluster.api("POST", "/api/v1/login",
                                                {"username": "ops", "password": "ops-password"})  # fmt: skip
        assert answer_body["media"] == {"web": "http://media-b.example:8081"}
        busy.now.update(streams=0, viewers=0)
        idle.now.update(streams=5, viewers=5)
        yield served_by(cluster, "media-a")
        # Channel 3's sub stream opened to media-b: its viewers go there.
        d = opener_b.open(PHONE, 3, "sub")
        yield answer(cluster.device, 0x9101)
        yield within(d, "the open")
        status, body = yield live(cluster, 3, "sub")
        assert body["http_flv"].startswith("http://media-b.example:8081/live/"), body
        status, body = yield live(cluster, 3, "main")
        assert body["http_flv"].startswith("http://media-a.example:8081/live/"), body
    finally:
        yield cluster.stop()


@pytest_twisted.inlineCallbacks
def test_live_answer_says_the_codecs_login_remembers(web: Any) -> None:
    """The live answer's codec and audio come from login's memory of the device's 0x1003:
    null while it has none, "h264"/"h265" and "aac" (audio the media server gives browsers
    as AAC) once it has, null audio for a codec it cannot give; never a 0x9003 of its own."""
    from twisted.internet import task

    from cmsv6.plugins.login.directory import Directory
    from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes, AvCodec
    from tests.web.support import NORTH, call, login

    directory = Directory(task.Clock())
    web.cluster.live_codecs = directory.live_codecs
    web.cluster.media = "http://media.example:8081/"
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web)
    path = f"/api/v1/devices/{NORTH}/live"

    @defer.inlineCallbacks
    def codecs() -> Any:
        reply = yield call(web, "POST", path, {"channel": 1}, token=token)
        assert reply.status == 200, reply.body
        return reply.body["codec"], reply.body["audio"]

    assert (yield codecs()) == (None, None)
    directory.remember_av(NORTH, AvAttributes(AvCodec.G726, 1, 0, 1, 320, 0, AvCodec.H264, 4, 4))
    assert (yield codecs()) == ("h264", "aac")
    directory.remember_av(NORTH, AvAttributes(AvCodec.G729, 1, 0, 1, 320, 0, AvCodec.H265, 4, 4))
    assert (yield codecs()) == ("h265", None)
    directory.remember_av(NORTH, None)  # it did not answer 0x9003
    assert (yield codecs()) == (None, None)
    assert [m for _, m, _, _ in web.cluster.sent] == []
