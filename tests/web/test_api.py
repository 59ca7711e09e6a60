"""The Open API end to end: a real PostgreSQL, the site on a loopback port, requests through
twisted.web's Agent, and a fake cluster standing in for the gateways."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest_twisted

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.location import LocationQueryResponse
from cmsv6.protocols.jt808.messages.params import ParametersResponse
from cmsv6.rpc.commands import CommandTimeout
from tests.support.device import location
from tests.support.database import query
from tests.web.support import (
    LONE, NORTH, PASSWORD, SOUTH, T0, Web, add_alarm, call, login, position_row,
    store_positions,
)  # fmt: skip

# -- login and tokens ----------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_login_returns_token_stored_hashed(web: Web) -> None:
    """A right password gives a token, its expiry and the media server; only the token's
    SHA-256 is stored."""
    web.cluster.media = "http://media.example:8081"
    reply = yield call(web, "POST", "/api/v1/login", {"username": "olga", "password": PASSWORD})
    assert reply.status == 200
    body = reply.body
    assert body["media"] == {"web": "http://media.example:8081"}
    assert body["user"] == {"name": "olga", "role": "operator"}
    expires = datetime.fromisoformat(body["expires"])
    assert datetime.now(timezone.utc) + timedelta(hours=11) < expires
    assert expires < datetime.now(timezone.utc) + timedelta(hours=13)
    ((stored,),) = query(web.dsn, "SELECT token_hash FROM api_tokens")
    assert bytes(stored) == hashlib.sha256(body["token"].encode()).digest()
    me = yield call(web, "GET", "/api/v1/me", token=body["token"])
    assert (me.status, me.body) == (200, {"name": "olga", "role": "operator"})


@pytest_twisted.inlineCallbacks
def test_login_media_null_without_media_server(web: Web) -> None:
    """With no media server the login still succeeds and says so with null."""
    reply = yield call(web, "POST", "/api/v1/login", {"username": "root", "password": PASSWORD})
    assert reply.status == 200 and reply.body["media"] == {"web": None}


@pytest_twisted.inlineCallbacks
def test_login_wrong_password_or_user(web: Web) -> None:
    """A wrong password and an unknown user get the same 401 answer."""
    wrong = yield call(web, "POST", "/api/v1/login", {"username": "olga", "password": "nope-nope"})
    unknown = yield call(web, "POST", "/api/v1/login", {"username": "nobody", "password": "x"})
    assert wrong.status == unknown.status == 401
    assert wrong.body == unknown.body
    assert wrong.body["error"]["code"] == "bad_credentials"
    assert query(web.dsn, "SELECT count(*) FROM api_tokens") == [(0,)]


@pytest_twisted.inlineCallbacks
def test_login_of_a_disabled_user(web: Web) -> None:
    """A disabled user with the right password is told so (403 user_disabled) and gets no
    token; with a wrong password they learn nothing more than anyone (401)."""
    from cmsv6.db.users import disable_user

    disable_user(web.dsn, "olga")
    right = yield call(web, "POST", "/api/v1/login", {"username": "olga", "password": PASSWORD})
    wrong = yield call(web, "POST", "/api/v1/login", {"username": "olga", "password": "nope-nope"})
    assert (right.status, right.body["error"]["code"]) == (403, "user_disabled")
    assert "disabled" in right.body["error"]["message"]
    assert (wrong.status, wrong.body["error"]["code"]) == (401, "bad_credentials")
    assert query(web.dsn, "SELECT count(*) FROM api_tokens") == [(0,)]


@pytest_twisted.inlineCallbacks
def test_login_rate_limited(web: Web) -> None:
    """Five failed logins for a name from one address slow it there: even the right
    password from that address then gets 429 with Retry-After."""
    for _ in range(5):
        reply = yield call(web, "POST", "/api/v1/login", {"username": "olga", "password": "bad"})
        assert reply.status == 401
    reply = yield call(web, "POST", "/api/v1/login", {"username": "olga", "password": PASSWORD})
    assert reply.status == 429
    assert reply.body["error"]["code"] == "too_many_attempts"
    assert 1 <= int(reply.headers.getRawHeaders(b"retry-after")[0]) <= 60


@pytest_twisted.inlineCallbacks
def test_login_bad_requests(web: Web) -> None:
    """A body that is not JSON, not an object, or lacks the fields is a 400."""
    for raw in (b"{not json", b"[1, 2]", b'{"username": "olga"}', b"\xff\xfe"):
        reply = yield call(web, "POST", "/api/v1/login", raw=raw)
        assert reply.status == 400, raw
        assert set(reply.body["error"]) == {"code", "message"}


@pytest_twisted.inlineCallbacks
def test_body_too_large(web: Web) -> None:
    """A body over 64 KiB is refused with 413."""
    reply = yield call(web, "POST", "/api/v1/login", raw=b'{"username": "' + b"a" * 70_000 + b'"}')
    assert reply.status == 413 and reply.body["error"]["code"] == "too_large"


@pytest_twisted.inlineCallbacks
def test_requests_need_a_valid_token(web: Web) -> None:
    """No token, an unknown token, an expired token and a revoked token all get 401."""
    reply = yield call(web, "GET", "/api/v1/devices")
    assert reply.status == 401 and reply.body["error"]["code"] == "unauthorized"
    reply = yield call(web, "GET", "/api/v1/devices", token="not-a-token")
    assert reply.status == 401
    token = yield login(web)
    reply = yield call(web, "GET", "/api/v1/devices", token=token)
    assert reply.status == 200
    query(web.dsn, "UPDATE api_tokens SET expires = now() - interval '1 second'")
    reply = yield call(web, "GET", "/api/v1/devices", token=token)
    assert reply.status == 401
    token = yield login(web)
    reply = yield call(web, "POST", "/api/v1/logout", token=token)
    assert reply.status == 200
    reply = yield call(web, "GET", "/api/v1/devices", token=token)
    assert reply.status == 401


@pytest_twisted.inlineCallbacks
def test_unknown_route_and_method(web: Web) -> None:
    """An unknown path is 404 and a known path with another method 405, both as JSON."""
    reply = yield call(web, "GET", "/api/v1/nothing")
    assert reply.status == 404 and reply.body["error"]["code"] == "no_route"
    reply = yield call(web, "DELETE", "/api/v1/devices")
    assert reply.status == 405 and reply.headers.getRawHeaders(b"allow") == [b"GET"]


# -- devices and visibility ----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_admin_sees_every_device_with_online_state(web: Web) -> None:
    """An admin lists every device, with online/gateway from the cluster and the last
    position from the database."""
    web.cluster.gateways = {NORTH: "gw-1"}
    yield store_positions(web, [position_row(web.device_id(NORTH), T0, lat=22.25, lon=114.5)])
    token = yield login(web, "root")
    reply = yield call(web, "GET", "/api/v1/devices", token=token)
    assert reply.status == 200
    by_phone = {d["phone"]: d for d in reply.body}
    assert set(by_phone) == {NORTH, SOUTH, LONE}
    north = by_phone[NORTH]
    assert (north["plate"], north["fleet"], north["online"], north["gateway"]) == (
        "N-1", "north", True, "gw-1"
    )
    assert north["last_position"]["latitude"] == 22.25
    assert north["last_position"]["time"] == T0.isoformat()
    assert by_phone[SOUTH]["online"] is False and by_phone[SOUTH]["gateway"] is None
    assert by_phone[LONE]["last_position"] is None and by_phone[LONE]["fleet"] is None
    assert north["disabled"] is None


@pytest_twisted.inlineCallbacks
def test_a_disabled_device_says_so(web: Web) -> None:
    """A device an admin disabled is still listed, with when it was disabled."""
    from cmsv6.db.devices import disable_device

    disable_device(web.dsn, SOUTH)
    token = yield login(web, "root")
    reply = yield call(web, "GET", f"/api/v1/devices/{SOUTH}", token=token)
    assert reply.status == 200
    assert datetime.fromisoformat(reply.body["disabled"]) <= datetime.now(timezone.utc)


@pytest_twisted.inlineCallbacks
def test_operator_sees_only_their_fleets(web: Web) -> None:
    """An operator lists only their fleets' devices; another fleet's device answers 404
    exactly like a device that does not exist, on every route."""
    token = yield login(web, "olga")
    reply = yield call(web, "GET", "/api/v1/devices", token=token)
    assert [d["phone"] for d in reply.body] == [NORTH]
    reply = yield call(web, "GET", f"/api/v1/devices/0{NORTH}", token=token)
    assert reply.status == 200 and reply.body["phone"] == NORTH
    hidden = yield call(web, "GET", f"/api/v1/devices/{SOUTH}", token=token)
    missing = yield call(web, "GET", "/api/v1/devices/13899999999", token=token)
    assert hidden.status == missing.status == 404
    assert hidden.body == missing.body
    web.cluster.gateways = {SOUTH: "gw-1"}
    web.cluster.media = "http://m:8081"
    for method, path, body in [
        ("GET", f"/api/v1/devices/{SOUTH}/positions", None),
        ("POST", f"/api/v1/devices/{SOUTH}/commands", {"type": "query_position"}),
        ("POST", f"/api/v1/devices/{SOUTH}/live", {"channel": 1}),
        ("GET", f"/api/v1/alarms?device={SOUTH}", None),
    ]:
        reply = yield call(web, method, path, body, token=token)
        assert reply.status == 404, path
    assert web.cluster.sent == []


# -- positions -----------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_positions_paged_by_time(web: Web) -> None:
    """Positions come oldest first in pages of ``limit``; following ``next`` yields each
    position once, including two with the same time on a page boundary."""
    dev = web.device_id(NORTH)
    rows = [position_row(dev, T0 + timedelta(seconds=10 * i), lat=20 + i / 100) for i in range(25)]
    rows.append(position_row(dev, T0 + timedelta(seconds=90), lat=29.99, tag="twin"))
    rows.append(position_row(web.device_id(SOUTH), T0, lat=1.0))
    yield store_positions(web, rows)
    token = yield login(web)
    seen: list[tuple[str, float]] = []
    after = ""
    pages = 0
    while True:
        args = f"from={T0.isoformat()}&limit=5" + (f"&after={after}" if after else "")
        args = args.replace("+", "%2B")
        reply = yield call(web, "GET", f"/api/v1/devices/{NORTH}/positions?{args}", token=token)
        assert reply.status == 200, reply.body
        pages += 1
        seen += [(p["time"], p["latitude"]) for p in reply.body["positions"]]
        after = reply.body["next"]
        if after is None:
            break
    assert len(seen) == 26 and len(set(seen)) == 26
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)
    assert pages == 6
    assert 1.0 not in {lat for _, lat in seen}


@pytest_twisted.inlineCallbacks
def test_positions_time_range_and_arguments(web: Web) -> None:
    """from is inclusive and to exclusive; bad times and limits are 400."""
    dev = web.device_id(NORTH)
    yield store_positions(web, [position_row(dev, T0 + timedelta(minutes=i)) for i in range(10)])
    token = yield login(web)
    start = (T0 + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (T0 + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reply = yield call(web, "GET", f"/api/v1/devices/{NORTH}/positions?from={start}&to={end}",
                       token=token)
    times = [p["time"] for p in reply.body["positions"]]
    assert times == [(T0 + timedelta(minutes=i)).isoformat() for i in (2, 3, 4)]
    assert reply.body["next"] is None
    for bad in ("from=yesterday", "limit=0", "limit=100000", "limit=x",
                f"from={end}&to={start}", "after=garbage~zz"):
        reply = yield call(web, "GET", f"/api/v1/devices/{NORTH}/positions?{bad}", token=token)
        assert reply.status == 400, bad


# -- alarms --------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_alarms_listed_by_visibility_and_filters(web: Web) -> None:
    """Alarms are listed for visible devices only, filtered by device and state."""
    north, south = web.device_id(NORTH), web.device_id(SOUTH)
    a1 = add_alarm(web.dsn, north, "bit:emergency", T0)
    a2 = add_alarm(web.dsn, north, "bit:overspeed", T0 + timedelta(minutes=1), state="handled")
    add_alarm(web.dsn, south, "bit:emergency", T0)
    token = yield login(web)
    since = "from=2026-11-25T00:00:00Z"
    reply = yield call(web, "GET", f"/api/v1/alarms?{since}", token=token)
    assert [a["id"] for a in reply.body["alarms"]] == [a1, a2]
    assert reply.body["alarms"][0]["details"] == {"speed": 90}
    reply = yield call(web, "GET", f"/api/v1/alarms?{since}&state=new&device={NORTH}", token=token)
    assert [a["id"] for a in reply.body["alarms"]] == [a1]
    admin = yield login(web, "root")
    reply = yield call(web, "GET", f"/api/v1/alarms?{since}&limit=2", token=admin)
    assert len(reply.body["alarms"]) == 2 and reply.body["next"] is not None
    reply = yield call(web, "GET", f"/api/v1/alarms?{since}&limit=2&after={reply.body['next']}",
                       token=admin)
    assert len(reply.body["alarms"]) == 1
    reply = yield call(web, "GET", "/api/v1/alarms?state=bogus", token=token)
    assert reply.status == 400


@pytest_twisted.inlineCallbacks
def test_handle_alarm_records_user_time_note_and_audit(web: Web) -> None:
    """Handling an alarm sets its state with the user, time and note, and writes an audit
    row; an alarm of a device the user may not see is 404 and stays untouched."""
    mine = add_alarm(web.dsn, web.device_id(NORTH), "bit:emergency", T0)
    theirs = add_alarm(web.dsn, web.device_id(SOUTH), "bit:emergency", T0)
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/alarms/{mine}",
                       {"state": "handled", "note": "called the driver"}, token=token)
    assert reply.status == 200, reply.body
    assert (reply.body["state"], reply.body["handled_by"], reply.body["note"]) == (
        "handled", "olga", "called the driver"
    )
    assert reply.body["handled"] is not None
    ((action, details),) = query(web.dsn, "SELECT action, details FROM audit a JOIN users u"
                               " ON u.id = a.user_id WHERE u.name = 'olga'")
    assert action == "alarm.handle"
    assert details == {"alarm": mine, "phone": NORTH, "state": "handled", "note": "called the driver"}
    reply = yield call(web, "POST", f"/api/v1/alarms/{theirs}", {"state": "dismissed"}, token=token)
    assert reply.status == 404
    assert query(web.dsn, "SELECT state FROM alarms WHERE id = %s", (theirs,)) == [("new",)]
    for body in ({"state": "new"}, {"state": "closed"}, {"state": "handled", "note": 5}):
        reply = yield call(web, "POST", f"/api/v1/alarms/{mine}", body, token=token)
        assert reply.status == 400, body
    reply = yield call(web, "POST", "/api/v1/alarms/abc", {"state": "handled"}, token=token)
    assert reply.status == 404


# -- commands ------------------------------------------------------------------------------


def _commands(dsn: str) -> list[tuple[Any, ...]]:
    return query(dsn, "SELECT status, msg_id, body, reply, finished IS NOT NULL FROM commands"
               " ORDER BY id")


@pytest_twisted.inlineCallbacks
def test_command_replied(web: Web) -> None:
    """A text command is encoded as 0x8300, sent through the cluster, and the device's reply
    comes back decoded; the command is recorded as replied with the reply."""
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "text", "text": "请减速 slow down"}, token=token)
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "replied"
    assert reply.body["reply"]["msg_id"] == "0x0001"
    assert reply.body["reply"]["body"] == {"reply_serial": 1, "reply_id": "0x8300", "result": 0}
    ((phone, msg_id, body, timeout),) = web.cluster.sent
    assert (phone, msg_id, timeout) == (NORTH, 0x8300, 10.0)
    assert decode_body(0x8300, body, 2013).text == "请减速 slow down"
    ((status, mid, command, stored_reply, finished),) = _commands(web.dsn)
    assert (status, mid, finished) == ("replied", 0x8300, True)
    assert command["text"] == "请减速 slow down"
    assert stored_reply == reply.body["reply"]
    # The gateway is told who asked and which row this is (it marks that row sent rather
    # than recording the command a second time).
    ((row_id,),) = query(web.dsn, "SELECT id FROM commands", ())
    assert web.cluster.sent_as == [("olga", row_id)]


@pytest_twisted.inlineCallbacks
def test_command_in_both_protocol_versions(web: Web) -> None:
    """A command goes to the cluster with a 2013 body and a 2019 one (0x8300 with its text
    type), whatever version the database has for the device: the gateway sends the one of
    the device's live session."""
    query(web.dsn, "UPDATE devices SET protocol = 2013 WHERE phone = %s", (NORTH,))
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "text", "text": "hello", "text_type": 2}, token=token)
    assert reply.status == 200
    assert decode_body(0x8300, web.cluster.sent[0][2], 2013).text == "hello"
    decoded = decode_body(0x8300, web.cluster.sent_2019[0], 2019)
    assert (decoded.text, decoded.text_type) == ("hello", 2)


