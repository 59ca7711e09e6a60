"""The OpenAPI document stays true: what the site serves is documented, and what is
documented is served."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest_twisted

from cmsv6.protocols.jt808.codec import encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes, AvCodec, Resource, ResourceList
from cmsv6.rpc.commands import CommandTimeout, DeviceOffline, DeviceRefused, Unavailable
from cmsv6.web.openapi import DOCUMENT
from tests.support.database import query
from tests.web.support import NORTH, PASSWORD, Web, add_alarm, call, login, ws_connect

#: Resources mounted beside the router (each documented too).
OTHER_RESOURCES = {("/ws", "GET")}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_document_is_openapi_3() -> None:
    """The document names OpenAPI 3, and every operation has responses and declares each of
    its path's parameters."""
    assert DOCUMENT["openapi"].startswith("3.")
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            assert op["responses"], (path, method)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, method)


def test_bodies_may_be_too_large() -> None:
    """Every operation that takes a request body documents 413 (a body over the bound), and
    login documents 429 (too many failed logins)."""
    with_body = [(path, method) for path, item in DOCUMENT["paths"].items()
                 for method, op in item.items() if "requestBody" in op]  # fmt: skip
    assert with_body
    for path, method in with_body:
        assert "413" in DOCUMENT["paths"][path][method]["responses"], (path, method)
    assert "429" in DOCUMENT["paths"]["/api/v1/login"]["post"]["responses"]


