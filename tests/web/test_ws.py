"""The client WebSocket: an autobahn client over loopback against the site and a real
PostgreSQL; positions and alarms written to the database are pushed to subscribers."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest_twisted

from cmsv6.web.ws import CLOSE_GOING_AWAY, CLOSE_UNAUTHORIZED, ClientProtocol
from tests.web.support import (
    NORTH, SOUTH, T0, Web, add_alarm, login, position_row, store_positions, ws_connect,
)  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_bad_token_closes(web: Web) -> None:
    """A first message with an unknown token closes the socket with 4001 and a reason."""
    client = yield ws_connect(web)
    client.send_json({"token": "not-a-token"})
    code, reason = yield client.closed()
    assert code == CLOSE_UNAUTHORIZED
    assert "token" in reason


@pytest_twisted.inlineCallbacks
def test_first_message_must_be_token(web: Web) -> None:
    """Subscribing before authenticating closes the socket with 4001."""
    client = yield ws_connect(web)
    client.send_json({"subscribe": [NORTH]})
    code, reason = yield client.closed()
    assert code == CLOSE_UNAUTHORIZED and "token" in reason


@pytest_twisted.inlineCallbacks
def test_subscribe_only_visible_devices(web: Web) -> None:
    """Subscribing keeps the devices the user may see and reports the others (hidden or
    unknown alike) as not found."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    hello = yield client.next()
    assert hello == {"type": "authenticated", "user": "olga", "role": "operator"}
    client.send_json({"subscribe": ["0" + NORTH, SOUTH, "13899999999", "not a phone"]})
    answer = yield client.next_of("subscribed")
    assert answer["phones"] == [NORTH]
    assert answer["not_found"] == sorted([SOUTH, "13899999999", "not a phone"])
    client.send_json({"unsubscribe": [NORTH]})
    answer = yield client.next_of("unsubscribed")
    assert answer["phones"] == [NORTH]
    client.send_json({"what": 1})
    error = yield client.next_of("error")
    assert error["code"] == "bad_message"
    client.sendClose()


@pytest_twisted.inlineCallbacks
def test_position_pushed_to_subscriber(web: Web) -> None:
    """A position stored for a subscribed device is pushed with its fields; positions of
    devices the client did not (and may not) subscribe to are never pushed."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    client.send_json({"subscribe": [NORTH, SOUTH]})
    yield client.next_of("subscribed")
    now = datetime.now(timezone.utc)
    yield store_positions(web, [position_row(web.device_id(SOUTH), T0, lat=1.5)])
    yield store_positions(web, [position_row(web.device_id(NORTH), T0, lat=23.125, received=now)])
    pushed = yield client.next_of("position")
    assert pushed["phone"] == NORTH
    assert (pushed["latitude"], pushed["time"]) == (23.125, T0.isoformat())
    # received went through the writer's float seconds: equal to the microsecond or so.
    assert abs(datetime.fromisoformat(pushed["received"]) - now) < timedelta(milliseconds=1)
    client.sendClose()


@pytest_twisted.inlineCallbacks
def test_current_position_sent_on_subscribe(web: Web) -> None:
    """A device that already has a position is sent it when subscribed, and then each new
    one."""
    dev = web.device_id(NORTH)
    yield store_positions(web, [position_row(dev, T0, lat=10.0)])
    token = yield login(web, "root")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    client.send_json({"subscribe": [NORTH]})
    first = yield client.next_of("position")
    assert first["latitude"] == 10.0
    yield store_positions(web, [position_row(dev, T0.replace(minute=1), lat=11.0)])
    second = yield client.next_of("position")
    assert second["latitude"] == 11.0
    client.sendClose()


@pytest_twisted.inlineCallbacks
def test_alarm_pushed_to_subscriber(web: Web) -> None:
    """A new alarm of a subscribed device is pushed, even when the device's clock puts its
    start long ago."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    client.send_json({"subscribe": [NORTH]})
    yield client.next_of("subscribed")
    # One poll after subscribing fixes the starting point; wait for it through a position.
    yield store_positions(web, [position_row(web.device_id(NORTH), T0)])
    yield client.next_of("position")
    add_alarm(web.dsn, web.device_id(SOUTH), "bit:emergency", T0)
    alarm_id = add_alarm(web.dsn, web.device_id(NORTH), "bit:overspeed",
                         datetime(2020, 1, 1, tzinfo=timezone.utc))
    pushed = yield client.next_of("alarm")
    assert (pushed["id"], pushed["phone"], pushed["kind"]) == (alarm_id, NORTH, "bit:overspeed")
    assert pushed["state"] == "new" and pushed["details"] == {"speed": 90}
    client.sendClose()


def test_slow_client_queue_drops_oldest_and_says_so() -> None:
    """While the connection is full, messages queue up to the limit; the oldest are dropped
    and, when it drains, the client is first told how many."""
    proto = ClientProtocol()
    proto.factory = SimpleNamespace(queue_size=3)  # type: ignore[assignment]
    proto.queue = deque()
    proto.state = proto.STATE_OPEN
    sent: list[Any] = []
    proto.sendMessage = lambda payload, *a, **k: sent.append(payload)  # type: ignore[method-assign]
    proto.push(b"m0")
    proto.pauseProducing()
    for i in range(1, 6):
        proto.push(f"m{i}".encode())
    assert sent == [b"m0"]
    proto.resumeProducing()
    assert sent == [b"m0", b'{"type": "dropped", "count": 2}', b"m3", b"m4", b"m5"]
    proto.push(b"m6")
    assert sent[-1] == b"m6"


@pytest_twisted.inlineCallbacks
def test_flow_control_over_a_real_socket(web: Web) -> None:
    """Pushing faster than the socket drains fills the transport's buffer, which pauses the
    client's queue; past its limit the oldest are dropped, and the client gets everything
    else in order with one notice of how many were lost."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    (server,) = web.site.hub.clients
    assert server.transport.producer is server
    server.factory.queue_size = 10
    payloads = [{"type": "test", "n": i, "pad": "x" * 16_000} for i in range(100)]
    for message in payloads:  # synchronously: nothing reaches the socket in between
        server.send_json(message)
    assert server.paused and server.dropped > 0
    got = []
    dropped = None
    while not got or got[-1] != 99:
        message = yield client.next()
        if message["type"] == "dropped":
            dropped = message["count"]
        else:
            got.append(message["n"])
    assert dropped is not None and dropped > 0
    assert got[-10:] == list(range(90, 100))
    assert got == sorted(got) and len(got) + dropped == 100
    client.sendClose()


@pytest_twisted.inlineCallbacks
def test_close_clients(web: Web) -> None:
    """site.close_clients closes every client socket with 4000 (going away)."""
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    web.site.close_clients("stepping down")
    code, reason = yield client.closed()
    assert (code, reason) == (CLOSE_GOING_AWAY, "stepping down")
    assert web.site.hub.clients == set()


@pytest_twisted.inlineCallbacks
def test_revoked_token_closes_socket(web: Web) -> None:
    """A socket whose token is revoked (logout) is closed with 4001 at the next check."""
    from tests.web.support import call

    web.site.hub.recheck_tokens = 0
    token = yield login(web, "olga")
    other = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    keeper = yield ws_connect(web)
    keeper.send_json({"token": other})
    yield keeper.next_of("authenticated")
    reply = yield call(web, "POST", "/api/v1/logout", token=token)
    assert reply.status == 200
    code, reason = yield client.closed()
    assert code == CLOSE_UNAUTHORIZED and "revoked" in reason
    assert keeper.state == keeper.STATE_OPEN
    keeper.sendClose()