@pytest_twisted.inlineCallbacks
def test_command_query_parameters_reply_decoded(web: Web) -> None:
    """query_parameters with ids is 0x8106; the 0x0104 reply is decoded parameter by
    parameter."""
    web.cluster.gateways = {NORTH: "gw-1"}

    def respond(phone: str, msg_id: int, body: bytes) -> dict[str, Any]:
        assert decode_body(msg_id, body).ids == (0x0001, 0x0013)
        reply = ParametersResponse(7, {0x0001: 30, 0x0013: "10.0.0.1:7611"})
        return {"msg_id": 0x0104, "version": 2013, "body": encode_body(reply)}

    web.cluster.respond = respond
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "query_parameters", "ids": [1, "0x0013"]}, token=token)
    assert reply.status == 200, reply.body
    assert web.cluster.sent[0][1] == 0x8106
    assert reply.body["reply"]["msg_id"] == "0x0104"
    assert reply.body["reply"]["body"]["params"] == [["0x0001", 30], ["0x0013", "10.0.0.1:7611"]]


@pytest_twisted.inlineCallbacks
def test_command_query_position(web: Web) -> None:
    """query_position is 0x8201 with an empty body; the 0x0201 reply's location is decoded."""
    web.cluster.gateways = {NORTH: "gw-1"}
    web.cluster.respond = lambda phone, msg_id, body: {
        "msg_id": 0x0201, "version": 2013,
        "body": encode_body(LocationQueryResponse(3, location(lat=31.25))),
    }  # fmt: skip
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "query_position"}, token=token)
    assert reply.status == 200
    assert web.cluster.sent[0][1:3] == (0x8201, b"")
    assert reply.body["reply"]["body"]["location"]["latitude"] == 31.25


