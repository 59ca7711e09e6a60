"""Test support for the web site: a fake cluster, the site over a real PostgreSQL on a real
loopback port, an HTTP client (twisted.web.client.Agent) and a WebSocket client (autobahn)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from io import BytesIO
from typing import Any, Callable

import attrs
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from cmsv6.config import WebConfig
from cmsv6.db import positions as position_store
from cmsv6.db.devices import add_device
from cmsv6.db.positions import Position
from cmsv6.db.service import Database
from cmsv6.db.users import put_user
from cmsv6.passwords import hash_password
from cmsv6.protocols.jt808.codec import encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.media.viewing import View, sign_view, view_key
from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes
from cmsv6.rpc.commands import DeviceOffline
from cmsv6.web.cluster import LiveView
from cmsv6.web.site import make_site
from tests.support.database import query

PASSWORD = "correct horse battery"
NORTH, SOUTH, LONE = "13800000001", "13800000002", "13800000003"
#: Long enough for anything the site does over loopback; only a guard against hanging.
WAIT = 15.0
#: The fake cluster's media server: its id, its cluster key, and when its grants expire.
MEDIA_ID = "media-1"
MEDIA_KEY = bytes(range(32))
LIVE_EXPIRES = 4_102_444_800  # 2100-01-01



class FakeCluster:
    """The cluster as the site sees it: online devices, a media server, and device replies
    given by ``respond(phone, msg_id, body)`` (a reply dict, or an exception to raise)."""

    def __init__(self) -> None:
        self.gateways: dict[str, str] = {}
        self.media: str | None = None
        self.sent: list[tuple[str, int, bytes, float]] = []
        #: The 2019 body of each command sent.
        self.sent_2019: list[bytes | None] = []
        self.sent_as: list[tuple[str | None, int | None]] = []
        self.respond: Callable[[str, int, bytes], Any] = self.general_response
        #: phone → (video, audio) codecs the cluster remembers (``live_codecs``).
        self.codecs: dict[str, tuple[str | None, str | None]] = {}
        #: phone → its remembered 0x1003 (None: it did not answer 0x9003).
        self.av: dict[str, AvAttributes | None] = {}
        #: Every grant ``media_view`` signed: (phone, channel, stream, params).
        self.views: list[tuple[str, int, str, dict[str, Any]]] = []
        #: Every ``control_playback``: (media, session, action, speed, time).
        self.controls: list[tuple[str, str, str, int | None, str | None]] = []
        #: What a playback control does: None (the device accepted), or raises.
        self.control: Callable[[str, str], None] = lambda media, session: None

    @staticmethod
    def general_response(phone: str, msg_id: int, body: bytes) -> dict[str, Any]:
        reply = TerminalResponse(reply_serial=1, reply_id=msg_id, result=0)
        return {"msg_id": 0x0001, "version": 2013, "body": encode_body(reply)}

    def device_gateway(self, phone: str) -> str | None:
        return self.gateways.get(phone)

    def send_to_device(
        self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
        body_2019: bytes | None = None, by: str | None = None, command: int | None = None,
    ) -> defer.Deferred[dict]:  # type: ignore[type-arg]
        self.sent.append((phone, msg_id, body, timeout))
        self.sent_2019.append(body_2019)
        self.sent_as.append((by, command))
        if phone not in self.gateways:
            return defer.fail(DeviceOffline(f"{phone} is offline"))
        try:
            answer = self.respond(phone, msg_id, body)
        except Exception as e:  # noqa: BLE001 - handed back as the errback
            return defer.fail(e)
        return defer.succeed(answer)

    def media_server(self) -> str | None:
        return self.media

    def live_view(self, phone: str, channel: int, stream: str) -> LiveView | None:
        """A grant for ``media`` (as media server ``MEDIA_ID``) until ``LIVE_EXPIRES``."""
        if self.media is None:
            return None
        view = View(MEDIA_ID, phone, channel, stream, LIVE_EXPIRES)
        return LiveView(MEDIA_ID, self.media, sign_view(view_key(MEDIA_KEY), view), LIVE_EXPIRES)

    def live_codecs(self, phone: str) -> tuple[str | None, str | None]:
        return self.codecs.get(phone, (None, None))

    def online(self) -> dict[str, str]:
        return dict(self.gateways)

    def media_view(self, phone: str, channel: int, stream: str, params: dict[str, Any]) -> LiveView | None:
        """A grant with ``params`` for ``media`` (as ``MEDIA_ID``) until ``LIVE_EXPIRES``."""
        if self.media is None:
            return None
        self.views.append((phone, channel, stream, params))
        view = View(MEDIA_ID, phone, channel, stream, LIVE_EXPIRES, params)
        return LiveView(MEDIA_ID, self.media, sign_view(view_key(MEDIA_KEY), view), LIVE_EXPIRES)

    def control_playback(self, media: str, session: str, action: str, speed: int | None = None,
                         time: str | None = None) -> defer.Deferred[None]:  # fmt: skip
        self.controls.append((media, session, action, speed, time))
        try:
            self.control(media, session)
        except Exception as e:  # noqa: BLE001 - handed back as the errback
            return defer.fail(e)
        return defer.succeed(None)

    def av_attributes(self, phone: str) -> tuple[bool, AvAttributes | None]:
        return (phone in self.av, self.av.get(phone))

    def remember_av(self, phone: str, attributes: AvAttributes | None) -> None:
        self.av[phone] = attributes


@attrs.define
class Web:
    dsn: str
    db: Database
    cluster: FakeCluster
    site: Any
    port: int

    def url(self, path: str) -> bytes:
        return f"http://127.0.0.1:{self.port}{path}".encode()

    def device_id(self, phone: str) -> int:
        return int(query(self.dsn, "SELECT id FROM devices WHERE phone = %s", (phone,))[0][0])


_PASSWORD_HASH: list[str] = []


def password_hash() -> str:
    """A hash of PASSWORD (made once: each costs a third of a second and 128 MiB)."""
    if not _PASSWORD_HASH:
        _PASSWORD_HASH.append(hash_password(PASSWORD))
    return _PASSWORD_HASH[0]


def seed(dsn: str) -> None:
    """Fleets north and south, a device in each and one in none; an admin and an operator
    who sees the north fleet."""
    add_device(dsn, NORTH, plate="N-1", fleet="north")
    add_device(dsn, SOUTH, plate="S-1", fleet="south")
    add_device(dsn, LONE)
    put_user(dsn, "root", password_hash(), "admin")
    put_user(dsn, "olga", password_hash(), "operator", fleets=["north"])


def serve(dsn: str, registry: Any = None) -> Any:
    """Start the database service and the site on a loopback port; (Web, stop)."""
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=3)
    db.startService()
    pytest_twisted.blockon(db.ready())
    cluster = FakeCluster()
    site = make_site(db, cluster, reactor, WebConfig(poll_interval=0.1), registry)
    port = pytest_twisted.blockon(
        endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    )
    web = Web(dsn, db, cluster, site, port.getHost().port)

    def stop() -> None:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        pytest_twisted.blockon(site.hub.stop())
        pytest_twisted.blockon(defer.maybeDeferred(db.stopService))

    return web, stop


# -- HTTP ----------------------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    body: Any
    headers: Headers


@defer.inlineCallbacks
def call(
    web: Web,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    source: str | None = None,
) -> Any:
    """One request; a Reply with the JSON body decoded (None if empty, text if not JSON).
    ``source``: the loopback address to send from (e.g. "127.0.0.2"), as if from another
    client (the whole of 127.0.0.0/8 is loopback on Linux)."""
    from twisted.internet import reactor

    headers = Headers()
    if token is not None:
        headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    producer = FileBodyProducer(BytesIO(data)) if data is not None else None
    if producer is not None:
        headers.addRawHeader(b"content-type", b"application/json")
    agent = Agent(reactor) if source is None else Agent.usingEndpointFactory(
        reactor, _FromAddress(reactor, source))
    response = yield agent.request(method.encode(), web.url(path), headers, producer)
    content = yield readBody(response)
    try:
        decoded = json.loads(content) if content else None
    except ValueError:
        decoded = content.decode("utf-8", "replace")
    return Reply(response.code, decoded, response.headers)


@implementer(IAgentEndpointFactory)
class _FromAddress:
    """Agent connections bound to one local address."""

    def __init__(self, reactor: Any, source: str) -> None:
        self.reactor = reactor
        self.source = source

    def endpointForURI(self, uri: Any) -> Any:  # noqa: N802
        return endpoints.TCP4ClientEndpoint(self.reactor, uri.host.decode(), uri.port,
                                            bindAddress=(self.source, 0))  # fmt: skip


@defer.inlineCallbacks
def login(web: Web, name: str = "olga", password: str = PASSWORD) -> Any:
    reply = yield call(web, "POST", "/api/v1/login", {"username": name, "password": password})
    assert reply.status == 200, reply.body
    return reply.body["token"]


# -- positions and alarms ------------------------------------------------------------------

T0 = datetime(2026, 11, 25, 2, 0, 0, tzinfo=timezone.utc)


def position_row(
    device_id: int, time: datetime, lat: float = 22.5, lon: float = 114.0, tag: str = "",
    received: datetime | None = None,
) -> Position:  # fmt: skip
    digest = hashlib.sha256(f"{device_id}{time.isoformat()}{lat}{lon}{tag}".encode()).digest()[:8]
    return Position(
        device_id, time, received or datetime.now(timezone.utc), lat, lon, 10, 40.0, 90, 0, 3,
        json.dumps({"0x01": 1000}), False, digest,
    )  # fmt: skip


@defer.inlineCallbacks
def store_positions(web: Web, rows: list[Position]) -> Any:
    """Through the gateway's own write path (partitions, positions, last_positions)."""
    yield position_store.ensure_partitions(web.db, {position_store.month_of(r.time) for r in rows})
    yield position_store.write(web.db, rows, [])


