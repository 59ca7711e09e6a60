"""``GET /api/v1/devices/{phone}/recordings`` against the fake cluster and a real PostgreSQL:
the 0x9205 it sends (times in the device's +08:00), the 0x1205 answered as JSON (times
with +08:00 explicit, alarm bits named), recorded in ``commands``, and its errors in words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest_twisted

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import QueryResources, Resource, ResourceList
from cmsv6.rpc.commands import CommandTimeout
from tests.support.database import query
from tests.web.support import NORTH, SOUTH, Web, call, login

PATH = f"/api/v1/devices/{NORTH}/recordings"


def item(channel: int, start: datetime, minutes: int, alarm: int = 0, size: int = 1000) -> Resource:
    return Resource(channel, start, start + timedelta(minutes=minutes), alarm, 0, 1, 1, size)


def listing(*items: Resource) -> Any:
    """A device that answers every 0x9205 with ``items`` (and keeps what it was asked)."""
    asked: list[QueryResources] = []

    def respond(phone: str, msg_id: int, body: bytes) -> dict[str, Any]:
        assert msg_id == 0x9205
        asked.append(decode_body(0x9205, body))
        return {"msg_id": 0x1205, "version": 2013, "body": encode_body(ResourceList(7, items))}

    return respond, asked


@pytest_twisted.inlineCallbacks
def test_recordings_listed_in_the_devices_time(web: Web) -> None:
    """The query goes out as 0x9205 with the times converted to +08:00 and the filters
    coded; the 0x1205 comes back with its times +08:00 explicit, its alarm flags in hex and
    by name (808 bits 0-31, video bits 32-63), media/stream/storage named, and the command
    recorded as replied."""
    web.cluster.gateways[NORTH] = "gw-1"
    t0 = datetime(2026, 11, 24, 9, 30, tzinfo=BEIJING)
    respond, asked = listing(item(1, t0, 10, alarm=1 | 1 << 33 | 1 << 50, size=123456),
                             item(2, t0 + timedelta(hours=1), 5))  # fmt: skip
    web.cluster.respond = respond
    token = yield login(web)
    reply = yield call(web, "GET", f"{PATH}?channel=2&from=2026-11-24T00:00:00Z"
                       "&to=2026-11-24T12:00:00%2B08:00&alarm=0x1&media=video&stream=sub"
                       "&storage=backup&timeout=5", token=token)  # fmt: skip
    assert reply.status == 200, reply.body
    (q,) = asked
    assert q.channel == 2 and q.alarm_flags == 1
    assert (q.media_type, q.stream_type, q.storage_type) == (2, 2, 2)
    assert q.start == datetime(2026, 11, 24, 8, 0, tzinfo=BEIJING)
    assert q.end == datetime(2026, 11, 24, 12, 0, tzinfo=BEIJING)
    assert web.cluster.sent[-1][3] == 5.0
    assert reply.body["device_time_zone"] == "+08:00"
    first, second = reply.body["recordings"]
    assert first == {
        "channel": 1, "start": "2026-11-24T09:30:00+08:00", "end": "2026-11-24T09:40:00+08:00",
        "alarm": "0x0004000200000001",
        "alarms": ["emergency", "video_signal_occlusion", "bit 50"], "media": "audio_video", "stream": "main",
        "storage": "main", "size": 123456,
    }  # fmt: skip
    assert second["start"] == "2026-11-24T10:30:00+08:00" and second["alarms"] == []
    status, body = query(web.dsn, "SELECT status, body FROM commands WHERE id = %s",
                         (reply.body["command"],))[0]  # fmt: skip
    assert status == "replied" and body["type"] == "query_recordings" and body["channel"] == 2


@pytest_twisted.inlineCallbacks
def test_recordings_default_to_the_last_day_of_every_channel(web: Web) -> None:
    """Without arguments: channel 0 (all), the 24 hours up to now, any media, stream and
    storage, no alarm mask."""
    web.cluster.gateways[NORTH] = "gw-1"
    respond, asked = listing()
    web.cluster.respond = respond
    token = yield login(web)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    reply = yield call(web, "GET", PATH, token=token)
    after = datetime.now(timezone.utc)
    assert reply.status == 200 and reply.body["recordings"] == [], reply.body
    (q,) = asked
    assert (q.channel, q.alarm_flags, q.media_type, q.stream_type, q.storage_type) == (0, 0, 3, 0, 0)
    assert before <= q.end <= after and q.end - q.start == timedelta(days=1)


@pytest_twisted.inlineCallbacks
def test_recordings_errors_in_words(web: Web) -> None:
    """Bad arguments are 400 naming the argument; another fleet's device is 404; an offline
    device 409; one that does not answer 504 saying so and for how long; a refusal (or an
    acknowledgement without the list) 502 in words."""
    web.cluster.gateways.update({NORTH: "gw-1", SOUTH: "gw-1"})
    token = yield login(web)
    for bad, words in (("channel=x", "channel must be an integer from 0 to 255"),
                       ("channel=5", "channel 5 is not one of device"),
                       ("from=yesterday", "from is not an ISO 8601 time"),
                       ("from=2026-11-24T00:00:00Z&to=2026-11-23T00:00:00Z", "from must be before to"),
                       ("from=1990-01-01T00:00:00Z&to=1990-01-02T00:00:00Z", "cannot be written as BCD"),
                       ("alarm=red", "alarm must be an integer"),
                       ("media=film", 'media must be one of "audio_video", "audio", "video", "any"'),
                       ("stream=third", "stream must be one of"),
                       ("storage=cloud", "storage must be one of"),
                       ("timeout=0", "timeout must be between 1 and 60 seconds")):  # fmt: skip
        reply = yield call(web, "GET", f"{PATH}?{bad}", token=token)
        assert reply.status == 400 and words in reply.body["error"]["message"], (bad, reply.body)
    assert web.cluster.sent == []
    reply = yield call(web, "GET", f"/api/v1/devices/{SOUTH}/recordings", token=token)
    assert reply.status == 404
    assert web.cluster.sent == []

    def silent(phone: str, msg_id: int, body: bytes) -> Any:
        raise CommandTimeout("no reply")

    web.cluster.respond = silent
    reply = yield call(web, "GET", f"{PATH}?timeout=3", token=token)
    assert reply.status == 504
    assert reply.body["error"]["message"].startswith(
        f"device {NORTH} did not answer the recording query (0x9205) within 3 s")
    (status,) = query(web.dsn, "SELECT status FROM commands ORDER BY id DESC LIMIT 1")[0]
    assert status == "timeout"

    def general(result: int) -> Any:
        def respond(phone: str, msg_id: int, body: bytes) -> Any:
            answer = TerminalResponse(reply_serial=1, reply_id=msg_id, result=result)
            return {"msg_id": 0x0001, "version": 2013, "body": encode_body(answer)}

        return respond

    web.cluster.respond = general(3)
    reply = yield call(web, "GET", PATH, token=token)
    assert reply.status == 502 and reply.body["error"]["code"] == "device_refused"
    assert "result 3 (not supported)" in reply.body["error"]["message"]
    web.cluster.respond = general(0)
    reply = yield call(web, "GET", PATH, token=token)
    assert reply.status == 502 and reply.body["error"]["code"] == "no_list"
    web.cluster.gateways.clear()
    reply = yield call(web, "GET", PATH, token=token)
    assert reply.status == 409 and reply.body["error"]["message"] == f"device {NORTH} is offline"