def test_every_route_is_documented(web: Web) -> None:
    """The router's routes and the resources beside it are exactly the documented paths and
    methods."""
    served = {(r.template, r.method) for r in web.site.api.routes()} | OTHER_RESOURCES
    assert served == documented()


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with a top-level $ref (or an allOf of one) resolved."""
    if "$ref" in schema:
        return _schema(DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    return schema


def _keys(schema: dict[str, Any]) -> set[str] | None:
    """The documented top-level keys of a JSON object (of an array's items), None if the
    document names none."""
    schema = _schema(schema)
    if schema.get("type") == "array":
        return _keys(schema["items"])
    return set(schema["properties"]) if "properties" in schema else None


#: Documented answers this test does not provoke, and where they are tested instead.
ELSEWHERE = {
    ("/api/v1/login", "POST", "429"): "tests/web/test_logins.py (and test_api.py::test_login_rate_limited)",
    ("/api/v1/login", "POST", "403"): "tests/web/test_api.py::test_login_of_a_disabled_user",
}


@attrs.frozen
class Case:
    """A request that must get ``status``: the documented path filled in, a JSON body or
    raw bytes, with the admin's token unless ``anonymous`` (or the operator's if
    ``operator``), after ``setup(web)``."""

    path: str
    body: Any = None
    raw: bytes | None = None
    anonymous: bool = False
    operator: bool = False
    setup: Callable[[Web], None] | None = None


def _offline(web: Web) -> None:
    web.cluster.gateways.clear()


def _no_media(web: Web) -> None:
    web.cluster.media = None


def _answer_with(error: Exception) -> Callable[[Web], None]:
    def setup(web: Web) -> None:
        def respond(phone: str, msg_id: int, body: bytes) -> Any:
            raise error

        web.cluster.respond = respond

    return setup


def _answer(msg_id: int, body: Any) -> Callable[[Web], None]:
    """The device answers every command with ``msg_id`` of ``body``."""

    def setup(web: Web) -> None:
        web.cluster.respond = lambda phone, asked, sent: {
            "msg_id": msg_id, "version": 2013, "body": encode_body(body)}

    return setup


def _refuse(web: Web) -> None:
    web.cluster.respond = lambda phone, msg_id, body: {
        "msg_id": 0x0001, "version": 2013,
        "body": encode_body(TerminalResponse(reply_serial=1, reply_id=msg_id, result=1))}


SESSION = "s" * 22


def _session(error: Exception | None = None) -> Callable[[Web], None]:
    """A playback session SESSION of NORTH's channel 1 that login remembers; controls of it
    fail with ``error``."""

    def setup(web: Web) -> None:
        from twisted.internet import reactor

        web.site.api.playbacks.add(SESSION, "media-1", NORTH, 1, reactor.seconds())

        def control(media: str, session: str) -> None:
            if error is not None:
                raise error

        web.cluster.control = control

    return setup


def cases(alarm: int, media: int) -> dict[tuple[str, str, str], Case]:
    """(documented path, method, documented status) → a request that must get it."""
    device = f"/api/v1/devices/{NORTH}"
    unknown = "/api/v1/devices/13899999999"
    text = {"type": "text", "text": "hello"}
    not_json = b"{not json"
    huge = b'{"text": "' + b"a" * 70_000 + b'"}'
    return {
        ("/api/v1/login", "POST", "413"): Case("/api/v1/login", raw=huge, anonymous=True),
        ("/api/v1/devices/{phone}/commands", "POST", "413"): Case(f"{device}/commands", raw=huge),
        ("/api/v1/devices/{phone}/live", "POST", "413"): Case(f"{device}/live", raw=huge),
        ("/api/v1/alarms/{alarm_id}", "POST", "413"): Case(f"/api/v1/alarms/{alarm}", raw=huge),
        ("/api/v1/devices/{phone}/media", "GET", "200"): Case(f"{device}/media"),
        ("/api/v1/devices/{phone}/media", "GET", "400"): Case(f"{device}/media?after=x"),
        ("/api/v1/devices/{phone}/media", "GET", "401"): Case(f"{device}/media", anonymous=True),
        ("/api/v1/devices/{phone}/media", "GET", "404"): Case(f"{unknown}/media"),
        ("/api/v1/media/{file_id}", "GET", "200"): Case(f"/api/v1/media/{media}"),
        ("/api/v1/media/{file_id}", "GET", "401"): Case(f"/api/v1/media/{media}", anonymous=True),
        ("/api/v1/media/{file_id}", "GET", "404"): Case(f"/api/v1/media/{media + 1000}"),
        ("/api/v1/audit", "GET", "200"): Case("/api/v1/audit"),
        ("/api/v1/audit", "GET", "400"): Case("/api/v1/audit?from=yesterday"),
        ("/api/v1/audit", "GET", "401"): Case("/api/v1/audit", anonymous=True),
        ("/api/v1/audit", "GET", "403"): Case("/api/v1/audit", operator=True),
        ("/api/openapi.json", "GET", "200"): Case("/api/openapi.json", anonymous=True),
        ("/api/v1/login", "POST", "200"): Case(
            "/api/v1/login", {"username": "root", "password": PASSWORD}, anonymous=True),
        ("/api/v1/login", "POST", "400"): Case("/api/v1/login", raw=not_json, anonymous=True),
        ("/api/v1/login", "POST", "401"): Case(
            "/api/v1/login", {"username": "root", "password": "wrong"}, anonymous=True),
        ("/api/v1/logout", "POST", "401"): Case("/api/v1/logout", {}, anonymous=True),
        ("/api/v1/me", "GET", "200"): Case("/api/v1/me"),
        ("/api/v1/me", "GET", "401"): Case("/api/v1/me", anonymous=True),
        ("/api/v1/devices", "GET", "200"): Case("/api/v1/devices"),
        ("/api/v1/devices", "GET", "401"): Case("/api/v1/devices", anonymous=True),
        ("/api/v1/devices/{phone}", "GET", "200"): Case(device),
        ("/api/v1/devices/{phone}", "GET", "401"): Case(device, anonymous=True),
        ("/api/v1/devices/{phone}", "GET", "404"): Case(unknown),
        ("/api/v1/devices/{phone}/positions", "GET", "200"): Case(f"{device}/positions"),
        ("/api/v1/devices/{phone}/positions", "GET", "400"): Case(f"{device}/positions?from=yesterday"),
        ("/api/v1/devices/{phone}/positions", "GET", "401"): Case(f"{device}/positions", anonymous=True),
        ("/api/v1/devices/{phone}/positions", "GET", "404"): Case(f"{unknown}/positions"),
        ("/api/v1/devices/{phone}/commands", "POST", "200"): Case(f"{device}/commands", text),
        ("/api/v1/devices/{phone}/commands", "POST", "400"): Case(f"{device}/commands", {"type": "dance"}),
        ("/api/v1/devices/{phone}/commands", "POST", "401"): Case(f"{device}/commands", text, anonymous=True),
        ("/api/v1/devices/{phone}/commands", "POST", "404"): Case(f"{unknown}/commands", text),
        ("/api/v1/devices/{phone}/commands", "POST", "403"): Case(
            f"{device}/commands", {"type": "terminal_control", "command": 4}, operator=True),
        ("/api/v1/devices/{phone}/commands", "POST", "409"): Case(f"{device}/commands", text, setup=_offline),
        ("/api/v1/devices/{phone}/commands", "POST", "503"): Case(
            f"{device}/commands", text, setup=_answer_with(Unavailable("gateway gone"))),
        ("/api/v1/devices/{phone}/commands", "POST", "504"): Case(
            f"{device}/commands", text, setup=_answer_with(CommandTimeout("no reply"))),
        ("/api/v1/devices/{phone}/live", "POST", "200"): Case(f"{device}/live", {"channel": 2}),
        ("/api/v1/devices/{phone}/live", "POST", "400"): Case(f"{device}/live", {"channel": 0}),
        ("/api/v1/devices/{phone}/live", "POST", "401"): Case(f"{device}/live", {}, anonymous=True),
        ("/api/v1/devices/{phone}/live", "POST", "404"): Case(f"{unknown}/live", {}),
        ("/api/v1/devices/{phone}/live", "POST", "409"): Case(f"{device}/live", {}, setup=_offline),
        ("/api/v1/devices/{phone}/live", "POST", "503"): Case(f"{device}/live", {}, setup=_no_media),
        ("/api/v1/alarms", "GET", "200"): Case(f"/api/v1/alarms?from=2026-11-25T00:00:00Z&device={NORTH}"),
        ("/api/v1/alarms", "GET", "400"): Case("/api/v1/alarms?state=forgotten"),
        ("/api/v1/alarms", "GET", "401"): Case("/api/v1/alarms", anonymous=True),
        ("/api/v1/alarms", "GET", "404"): Case("/api/v1/alarms?device=13899999999"),
        ("/api/v1/alarms/{alarm_id}", "POST", "200"): Case(
            f"/api/v1/alarms/{alarm}", {"state": "acknowledged", "note": "seen"}),
        ("/api/v1/alarms/{alarm_id}", "POST", "400"): Case(f"/api/v1/alarms/{alarm}", {"state": "new"}),
        ("/api/v1/alarms/{alarm_id}", "POST", "401"): Case(
            f"/api/v1/alarms/{alarm}", {"state": "handled"}, anonymous=True),
        ("/api/v1/alarms/{alarm_id}", "POST", "404"): Case(
            f"/api/v1/alarms/{alarm + 1000}", {"state": "handled"}),
        **media_cases(device, unknown, huge),
        **webhook_cases(device, unknown, huge),
        # Last: it revokes the token the others use.
        ("/api/v1/logout", "POST", "200"): Case("/api/v1/logout", {}),
    }  # fmt: skip


def webhook_cases(device: str, unknown: str, huge: bytes) -> dict[tuple[str, str, str], Case]:
    """The track's and the webhooks' cases (webhook 1 is made by the POST's 201 case, which
    comes before the DELETE's)."""
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["alarm.opened"]}
    track, path = f"{device}/track", "/api/v1/devices/{phone}/track"
    return {
        (path, "GET", "200"): Case(track),
        (path, "GET", "400"): Case(f"{track}?limit=0"),
        (path, "GET", "401"): Case(track, anonymous=True),
        (path, "GET", "404"): Case(f"{unknown}/track"),
        ("/api/v1/webhooks", "POST", "201"): Case("/api/v1/webhooks", hook),
        ("/api/v1/webhooks", "POST", "400"): Case("/api/v1/webhooks", {**hook, "events": ["x"]}),
        ("/api/v1/webhooks", "POST", "401"): Case("/api/v1/webhooks", hook, anonymous=True),
        ("/api/v1/webhooks", "POST", "403"): Case("/api/v1/webhooks", hook, operator=True),
        ("/api/v1/webhooks", "POST", "413"): Case("/api/v1/webhooks", raw=huge),
        ("/api/v1/webhooks", "GET", "200"): Case("/api/v1/webhooks"),
        ("/api/v1/webhooks", "GET", "401"): Case("/api/v1/webhooks", anonymous=True),
        ("/api/v1/webhooks", "GET", "403"): Case("/api/v1/webhooks", operator=True),
        ("/api/v1/webhooks/{webhook_id}", "DELETE", "401"): Case("/api/v1/webhooks/1", anonymous=True),
        ("/api/v1/webhooks/{webhook_id}", "DELETE", "403"): Case("/api/v1/webhooks/1", operator=True),
        ("/api/v1/webhooks/{webhook_id}", "DELETE", "200"): Case("/api/v1/webhooks/1"),
        ("/api/v1/webhooks/{webhook_id}", "DELETE", "404"): Case("/api/v1/webhooks/1"),
    }  # fmt: skip


