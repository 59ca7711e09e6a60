"""The WebSocket hub's poll against a real PostgreSQL, driven by hand (no loop running):
what is pushed once, what is pushed again, and alarms whose transaction committed late."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
from twisted.internet import task

from cmsv6.web.ws import Hub
from tests.support.database import query
from tests.web.support import NORTH, SOUTH, T0, Web, position_row, store_positions


class _Client:
    """What the hub needs of a client: its subscriptions and ``push``."""

    def __init__(self) -> None:
        self.devices: dict[int, str] = {}
        self.pushed: list[dict[str, Any]] = []

    def push(self, payload: bytes) -> None:
        self.pushed.append(json.loads(payload))


def _client() -> Any:
    return _Client()


@pytest_twisted.inlineCallbacks
def test_positions_pushed_once_per_change(web: Web) -> None:
    """A device's last position is pushed once, again only when a newer one is stored, and
    to every subscriber of that device only."""
    hub = Hub(web.db, task.Clock())
    a, b = _client(), _client()
    north, south = web.device_id(NORTH), web.device_id(SOUTH)
    hub.subscribe(a, {NORTH: north})
    hub.subscribe(b, {SOUTH: south})
    yield store_positions(web, [position_row(north, T0, lat=1.0)])
    yield hub.poll()
    yield hub.poll()
    assert [m["latitude"] for m in a.pushed] == [1.0] and b.pushed == []
    yield store_positions(web, [position_row(north, T0.replace(minute=5), lat=2.0)])
    yield hub.poll()
    assert [m["latitude"] for m in a.pushed] == [1.0, 2.0]
    late = _client()
    hub.subscribe(late, {NORTH: north})
    assert [m["latitude"] for m in late.pushed] == [2.0]
    hub.remove(a)
    hub.remove(late)
    assert north not in hub.subscribers and north not in hub.sent


@pytest_twisted.inlineCallbacks
def test_late_committed_alarm_pushed_once(web: Web) -> None:
    """An alarm whose row was written before the previous poll but committed after it (its
    created time is behind the poll's) is still pushed, and only once."""
    hub = Hub(web.db, task.Clock(), overlap=5.0)
    client = _client()
    north = web.device_id(NORTH)
    hub.subscribe(client, {NORTH: north})
    yield hub.poll()  # the starting point
    yield hub.poll()
    (alarm_id,) = query(
        web.dsn,
        "INSERT INTO alarms (device_id, kind, started, created)"
        " VALUES (%s, 'bit:emergency', %s, now() - interval '2 seconds') RETURNING id",
        (north, T0),
    )[0]
    yield hub.poll()
    yield hub.poll()
    alarms = [m for m in client.pushed if m["type"] == "alarm"]
    assert [m["id"] for m in alarms] == [alarm_id]