@pytest_twisted.inlineCallbacks
def test_command_other_kinds_encode(web: Web) -> None:
    """set_parameters, take_photo and terminal_control are encoded as 0x8103, 0x8801 and
    0x8105 with the given fields (sent by an admin: 0x8105 and server parameters are
    admin-only, tests/web/test_logins.py)."""
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web, "root")
    for command in (
        {"type": "set_parameters", "params": {"0x0029": 15, "0x0013": "h:1", "0xF001": {"hex": "0a0b"}}},
        {"type": "take_photo", "channel": 2, "count": 3, "interval": 5},
        {"type": "terminal_control", "command": 4},
    ):
        reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands", command, token=token)
        assert reply.status == 200, (command, reply.body)
    (p, s8103), (_, s8801), (_, s8105) = [(s[1], decode_body(s[1], s[2])) for s in web.cluster.sent]
    assert p == 0x8103 and s8103.as_dict() == {0x29: 15, 0x13: "h:1", 0xF001: b"\x0a\x0b"}
    assert (s8801.channel, s8801.command, s8801.interval, s8801.quality) == (2, 3, 5, 5)
    assert (s8105.command, s8105.parameters) == (4, "")


@pytest_twisted.inlineCallbacks
def test_command_device_offline_409(web: Web) -> None:
    """A command to an offline device is 409 device_offline and recorded as offline."""
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "query_position"}, token=token)
    assert reply.status == 409 and reply.body["error"]["code"] == "device_offline"
    assert [row[0] for row in _commands(web.dsn)] == ["offline"]