def add_alarm(dsn: str, device_id: int, kind: str, started: datetime, state: str = "new") -> int:
    return int(
        query(dsn, "INSERT INTO alarms (device_id, kind, started, state, latitude, longitude,"
            " details) VALUES (%s, %s, %s, %s, 22.5, 114.0, '{\"speed\": 90}') RETURNING id",
            (device_id, kind, started, state))[0][0]
    )  # fmt: skip


# -- WebSocket -----------------------------------------------------------------------------


class WsClient(WebSocketClientProtocol):
    def onOpen(self) -> None:  # noqa: N802
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        self.factory.messages.put(json.loads(payload.decode("utf-8")))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"handshake failed: {code} {reason}"))
        self.factory.closed.callback((code, reason))

    def send_json(self, message: Any) -> None:
        self.sendMessage(json.dumps(message).encode())

    def next(self) -> defer.Deferred[Any]:
        """The next message from the server (fails after WAIT seconds, a guard only)."""
        from twisted.internet import reactor

        return self.factory.messages.get().addTimeout(WAIT, reactor)

    @defer.inlineCallbacks
    def next_of(self, kind: str) -> Any:
        """The next message of this type, skipping others."""
        while True:
            message = yield self.next()
            if message.get("type") == kind:
                return message

    def closed(self) -> defer.Deferred[Any]:
        from twisted.internet import reactor

        d: defer.Deferred[Any] = defer.Deferred()
        self.factory.closed.addBoth(lambda r: (d.callback(r), r)[1])
        return d.addTimeout(WAIT, reactor)


@defer.inlineCallbacks
def ws_connect(web: Web) -> Any:
    from twisted.internet import reactor

    factory = WebSocketClientFactory(f"ws://127.0.0.1:{web.port}/ws", reactor=reactor)
    factory.protocol = WsClient
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    factory.messages = defer.DeferredQueue()
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", web.port).connect(factory)
    client = yield factory.opened.addTimeout(WAIT, reactor)
    return client

