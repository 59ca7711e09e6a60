"""Bounds on the web endpoint for anyone who can reach it: connections, a deadline for
request headers (slowloris), WebSockets per user, and JSON nesting (a 400 in the API's
error shape, a documented close code on the WebSocket, never a traceback)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from cmsv6.config import WebConfig
from cmsv6.web.site import make_site
from cmsv6.web.ws import CLOSE_BAD_MESSAGE, CLOSE_TOO_MANY
from tests.support.device import until
from tests.web.support import Web, call, login, ws_connect

DEEP = b"[" * 50_000


def _site(**settings: Any) -> tuple[Any, task.Clock]:
    clock = task.Clock()
    return make_site(None, None, clock, WebConfig(**settings)), clock  # type: ignore[arg-type]


def _connect(site: Any, port: int = 50000) -> tuple[Any, StringTransport]:
    p = site.buildProtocol(IPv4Address("TCP", "10.0.0.1", port))
    assert p is not None
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", port))
    p.makeConnection(transport)
    return p, transport


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_headers_have_a_deadline() -> None:
    """A client still trickling a request's headers ``header_timeout`` seconds after it
    connected is closed, although each byte resets the idle timeout; one whose headers are
    in (its body still coming) is not."""
    site, clock = _site(header_timeout=10.0)
    slow, slow_transport = _connect(site, 1)
    body, body_transport = _connect(site, 2)
    body.dataReceived(b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    slow.dataReceived(b"GET / HTTP/1.1\r\n")
    for _ in range(9):
        clock.advance(1.0)
        slow.dataReceived(b"X-a: b\r\n")
    assert not slow_transport.disconnecting
    clock.advance(1.0)
    assert slow_transport.disconnecting and not body_transport.disconnecting
    assert site.counters["header_timeouts"] == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_connections_are_capped() -> None:
    """Past ``max_connections`` open connections a new one is refused; one closing frees
    its place."""
    site, _ = _site(max_connections=2)
    first, _ = _connect(site, 1)
    _connect(site, 2)
    assert site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 3)) is None
    assert site.counters["connections_refused"] == 1
    first.connectionLost(None)
    _connect(site, 4)


@pytest_twisted.inlineCallbacks
def test_deep_json_is_a_400(web: Web) -> None:
    """50,000 ``[`` as a request body get a 400 in the API's error shape, not a 500; so does
    one level past ``max_json_depth``, while that depth itself is parsed."""
    reply = yield call(web, "POST", "/api/v1/login", raw=DEEP)
    assert reply.status == 400
    assert reply.body["error"]["code"] == "too_deep"
    reply = yield call(web, "POST", "/api/v1/login", raw=b"[" * 33 + b"]" * 33)
    assert reply.status == 400 and reply.body["error"]["code"] == "too_deep"
    reply = yield call(web, "POST", "/api/v1/login", raw=b"[" * 32 + b"]" * 32)
    assert reply.status == 400 and reply.body["error"]["code"] == "bad_json"


@pytest_twisted.inlineCallbacks
def test_deep_json_closes_the_websocket_with_4002(web: Web) -> None:
    """A WebSocket message nested too deep closes the socket with 4002, before or after
    authentication, and the server carries on."""
    client = yield ws_connect(web)
    client.sendMessage(DEEP)
    code, reason = yield client.closed()
    assert code == CLOSE_BAD_MESSAGE and "deep" in reason
    token = yield login(web)
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    client.sendMessage(b'{"subscribe": ' + DEEP[:1000] + b"}")
    code, reason = yield client.closed()
    assert code == CLOSE_BAD_MESSAGE and "deep" in reason


@pytest_twisted.inlineCallbacks
def test_websockets_per_user_are_capped(web: Web) -> None:
    """A user with ``ws_max_per_user`` open sockets gets the next closed with 4003; one
    closing frees its place."""
    token = yield login(web)
    clients = []
    for _ in range(WebConfig().ws_max_per_user):
        client = yield ws_connect(web)
        client.send_json({"token": token})
        yield client.next_of("authenticated")
        clients.append(client)
    extra = yield ws_connect(web)
    extra.send_json({"token": token})
    code, reason = yield extra.closed()
    assert code == CLOSE_TOO_MANY and "per user" in reason
    clients[0].sendClose()
    yield clients[0].closed()
    factory = web.site.resource.children[b"ws"]._factory
    yield until(lambda: len(factory.per_user["olga"]) < len(clients), "the server to see it close")
    again = yield ws_connect(web)
    again.send_json({"token": token})
    yield again.next_of("authenticated")
    for client in clients[1:] + [again]:
        client.sendClose()
        yield client.closed()
