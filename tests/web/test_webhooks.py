"""Webhooks: admins register them through the Open API; the database records each event
(alarms opened, closed, handled; devices online, offline; commands answered) in the outbox
in the fact's own transaction; the dispatcher delivers every event at least once, signed,
to a receiver that goes away and comes back, backs off from a failing one, and never lets
a dead endpoint hold up another."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest_twisted
from twisted.internet import defer, endpoints, task
from twisted.web import resource, server
from twisted.web.http_headers import Headers

from cmsv6.db import webhooks as store
from cmsv6.db.service import Database
from cmsv6.db.users import User
from cmsv6.webhooks import EVENTS
from cmsv6.webhooks.dispatcher import Dispatcher, backoff_delay
from cmsv6.webhooks.signing import verify
from tests.support.database import query
from tests.support.device import until, within
from tests.web.support import NORTH, SOUTH, Web, add_alarm, call, login

SECRET = "a secret of twenty-four!"


def outbox(dsn: str) -> list[tuple[str, str, Any]]:
    """(event, event id, payload) of every delivery waiting, oldest first."""
    return [(r[0], r[1], r[2]) for r in query(
        dsn, "SELECT event, event_id::text, payload FROM webhook_deliveries ORDER BY id")]  # fmt: skip


def add_hook(dsn: str, url: str, events: list[str] | None = None) -> int:
    return int(query(dsn, "INSERT INTO webhooks (url, events, secret) VALUES (%s, %s, %s)"
                     " RETURNING id", (url, events or list(EVENTS), SECRET))[0][0])  # fmt: skip


# -- the Open API ----------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_admins_register_list_and_delete_webhooks(web: Web) -> None:
    """An admin registers a webhook (a secret made when none is given, shown once), lists it
    without its secret and deletes it; an operator may do none of it; bad fields are 400s
    in words; each change is audited."""
    root = yield login(web, "root")
    olga = yield login(web, "olga")
    body = {"url": "https://example.com/hook", "events": ["alarm.opened", "device.offline"]}
    made = yield call(web, "POST", "/api/v1/webhooks", body, token=root)
    assert made.status == 201, made.body
    assert made.body["events"] == body["events"] and len(made.body["secret"]) >= 16
    listed = yield call(web, "GET", "/api/v1/webhooks", token=root)
    assert [w["id"] for w in listed.body] == [made.body["id"]]
    assert "secret" not in listed.body[0] and listed.body[0]["created_by"] == "root"
    for bad, word in (({**body, "url": "ftp://example.com/"}, "url"),
                      ({**body, "url": "http:///nohost"}, "url"),
                      ({**body, "events": ["alarm.exploded"]}, "events"),
                      ({**body, "events": []}, "events"),
                      ({**body, "secret": "short"}, "secret")):  # fmt: skip
        reply = yield call(web, "POST", "/api/v1/webhooks", bad, token=root)
        assert reply.status == 400 and word in reply.body["error"]["message"], (bad, reply.body)
    for method, path, payload in (("GET", "/api/v1/webhooks", None),
                                  ("POST", "/api/v1/webhooks", body),
                                  ("DELETE", f"/api/v1/webhooks/{made.body['id']}", None)):  # fmt: skip
        reply = yield call(web, method, path, payload, token=olga)
        assert reply.status == 403, (method, reply.body)
    gone = yield call(web, "DELETE", f"/api/v1/webhooks/{made.body['id']}", token=root)
    assert gone.status == 200 and gone.body["url"] == body["url"]
    again = yield call(web, "DELETE", f"/api/v1/webhooks/{made.body['id']}", token=root)
    assert again.status == 404
    actions = [r[0] for r in query(web.dsn, "SELECT action FROM audit WHERE action LIKE 'webhook%%'"
                                   " ORDER BY id")]  # fmt: skip
    assert actions == ["webhook.add", "webhook.delete"]


# -- where events come from ------------------------------------------------------------------


def test_facts_record_their_events(web: Web) -> None:
    """Each fact writes its event, for the webhooks that ask for it only: an alarm opened,
    closed and handled; a device's session opened, and closed when it has no other; a
    command answered (not one that timed out)."""
    dsn = web.dsn
    add_hook(dsn, "http://127.0.0.1:9/all")
    add_hook(dsn, "http://127.0.0.1:9/alarms", ["alarm.opened"])
    north = web.device_id(NORTH)
    alarm = add_alarm(dsn, north, "bit:emergency", datetime(2026, 11, 25, 2, tzinfo=timezone.utc))
    query(dsn, "UPDATE alarms SET ended = now() WHERE id = %s", (alarm,))
    query(dsn, "UPDATE alarms SET state = 'handled', handled = now(), handled_by ="
               " (SELECT id FROM users WHERE name = 'root'), note = 'ok' WHERE id = %s", (alarm,))
    first = query(dsn, "INSERT INTO device_sessions (device_id, gateway_id, connected) VALUES"
                       " (%s, 'gw-1', now()) RETURNING id", (north,))[0][0]  # fmt: skip
    second = query(dsn, "INSERT INTO device_sessions (device_id, gateway_id, connected) VALUES"
                        " (%s, 'gw-2', now()) RETURNING id", (north,))[0][0]  # fmt: skip
    query(dsn, "UPDATE device_sessions SET disconnected = now(), reason = 'gone' WHERE id = %s", (first,))
    query(dsn, "UPDATE device_sessions SET disconnected = now(), reason = 'idle' WHERE id = %s", (second,))
    for status in ("replied", "timeout"):
        command = query(dsn, "INSERT INTO commands (device_id, msg_id, status) VALUES (%s, 33536,"
                             " 'pending') RETURNING id", (north,))[0][0]  # fmt: skip
        query(dsn, "UPDATE commands SET status = %s, reply = '{\"msg_id\": \"0x0001\"}' WHERE id = %s",
              (status, command))
    events = outbox(dsn)
    names = [e for e, _, _ in events]
    assert names == ["alarm.opened", "alarm.opened", "alarm.closed", "alarm.handled",
                     "device.online", "device.online", "device.offline", "command.answered"]  # fmt: skip
    assert events[0][1] == events[1][1]  # one event, one id, for both webhooks
    assert len({i for _, i, _ in events}) == 7
    by_name = {e: p for e, _, p in events}
    assert by_name["alarm.handled"]["data"]["alarm"]["handled_by"] == "root"
    assert by_name["alarm.closed"]["data"]["alarm"]["phone"] == NORTH
    assert by_name["device.offline"]["data"] == {**by_name["device.offline"]["data"],
                                                 "phone": NORTH, "gateway": "gw-2", "reason": "idle"}  # fmt: skip
    assert by_name["command.answered"]["data"]["msg_id"] == "0x8300"
    for name, ident, payload in events:
        assert payload["id"] == ident and payload["event"] == name
        datetime.fromisoformat(payload["time"])


def test_no_webhook_no_outbox(web: Web) -> None:
    """With no webhook asking for an event, facts write nothing to the outbox."""
    add_hook(web.dsn, "http://127.0.0.1:9/", ["command.answered"])
    add_alarm(web.dsn, web.device_id(SOUTH), "bit:overspeed", datetime(2026, 11, 25, tzinfo=timezone.utc))
    assert outbox(web.dsn) == []


# -- delivery --------------------------------------------------------------------------------


class Receiver(resource.Resource):
    """A webhook endpoint: records what it is sent (headers, body) and answers 204."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[dict[str, str], bytes]] = []

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.got.append((headers, request.content.read()))
        request.setResponseCode(204)
        return b""