@pytest_twisted.inlineCallbacks
def test_command_timeout_504(web: Web) -> None:
    """A device that does not answer gives 504 timeout, recorded as timeout."""
    web.cluster.gateways = {NORTH: "gw-1"}

    def no_answer(phone: str, msg_id: int, body: bytes) -> Any:
        raise CommandTimeout("no reply")

    web.cluster.respond = no_answer
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "query_position", "timeout": 2}, token=token)
    assert reply.status == 504 and reply.body["error"]["code"] == "timeout"
    assert web.cluster.sent[0][3] == 2.0
    assert [row[0] for row in _commands(web.dsn)] == ["timeout"]


@pytest_twisted.inlineCallbacks
def test_bad_commands_400(web: Web) -> None:
    """Unknown types, missing or out-of-range fields, and text that GB18030 cannot hold are 400
    bad_command; nothing is sent or recorded."""
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web)
    for command in (
        {"type": "reboot"}, {}, {"type": "text"}, {"type": "text", "text": 5},
        {"type": "take_photo"}, {"type": "take_photo", "channel": 300},
        {"type": "terminal_control", "command": "x"},
        {"type": "set_parameters", "params": {"0x0029": "not a number"}},
        {"type": "set_parameters", "params": {}},
        {"type": "query_parameters", "ids": ["zz"]},
        {"type": "text", "text": "\ud800"},
        {"type": "query_position", "timeout": 0},
    ):  # fmt: skip
        reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands", command, token=token)
        assert reply.status == 400, command
        assert reply.body["error"]["code"] == "bad_command", command
    assert web.cluster.sent == []
    assert _commands(web.dsn) == []