def media_cases(device: str, unknown: str, huge: bytes) -> dict[tuple[str, str, str], Case]:
    """The recordings, playback, talk, PTZ and audio/video control routes' cases."""
    rec, rec_path = f"{device}/recordings", "/api/v1/devices/{phone}/recordings"
    listing = ResourceList(1, (Resource(1, datetime(2026, 11, 24, 9, tzinfo=timezone.utc),
                                        datetime(2026, 11, 24, 10, tzinfo=timezone.utc), 0, 0, 1, 1, 9),))  # fmt: skip
    attributes = AvAttributes(AvCodec.G711A, 1, 0, 1, 320, 1, AvCodec.H264, 1, 4)
    play = {"channel": 1, "from": "2026-11-24T01:00:00Z"}
    control, control_path = f"/api/v1/playback/{SESSION}/control", "/api/v1/playback/{session}/control"
    pause = {"action": "pause"}
    out = {
        (rec_path, "GET", "200"): Case(rec, setup=_answer(0x1205, listing)),
        (rec_path, "GET", "400"): Case(f"{rec}?media=film"),
        (rec_path, "GET", "401"): Case(rec, anonymous=True),
        (rec_path, "GET", "404"): Case(f"{unknown}/recordings"),
        (rec_path, "GET", "409"): Case(rec, setup=_offline),
        (rec_path, "GET", "502"): Case(rec),  # acknowledged, no list
        (rec_path, "GET", "503"): Case(rec, setup=_answer_with(Unavailable("gateway gone"))),
        (rec_path, "GET", "504"): Case(rec, setup=_answer_with(CommandTimeout("no reply"))),
        (control_path, "POST", "200"): Case(control, pause, setup=_session()),
        (control_path, "POST", "400"): Case(control, {"action": "dance"}, setup=_session()),
        (control_path, "POST", "401"): Case(control, pause, anonymous=True, setup=_session()),
        (control_path, "POST", "404"): Case("/api/v1/playback/nosuchsession/control", pause),
        (control_path, "POST", "409"): Case(control, pause, setup=_session(DeviceOffline("gone"))),
        (control_path, "POST", "413"): Case(control, raw=huge, setup=_session()),
        (control_path, "POST", "502"): Case(control, pause, setup=_session(DeviceRefused("no"))),
        (control_path, "POST", "503"): Case(control, pause, setup=_session(Unavailable("media server gone"))),
        (control_path, "POST", "504"): Case(control, pause, setup=_session(CommandTimeout("no answer"))),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "200"): Case(
            f"{device}/av-attributes", setup=_answer(0x1003, attributes)),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "400"): Case(f"{device}/av-attributes?timeout=x"),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "401"): Case(f"{device}/av-attributes", anonymous=True),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "404"): Case(f"{unknown}/av-attributes"),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "409"): Case(f"{device}/av-attributes", setup=_offline),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "502"): Case(f"{device}/av-attributes", setup=_refuse),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "503"): Case(
            f"{device}/av-attributes", setup=_answer_with(Unavailable("gateway gone"))),
        ("/api/v1/devices/{phone}/av-attributes", "GET", "504"): Case(
            f"{device}/av-attributes", setup=_answer_with(CommandTimeout("no reply"))),
    }
    for route, body in (("playback", play), ("talk", {"channel": 1})):
        path = "/api/v1/devices/{phone}/" + route
        out.update({
            (path, "POST", "200"): Case(f"{device}/{route}", body),
            (path, "POST", "400"): Case(f"{device}/{route}", {**body, "channel": 0}),
            (path, "POST", "401"): Case(f"{device}/{route}", body, anonymous=True),
            (path, "POST", "404"): Case(f"{unknown}/{route}", body),
            (path, "POST", "409"): Case(f"{device}/{route}", body, setup=_offline),
            (path, "POST", "413"): Case(f"{device}/{route}", raw=huge),
            (path, "POST", "503"): Case(f"{device}/{route}", body, setup=_no_media),
        })
    for route, body in (("ptz", {"channel": 1, "action": "wiper", "state": "on"}),
                        ("av-control", {"channel": 1, "action": "pause"})):  # fmt: skip
        path = "/api/v1/devices/{phone}/" + route
        out.update({
            (path, "POST", "200"): Case(f"{device}/{route}", body),
            (path, "POST", "400"): Case(f"{device}/{route}", {**body, "action": "dance"}),
            (path, "POST", "401"): Case(f"{device}/{route}", body, anonymous=True),
            (path, "POST", "404"): Case(f"{unknown}/{route}", body),
            (path, "POST", "409"): Case(f"{device}/{route}", body, setup=_offline),
            (path, "POST", "413"): Case(f"{device}/{route}", raw=huge),
            (path, "POST", "502"): Case(f"{device}/{route}", body, setup=_refuse),
            (path, "POST", "503"): Case(f"{device}/{route}", body,
                                        setup=_answer_with(Unavailable("gateway gone"))),
            (path, "POST", "504"): Case(f"{device}/{route}", body,
                                        setup=_answer_with(CommandTimeout("no reply"))),
        })
    return out