@pytest_twisted.inlineCallbacks
def test_every_event_arrives_when_the_receiver_comes_back(web: Web) -> None:
    """Events recorded while the receiver is away are retried until it is back: each
    arrives (at least once), signed with the secret over its timestamp and body, with its
    id in the header and the body; the outbox is then empty."""
    from twisted.internet import reactor

    receiver = Receiver()
    site = server.Site(receiver)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = yield endpoint.listen(site)
    number = port.getHost().port
    yield port.stopListening()  # away: connections are refused
    add_hook(web.dsn, f"http://127.0.0.1:{number}/hook")
    north = web.device_id(NORTH)
    for kind in ("bit:emergency", "bit:overspeed", "bit:fatigue"):
        add_alarm(web.dsn, north, kind, datetime(2026, 11, 25, 2, tzinfo=timezone.utc))
    expected = {i for _, i, _ in outbox(web.dsn)}
    assert len(expected) == 3
    dispatcher = Dispatcher(web.db, reactor, poll=0.05, backoff=0.05, max_backoff=0.2, timeout=5)
    dispatcher.startService()
    try:
        yield until(lambda: query(web.dsn, "SELECT min(attempts) FROM webhook_deliveries")[0][0] >= 2,
                    "every delivery failed twice while the receiver is away", in_thread=True)
        assert receiver.got == []
        error = query(web.dsn, "SELECT last_error FROM webhooks")[0][0]
        assert "refused" in error.lower(), error
        port = yield endpoints.TCP4ServerEndpoint(reactor, number, interface="127.0.0.1").listen(site)
        yield until(lambda: {h["x-cmsv6-delivery"] for h, _ in receiver.got} >= expected,
                    "every event delivered once the receiver is back")
        yield until(lambda: not outbox(web.dsn), "the outbox drained", in_thread=True)
    finally:
        yield within(defer.maybeDeferred(dispatcher.stopService), "the dispatcher stopping")
        yield port.stopListening()
    assert {h["x-cmsv6-delivery"] for h, _ in receiver.got} == expected
    for headers, body in receiver.got:
        assert verify(SECRET, headers["x-cmsv6-timestamp"], body, headers["x-cmsv6-signature"],
                      time.time()), headers  # fmt: skip
        assert not verify("another secret, 16+", headers["x-cmsv6-timestamp"], body,
                          headers["x-cmsv6-signature"], time.time())  # fmt: skip
        event = json.loads(body)
        assert event["id"] == headers["x-cmsv6-delivery"] and event["event"] == "alarm.opened"
        assert headers["x-cmsv6-event"] == "alarm.opened"
        assert event["data"]["alarm"]["phone"] == NORTH