# -- live video ----------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_live_without_media_server_503(web: Web) -> None:
    """Without a media server, live video is 503 media_unavailable."""
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web)
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/live",
                       {"channel": 1, "stream": "main"}, token=token)
    assert reply.status == 503 and reply.body["error"]["code"] == "media_unavailable"


@pytest_twisted.inlineCallbacks
def test_live_with_media_server(web: Web) -> None:
    """With a media server, live video answers with its WS-FLV and HTTP-FLV addresses; an
    offline device is 409 and a bad channel or stream 400."""
    web.cluster.media = "http://media.example:8081/"
    token = yield login(web)
    path = f"/api/v1/devices/{NORTH}/live"
    reply = yield call(web, "POST", path, {"channel": 2, "stream": "sub"}, token=token)
    assert reply.status == 409
    web.cluster.gateways = {NORTH: "gw-1"}
    reply = yield call(web, "POST", path, {"channel": 2, "stream": "sub"}, token=token)
    assert reply.status == 200
    from cmsv6.media.viewing import View, sign_view, view_key
    from tests.web.support import LIVE_EXPIRES, MEDIA_ID, MEDIA_KEY

    grant = sign_view(view_key(MEDIA_KEY), View(MEDIA_ID, NORTH, 2, "sub", LIVE_EXPIRES))
    assert reply.body == {
        "ws_flv": f"ws://media.example:8081/live/{NORTH}/2.flv?stream=sub&token={grant}",
        "http_flv": f"http://media.example:8081/live/{NORTH}/2.flv?stream=sub&token={grant}",
        "codec": None,
        "audio": None,
        "expires": "2100-01-01T00:00:00+00:00",
    }
    for body in ({"channel": 0}, {"channel": "1"}, {"stream": "hd"}):
        reply = yield call(web, "POST", path, body, token=token)
        assert reply.status == 400, body