def _media(web: Web, directory: Path) -> int:
    """A photo of NORTH's in the site's media directory; its id."""
    web.site.api.media_dir = directory
    path = directory / NORTH / "20261125" / "020000-7-1.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xd8 a photo \xff\xd9")
    return int(query(web.dsn, "INSERT INTO media_files (device_id, media_id, media_type, format,"
                     " event, channel, path, size, received) VALUES (%s, 7, 0, 0, 0, 1, %s, %s,"
                     " now()) RETURNING id", (web.device_id(NORTH), str(path), 14))[0][0])


@pytest_twisted.inlineCallbacks
def test_every_documented_answer_is_given(web_with_metrics: Web, tmp_path: Path) -> None:
    """Each documented path, method and status is what the site answers to a request made
    for it (the admin's token, existing ids): a 200 with the documented schema's top-level
    keys, each error status as a JSON error; the WebSocket answers as documented, and paths
    that are not documented are 404 (/metrics too: it is served only on the private
    ``metrics`` endpoint)."""
    web = web_with_metrics
    alarm = add_alarm(web.dsn, web.device_id(NORTH), "bit:emergency",
                      datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc))  # fmt: skip
    table = cases(alarm, _media(web, tmp_path))
    responses = {
        (path, method.upper(), status): response
        for path, item in DOCUMENT["paths"].items()
        for method, op in item.items()
        if method in METHODS and path != "/ws"
        for status, response in op["responses"].items()
        if status != "default"  # the shape of any other error: test_other_errors_are_errors
    }
    assert set(table) | set(ELSEWHERE) == set(responses)
    token = yield login(web, "root")
    operator = yield login(web, "olga")
    for (path, method, status), case in table.items():
        web.cluster.gateways.clear()
        web.cluster.gateways[NORTH] = "gw-1"
        web.cluster.media = "http://127.0.0.1:8081"
        web.cluster.respond = web.cluster.general_response
        if case.setup is not None:
            case.setup(web)
        who = None if case.anonymous else operator if case.operator else token
        reply = yield call(web, method, case.path, case.body, token=who, raw=case.raw)
        where = (path, method, status, reply.body)
        assert reply.status == int(status), where
        content = responses[(path, method, status)]["content"]
        if "application/json" not in content:  # a file: one of the documented types
            (kind,) = reply.headers.getRawHeaders(b"content-type")
            assert kind.decode() in content, where
            continue
        schema = content["application/json"]["schema"]
        if not status.startswith("2"):
            assert set(reply.body) == {"error"} and set(reply.body["error"]) == {"code", "message"}, where
        elif path == "/api/openapi.json":
            assert reply.body == DOCUMENT
        else:
            keys = _keys(schema)
            items = reply.body if isinstance(reply.body, list) else [reply.body]
            assert items, where
            for item in items:
                assert keys is None or set(item) == keys, (where, set(item) ^ keys)  # type: ignore[operator]
    client = yield ws_connect(web)  # 101: the handshake completed
    client.sendClose()
    yield client.closed()
    reply = yield call(web, "GET", "/metrics")
    assert reply.status == 404 and "cmsv6_web_clients" not in str(reply.body)
    # (not "/": the web client is served there when the site has it)
    for path in ("/metrics", "/nothing/at/all", "/api/v1/nothing", f"/api/v1/devices/{NORTH}/nothing", "/api/v2/devices",
                 "/api/v1/devices/x/y/z"):  # fmt: skip
        reply = yield call(web, "GET", path, token=token)
        assert reply.status == 404 and reply.body["error"]["code"] == "no_route", path


def test_site_built_twice_on_one_registry(dsn: str) -> None:
    """Building the site again with the same registry replaces its metrics collector."""
    from twisted.internet import task

    from cmsv6.metrics import make_registry
    from cmsv6.web.site import make_site
    from tests.web.support import FakeCluster

    registry = make_registry(process=False)
    first = make_site(None, FakeCluster(), task.Clock(), registry=registry)  # type: ignore[arg-type]
    second = make_site(None, FakeCluster(), task.Clock(), registry=registry)  # type: ignore[arg-type]
    assert first is not second
    assert registry._cmsv6_web_collector.hub is second.hub
