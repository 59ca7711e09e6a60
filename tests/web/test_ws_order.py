"""The client WebSocket answers one client's messages in the order they were sent, whatever
the database's latency: over loopback against the site and a real PostgreSQL, with the
database calls held back by the test (``Gate``) until the server has every message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from cmsv6.db import devices as device_store
from cmsv6.web.ws import CLOSE_BACKLOG, ClientFactory
from tests.support.device import until
from tests.web.support import NORTH, SOUTH, Web, login, ws_connect

UNKNOWN = "13899999999"


class Gate:
    """Stands in for a database call: each call waits until the test opens the gate, then
    runs the real one. ``open(reverse=True)`` lets the waiting calls go last first, as a
    database may answer them."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.is_open = False
        self.waiting: list[defer.Deferred[None]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return defer.ensureDeferred(self._call(*args, **kwargs))

    async def _call(self, *args: Any, **kwargs: Any) -> Any:
        if not self.is_open:
            d: defer.Deferred[None] = defer.Deferred()
            self.waiting.append(d)
            await d
        return await self.real(*args, **kwargs)

    def open(self, reverse: bool = False) -> None:
        self.is_open = True
        waiting, self.waiting = self.waiting, []
        for d in reversed(waiting) if reverse else waiting:
            d.callback(None)


def _factory(web: Web) -> ClientFactory:
    return web.site.resource.children[b"ws"]._factory  # type: ignore[no-any-return]


def _server(web: Web) -> Any:
    """The server's end of the one open client socket, counting the messages it receives."""
    (server,) = web.site.hub.clients
    server.received = 0
    on_message = server.onMessage

    def counted(payload: bytes, is_binary: bool) -> None:
        server.received += 1
        on_message(payload, is_binary)

    server.onMessage = counted
    return server


def _auth_gate(web: Web, monkeypatch: pytest.MonkeyPatch) -> Gate:
    auth = _factory(web).auth
    gate = Gate(auth.user_for_token)
    monkeypatch.setattr(auth, "user_for_token", gate)
    return gate


def _devices_gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    gate = Gate(device_store.visible_devices)
    monkeypatch.setattr(device_store, "visible_devices", gate)
    return gate


@defer.inlineCallbacks
def _answers(client: Any, n: int) -> Any:
    """The next ``n`` answers (pushed positions and alarms skipped)."""
    got = []
    while len(got) < n:
        message = yield client.next()
        if message["type"] not in ("position", "alarm"):
            got.append(message)
    return got


@pytest_twisted.inlineCallbacks
def test_subscribe_sent_with_the_token_is_answered(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscribe sent right behind the token, before ``authenticated`` came back, waits
    for the authentication and is then answered and in force, not dropped."""
    token = yield login(web, "olga")
    gate = _auth_gate(web, monkeypatch)
    client = yield ws_connect(web)
    server = _server(web)
    client.send_json({"token": token})
    client.send_json({"subscribe": [NORTH]})
    yield until(lambda: server.received == 2, "the server to receive both messages")
    gate.open()
    hello, answer = yield _answers(client, 2)
    assert hello == {"type": "authenticated", "user": "olga", "role": "operator"}
    assert answer == {"type": "subscribed", "phones": [NORTH], "not_found": []}
    assert server.devices == {web.device_id(NORTH): NORTH}
    client.sendClose()
    yield client.closed()


@pytest_twisted.inlineCallbacks
def test_unsubscribe_right_after_subscribe_is_answered_after_it(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscribe and an unsubscribe of the same device sent back to back are answered in
    that order, and the device is no longer subscribed, however slow the subscribe's
    database query."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    server = _server(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    gate = _devices_gate(monkeypatch)
    client.send_json({"subscribe": [NORTH]})
    client.send_json({"unsubscribe": [NORTH]})
    yield until(lambda: server.received == 3, "the server to receive both messages")
    gate.open()
    answers = yield _answers(client, 2)
    assert answers == [
        {"type": "subscribed", "phones": [NORTH], "not_found": []},
        {"type": "unsubscribed", "phones": [NORTH]},
    ]
    assert server.devices == {} and web.site.hub.subscribers == {}
    client.sendClose()
    yield client.closed()


@pytest_twisted.inlineCallbacks
def test_answers_in_the_order_sent_whatever_the_database_latency(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five messages sent at once, the later database calls answered first: every answer
    comes back in the order of the messages, each the answer to its own."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    server = _server(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    gate = _devices_gate(monkeypatch)
    client.send_json({"subscribe": [SOUTH]})
    client.send_json({"subscribe": [NORTH]})
    client.send_json({"unsubscribe": [NORTH]})
    client.send_json({"subscribe": [UNKNOWN]})
    client.send_json({"what": 1})
    yield until(lambda: server.received == 6, "the server to receive every message")
    gate.open(reverse=True)
    answers = yield _answers(client, 5)
    assert answers[:4] == [
        {"type": "subscribed", "phones": [], "not_found": [SOUTH]},
        {"type": "subscribed", "phones": [NORTH], "not_found": []},
        {"type": "unsubscribed", "phones": [NORTH]},
        {"type": "subscribed", "phones": [], "not_found": [UNKNOWN]},
    ]
    assert (answers[4]["type"], answers[4]["code"]) == ("error", "bad_message")
    assert server.devices == {}
    client.sendClose()
    yield client.closed()


@pytest_twisted.inlineCallbacks
def test_pending_messages_are_bounded(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the token is being checked, ``max_pending`` messages may wait behind it and are
    all answered; one more closes the socket with 4004 and a reason naming the bound."""
    bound = _factory(web).max_pending
    token = yield login(web, "olga")
    gate = _auth_gate(web, monkeypatch)
    client = yield ws_connect(web)
    server = _server(web)
    client.send_json({"token": token})
    for _ in range(bound):
        client.send_json({"subscribe": [NORTH]})
    yield until(lambda: server.received == 1 + bound, "the server to receive every message")
    assert client.state == client.STATE_OPEN
    gate.open()
    answers = yield _answers(client, 1 + bound)
    assert [a["type"] for a in answers] == ["authenticated"] + ["subscribed"] * bound
    client.sendClose()
    yield client.closed()

    gate.is_open = False
    client = yield ws_connect(web)
    server = _server(web)
    client.send_json({"token": token})
    for _ in range(bound + 1):
        client.send_json({"subscribe": [NORTH]})
    code, reason = yield client.closed()
    assert code == CLOSE_BACKLOG and str(bound) in reason
    assert not server.pending  # nothing of theirs kept
    gate.open()