@pytest_twisted.inlineCallbacks
def test_devices_paged_by_link_header(web: Web) -> None:
    """GET /api/v1/devices stays a list; with a limit it is one page, and the Link header's
    next page, followed to the end, gives every device once, in phone order; a bad limit or
    cursor is a 400."""
    token = yield login(web, "root")
    everything = yield call(web, "GET", "/api/v1/devices", token=token)
    assert everything.status == 200 and len(everything.body) >= 2
    assert not everything.headers.hasHeader(b"link")
    seen: list[str] = []
    path: str | None = "/api/v1/devices?limit=1"
    while path is not None:
        page = yield call(web, "GET", path, token=token)
        assert page.status == 200 and len(page.body) <= 1
        seen += [d["phone"] for d in page.body]
        link = page.headers.getRawHeaders(b"link")
        path = link[0].decode().split(">")[0].lstrip("<") if link else None
        assert len(seen) <= len(everything.body) + 1, "the pages do not end"
    assert seen == [d["phone"] for d in everything.body]
    for bad in ("limit=0", "limit=100000", "limit=x", "after=" + "9" * 40):
        reply = yield call(web, "GET", f"/api/v1/devices?{bad}", token=token)
        assert reply.status == 400 and reply.body["error"]["code"], bad


# -- what a new user runs into (issue 10) ---------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_parameter_values_refused_in_words(web: Web) -> None:
    """A parameter value that does not fit its type is a 400 saying so, naming the
    parameter, its type and range (not a construct error); nothing is sent or recorded."""
    web.cluster.gateways = {NORTH: "gw-1"}
    token = yield login(web)
    path = f"/api/v1/devices/{NORTH}/commands"
    for value, shown in (("abc", '"abc"'), (2**40, str(2**40)), (-1, "-1"), (True, "true")):
        reply = yield call(web, "POST", path, {"type": "set_parameters", "params": {"0x0001": value}},
                           token=token)  # fmt: skip
        assert reply.status == 400 and reply.body["error"]["code"] == "bad_command", value
        assert reply.body["error"]["message"] == (
            f"parameter 0x0001 (heartbeat interval) is a DWORD: 0..4294967295, got {shown}")
    reply = yield call(web, "POST", path, {"type": "set_parameters", "params": {"0x0084": 300}},
                       token=token)  # fmt: skip
    assert "parameter 0x0084 (plate colour) is a BYTE: 0..255" in reply.body["error"]["message"]
    reply = yield call(web, "POST", path,
                       {"type": "set_parameters", "params": {"0x0075": {"osd": 1}}}, token=token)
    assert reply.status == 400
    assert reply.body["error"]["message"].startswith(
        "parameter 0x0075 (audio/video parameters) needs live_encode_mode")
    assert web.cluster.sent == [] and _commands(web.dsn) == []