class FakeAgent:
    """An Agent whose requests answer as ``answer(url)`` says: a status, an exception, or
    None for never (until cancelled)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[tuple[str, Headers]] = []
        self.pending: list[defer.Deferred[Any]] = []

    def request(self, method: bytes, url: bytes, headers: Headers, body: Any) -> Any:
        self.requests.append((url.decode(), headers))
        outcome = self.answer(url.decode())
        if outcome is None:
            d: defer.Deferred[Any] = defer.Deferred()
            self.pending.append(d)
            return d
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(_Answer(outcome))


class _Answer:
    def __init__(self, code: int) -> None:
        self.code = code

    def deliverBody(self, proto: Any) -> None:  # noqa: N802
        proto.connectionLost(None)


def _clock() -> task.Clock:
    clock = task.Clock()
    # The outbox's times are the database's: a second ahead of now, rows written by the
    # test just after this are due.
    clock.advance(time.time() + 1)
    return clock


@pytest_twisted.inlineCallbacks
def test_backoff_doubles_and_holds_the_endpoint(web: Web) -> None:
    """After a failed attempt nothing is sent to that webhook before the back-off has
    passed; the back-off doubles per attempt; a 2xx removes the delivery."""
    clock = _clock()
    answers = iter([500, ConnectionRefusedError("refused"), 204])
    agent = FakeAgent(lambda url: next(answers))
    dispatcher = Dispatcher(web.db, clock, clock=clock, agent=agent, backoff=10, max_backoff=1000)
    dispatcher.running = True  # polled by hand, not by its loop
    add_hook(web.dsn, "http://example.invalid/hook")
    add_alarm(web.dsn, web.device_id(NORTH), "bit:emergency", datetime(2026, 11, 25, tzinfo=timezone.utc))
    for wait, sent in ((0, 1), (0, 1), (9.5, 1), (1, 2), (19.5, 2), (1, 3)):
        clock.advance(wait)
        yield dispatcher.poll_once()
        assert len(agent.requests) == sent, (wait, sent)
    assert outbox(web.dsn) == []
    assert [backoff_delay(n, 10, 1000) for n in (1, 2, 3, 8, 40)] == [10, 20, 40, 1000, 1000]


@pytest_twisted.inlineCallbacks
def test_a_dead_endpoint_holds_up_no_other(web: Web) -> None:
    """A webhook that never answers gets at most ``per_webhook`` requests at once, each
    given up at its deadline; meanwhile another webhook gets all of its events."""
    clock = _clock()
    agent = FakeAgent(lambda url: None if "dead" in url else 200)
    dispatcher = Dispatcher(web.db, clock, clock=clock, agent=agent, per_webhook=2, timeout=10,
                            backoff=60)  # fmt: skip
    dispatcher.running = True
    add_hook(web.dsn, "http://dead.invalid/hook")
    add_hook(web.dsn, "http://alive.invalid/hook")
    north = web.device_id(NORTH)
    for n in range(5):
        add_alarm(web.dsn, north, f"bit:k{n}", datetime(2026, 11, 25, tzinfo=timezone.utc))
    first = dispatcher.poll_once()  # fires when its dead deliveries end
    yield until(lambda: len(dispatcher.in_flight.get(1, ())) == 2 and 2 not in dispatcher.in_flight,
                "two requests to the dead webhook in flight, the live one's done")
    for _ in range(2):  # the live webhook drains, 2 at a time, its deliveries awaited
        yield dispatcher.poll_once()
    dead = [u for u, _ in agent.requests if "dead" in u]
    assert len(dead) == 2 and len(dispatcher.in_flight[1]) == 2
    assert [e for e, _, _ in outbox(web.dsn)] == ["alarm.opened"] * 5  # the dead one's only
    clock.advance(10)  # the deadline: both given up, recorded as failed
    yield within(first, "the dead deliveries to end")
    assert dispatcher.in_flight == {}
    failed = query(web.dsn, "SELECT count(*) FROM webhook_deliveries WHERE attempts = 1"
                            " AND last_error LIKE 'no answer within 10 s'")[0][0]  # fmt: skip
    assert failed == 2


@pytest_twisted.inlineCallbacks
def test_given_up_after_max_attempts_and_aged_out(web: Web) -> None:
    """A delivery is dropped after ``max_attempts`` failures, and the sweep drops what is
    too old or over ``max_pending`` for a webhook; the webhook counts them."""
    clock = _clock()
    agent = FakeAgent(lambda url: 503)
    dispatcher = Dispatcher(web.db, clock, clock=clock, agent=agent, backoff=1, max_attempts=2,
                            max_pending=2)  # fmt: skip
    dispatcher.running = True
    hook = add_hook(web.dsn, "http://example.invalid/hook")
    north = web.device_id(NORTH)
    add_alarm(web.dsn, north, "bit:first", datetime(2026, 11, 25, tzinfo=timezone.utc))
    yield dispatcher.poll_once()
    clock.advance(5)
    yield dispatcher.poll_once()
    assert outbox(web.dsn) == [] and len(agent.requests) == 2
    for n in range(4):
        add_alarm(web.dsn, north, f"bit:k{n}", datetime(2026, 11, 25, tzinfo=timezone.utc))
    dropped = yield store.age_out(web.db, datetime.now(timezone.utc) - timedelta(days=1), keep=2)
    assert dropped == 2 and len(outbox(web.dsn)) == 2
    dropped = yield store.age_out(web.db, datetime.now(timezone.utc) + timedelta(seconds=1), keep=2)
    assert dropped == 2 and outbox(web.dsn) == []
    assert query(web.dsn, "SELECT dropped FROM webhooks WHERE id = %s", (hook,))[0][0] == 5



def test_the_dispatcher_waits_for_its_database() -> None:
    """A login server becomes active before its database has connected: the dispatcher
    reads the outbox only once the database is there (no warnings of a database not
    connected), and a poll cut short by the stop is no warning either."""
    from twisted.internet import defer, task

    from cmsv6.webhooks.dispatcher import Dispatcher

    class Db:
        def __init__(self) -> None:
            self.connected: defer.Deferred[None] = defer.Deferred()
            self.queries = 0

        def ready(self) -> defer.Deferred[None]:
            return self.connected

        def run_query(self, *args: object, **kwargs: object) -> defer.Deferred[list[object]]:
            self.queries += 1
            return defer.succeed([])

        run_interaction = run_operation = run_query

    clock = task.Clock()
    db = Db()
    dispatcher = Dispatcher(db, clock, clock=clock, agent=object())  # type: ignore[arg-type]
    dispatcher.startService()
    clock.advance(10)
    assert db.queries == 0
    db.connected.callback(None)
    clock.advance(1)
    assert db.queries > 0
    dispatcher.stopService()