@pytest_twisted.inlineCallbacks
def test_channels_beyond_the_device_refused(web: Web) -> None:
    """A photo or live video of a channel the device does not have (beyond its
    ``channels``, or any channel of a device with none) is a 400 bad_channel saying so;
    nothing is sent."""
    query(web.dsn, "UPDATE devices SET channels = 2 WHERE phone = %s", (NORTH,))
    query(web.dsn, "UPDATE devices SET channels = 0 WHERE phone = %s", (SOUTH,))
    web.cluster.gateways = {NORTH: "gw-1", SOUTH: "gw-1"}
    web.cluster.media = "http://media.example:8081"
    token = yield login(web, "root")
    for phone, channel, words in ((NORTH, 3, "channel 3 is not one of device 13800000001's"
                                              " channels (1 to 2)"),
                                  (NORTH, 0, "channel 0 is not one of"),
                                  (SOUTH, 1, "device 13800000002 has no video channels")):
        reply = yield call(web, "POST", f"/api/v1/devices/{phone}/commands",
                           {"type": "take_photo", "channel": channel}, token=token)
        assert reply.status == 400 and reply.body["error"]["code"] == "bad_channel", channel
        assert words in reply.body["error"]["message"]
        if channel:
            reply = yield call(web, "POST", f"/api/v1/devices/{phone}/live", {"channel": channel},
                               token=token)  # fmt: skip
            assert reply.status == 400 and reply.body["error"]["code"] == "bad_channel"
            assert words in reply.body["error"]["message"]
    assert web.cluster.sent == []
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
                       {"type": "take_photo", "channel": 2}, token=token)
    assert reply.status == 200 and web.cluster.sent[0][1] == 0x8801
    reply = yield call(web, "POST", f"/api/v1/devices/{NORTH}/live", {"channel": 2}, token=token)
    assert reply.status == 200


@pytest_twisted.inlineCallbacks
def test_alarms_by_state_not_limited_to_a_day(web: Web) -> None:
    """Without ``from`` alarms are those of the last day, but with ``state`` every alarm in
    that state, however old."""
    north = web.device_id(NORTH)
    now = datetime.now(timezone.utc)
    old = add_alarm(web.dsn, north, "bit:emergency", now - timedelta(days=30))
    recent = add_alarm(web.dsn, north, "bit:overspeed", now - timedelta(hours=1))
    add_alarm(web.dsn, north, "bit:fatigue", now - timedelta(days=40), state="handled")
    token = yield login(web)
    reply = yield call(web, "GET", "/api/v1/alarms", token=token)
    assert [a["id"] for a in reply.body["alarms"]] == [recent]
    reply = yield call(web, "GET", "/api/v1/alarms?state=new", token=token)
    assert [a["id"] for a in reply.body["alarms"]] == [old, recent]
    reply = yield call(web, "GET", f"/api/v1/alarms?state=new&after=2026-01-01T00:00:00Z~{2**63}",
                       token=token)  # fmt: skip
    assert reply.status == 400


@pytest_twisted.inlineCallbacks
def test_ids_taken_either_way_written_as_hex(web: Web) -> None:
    """Parameter ids in requests may be "0x0001", "1" or 1 (in ``ids``, and as ``params``
    keys or pairs); in replies message and parameter ids are "0x...." strings."""
    web.cluster.gateways = {NORTH: "gw-1"}

    def respond(phone: str, msg_id: int, body: bytes) -> dict[str, Any]:
        if msg_id == 0x8106:
            reply = ParametersResponse(7, {0x0001: 30, 0x0029: 15})
            return {"msg_id": 0x0104, "version": 2013, "body": encode_body(reply)}
        return web.cluster.general_response(phone, msg_id, body)

    web.cluster.respond = respond
    token = yield login(web)
    path = f"/api/v1/devices/{NORTH}/commands"
    reply = yield call(web, "POST", path, {"type": "query_parameters", "ids": ["0x0001", "41"]},
                       token=token)  # fmt: skip
    assert decode_body(0x8106, web.cluster.sent[0][2]).ids == (0x0001, 0x0029)
    assert reply.body["reply"]["body"]["params"] == [["0x0001", 30], ["0x0029", 15]]
    reply = yield call(web, "POST", path,
                       {"type": "set_parameters", "params": [["0x0001", 60], [41, 10]]}, token=token)
    assert reply.status == 200, reply.body
    assert decode_body(0x8103, web.cluster.sent[1][2]).params == ((0x0001, 60), (0x0029, 10))
    assert reply.body["reply"]["body"]["reply_id"] == "0x8103"
    assert reply.body["reply"]["msg_id"] == "0x0001"
