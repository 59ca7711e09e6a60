"""The dispatcher: POSTs the webhook outbox (``webhook_deliveries``) to the webhooks.

Run by the active login server only (``cmsv6.plugins.login.tap.Serving``): a standby
dispatches nothing, and the server taking over finds the outbox as the other left it (a
delivery in flight when it died is sent again: at least once).

A dead or slow endpoint never slows the platform or the other webhooks:

* every request has a deadline (``timeout``: connecting, sending, the answer's status and
  at most ``MAX_ANSWER`` bytes of its body, which is otherwise ignored);
* at most ``per_webhook`` requests are in flight to one webhook, and each poll fetches at
  most that many of each webhook's due deliveries, so one webhook's backlog hides no other's;
* a failed attempt is retried after an exponential back-off (``backoff`` doubling per
  attempt up to ``max_backoff``), and its webhook is held back as long, so a dead
  endpoint gets one request per back-off rather than its whole backlog;
* a delivery is given up after ``max_attempts`` attempts or ``max_age`` seconds, and each
  webhook keeps at most ``max_pending`` deliveries (the oldest go first): the outbox is
  bounded whatever the endpoints do. Given-up deliveries are counted on the webhook
  (``GET /api/v1/webhooks`` shows them and the last error).

Redirects are not followed: a webhook's URL is where it is delivered.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from io import BytesIO
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers

from cmsv6.db import webhooks as store
from cmsv6.db.service import Database
from cmsv6.webhooks.signing import DELIVERY, EVENT, SIGNATURE, TIMESTAMP, signature

_log = Logger()

#: The most of an answer's body read (and thrown away) before the connection is closed.
MAX_ANSWER = 64 * 1024
USER_AGENT = b"cmsv6-webhooks/1"


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1, 2, ...): ``base``
    doubling each time, at most ``cap``."""
    return float(min(cap, base * 2 ** min(max(attempts - 1, 0), 40)))


class _Discard(protocol.Protocol):
    """Reads an answer's body, at most MAX_ANSWER bytes, and forgets it."""

    def __init__(self, done: defer.Deferred[None]) -> None:
        self.done = done
        self.size = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.size += len(data)
        if self.size > MAX_ANSWER and self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        if not self.done.called:
            self.done.callback(None)


class Dispatcher(Service):
    """Polls the outbox every ``poll`` seconds and delivers what is due."""

    name = "webhooks"

    def __init__(
        self,
        db: Database,
        reactor: Any,
        clock: Any = None,
        agent: Any = None,
        poll: float = 1.0,
        timeout: float = 10.0,
        per_webhook: int = 4,
        backoff: float = 5.0,
        max_backoff: float = 3600.0,
        max_attempts: int = 15,
        max_age: float = 86400.0,
        max_pending: int = 10000,
        sweep: float = 60.0,
    ) -> None:
        self.db = db
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        if agent is None:
            agent = Agent(reactor, connectTimeout=timeout,
                          pool=HTTPConnectionPool(reactor, persistent=False))  # fmt: skip
        self.agent = agent
        self.poll = poll
        self.timeout = timeout
        self.per_webhook = per_webhook
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.max_pending = max_pending
        self.sweep = sweep
        #: webhook id → the ids of its deliveries in flight.
        self.in_flight: dict[int, set[int]] = {}
        #: webhook id → (consecutive failures, not before this time).
        self.held: dict[int, tuple[int, float]] = {}
        self._requests: set[defer.Deferred[Any]] = set()
        self._fetching = False
        self._loops: list[task.LoopingCall] = []

    # -- service -----------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()
        # A login server may become active before its database has connected: the loops
        # start once it has (a stop meanwhile starts nothing).
        ready = getattr(self.db, "ready", None)
        d = ready() if ready is not None else None
        if d is None or d.called:
            self._start_loops()
        else:
            d.addCallback(lambda _: self._start_loops() if self.running else None)

    def _start_loops(self) -> None:
        if self._loops:
            return
        for interval, work in ((self.poll, self._tick), (self.sweep, self._sweep)):
            loop = task.LoopingCall(work)
            loop.clock = self.clock
            loop.start(interval, now=True).addErrback(
                lambda f: _log.failure("webhooks: a loop ended", f))
            self._loops.append(loop)
        _log.info("webhooks: delivering")

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        # What was in flight is delivered by whoever runs next (at least once).
        for d in list(self._requests):
            d.cancel()

    # -- the loop ----------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def _tick(self) -> None:
        if self._fetching:
            return
        self.poll_once().addErrback(self._poll_failed)

    def _poll_failed(self, failure: Failure) -> None:
        if not self.running:  # a poll under way when the server stopped: nothing is lost
            _log.debug("webhooks: poll ended by the stop: {error}", error=failure.getErrorMessage())
            return
        _log.warn("webhooks: cannot read the outbox: {error}", error=failure.getErrorMessage())

    def _sweep(self) -> Any:
        older = self.now() - timedelta(seconds=self.max_age)
        d = store.age_out(self.db, older, self.max_pending)

        def swept(count: int) -> None:
            if count:
                _log.warn("webhooks: gave up {count} deliveries (older than {age} s, or over"
                          " {keep} waiting for one webhook)", count=count, age=self.max_age,
                          keep=self.max_pending)  # fmt: skip

        return d.addCallbacks(swept, self._poll_failed)

    @defer.inlineCallbacks
    def poll_once(self) -> Any:
        """Fetch what is due and start delivering it; fires when those deliveries are done
        (the loop does not wait for that: only tests do)."""
        self._fetching = True
        try:
            busy = [i for ids in self.in_flight.values() for i in ids]
            due = yield store.due(self.db, self.now(), self.per_webhook, busy)
        finally:
            self._fetching = False
        started = []
        now = self.clock.seconds()
        for delivery in due:
            if not self.running:
                break
            flying = self.in_flight.setdefault(delivery.webhook_id, set())
            _, until = self.held.get(delivery.webhook_id, (0, 0.0))
            if now < until or len(flying) >= self.per_webhook or delivery.id in flying:
                continue
            flying.add(delivery.id)
            started.append(self._deliver(delivery))
        if started:
            yield defer.DeferredList(started, consumeErrors=True)

    # -- one delivery ------------------------------------------------------------------------

    def _deliver(self, delivery: store.Delivery) -> defer.Deferred[None]:
        stamp = int(self.clock.seconds())
        headers = Headers({
            b"content-type": [b"application/json"],
            b"user-agent": [USER_AGENT],
            EVENT.encode(): [delivery.event.encode()],
            DELIVERY.encode(): [delivery.event_id.encode()],
            TIMESTAMP.encode(): [str(stamp).encode()],
            SIGNATURE.encode(): [signature(delivery.secret, stamp, delivery.body).encode()],
        })  # fmt: skip
        try:
            d = self.agent.request(b"POST", delivery.url.encode("ascii"), headers,
                                   FileBodyProducer(BytesIO(delivery.body)))  # fmt: skip
        except Exception as e:  # noqa: BLE001 - a URL the agent refuses: a failed attempt
            d = defer.fail(e)
        d.addCallback(self._answered)
        d.addTimeout(self.timeout, self.clock)
        self._requests.add(d)
        d.addBoth(self._forget, d)
        d.addCallbacks(self._succeeded, self._failed, callbackArgs=(delivery,),
                       errbackArgs=(delivery,))  # fmt: skip
        d.addErrback(lambda f: _log.failure("webhooks: delivery {id} not recorded", f,
                                            id=delivery.id))  # fmt: skip
        d.addBoth(self._landed, delivery)
        return d

    def _forget(self, result: Any, d: defer.Deferred[Any]) -> Any:
        self._requests.discard(d)
        return result

    def _answered(self, response: Any) -> defer.Deferred[int]:
        def cancel(_: Any) -> None:  # past the deadline: close the connection
            if reader.transport is not None:
                reader.transport.stopProducing()

        done: defer.Deferred[None] = defer.Deferred(cancel)
        reader = _Discard(done)
        response.deliverBody(reader)
        return done.addCallback(lambda _: response.code)

    def _landed(self, result: Any, delivery: store.Delivery) -> None:
        flying = self.in_flight.get(delivery.webhook_id)
        if flying is not None:
            flying.discard(delivery.id)
            if not flying:
                del self.in_flight[delivery.webhook_id]

    def _succeeded(self, code: int, delivery: store.Delivery) -> Any:
        if not 200 <= code < 300:
            return self._failed(Failure(ValueError(f"answered HTTP {code}")), delivery)
        self.held.pop(delivery.webhook_id, None)
        _log.debug("webhooks: {event} {id} delivered to {url}", event=delivery.event,
                   id=delivery.event_id, url=delivery.url)  # fmt: skip
        return store.delivered(self.db, delivery.id)

    def _failed(self, failure: Failure, delivery: store.Delivery) -> Any:
        if not self.running:  # cancelled by stopService: the next active server sends it
            return None
        if failure.check(defer.TimeoutError, defer.CancelledError):
            error = f"no answer within {self.timeout:g} s"
        elif failure.check(ResponseDone):
            error = "the connection closed"
        else:
            error = failure.getErrorMessage() or failure.type.__name__
        now = self.clock.seconds()
        failures, _ = self.held.get(delivery.webhook_id, (0, 0.0))
        self.held[delivery.webhook_id] = (
            failures + 1, now + backoff_delay(failures + 1, self.backoff, self.max_backoff))
        attempts = delivery.attempts + 1
        age = now - delivery.created.timestamp()
        if attempts >= self.max_attempts or age >= self.max_age:
            _log.warn("webhooks: gave up {event} {id} to {url} after {attempts} attempts: {error}",
                      event=delivery.event, id=delivery.event_id, url=delivery.url,
                      attempts=attempts, error=error)  # fmt: skip
            return store.dropped(self.db, delivery.id, error)
        delay = backoff_delay(attempts, self.backoff, self.max_backoff)
        _log.info("webhooks: {event} {id} to {url} failed ({error}); again in {delay:g} s",
                  event=delivery.event, id=delivery.event_id, url=delivery.url, error=error,
                  delay=delay)  # fmt: skip
        return store.failed(self.db, delivery.id, self.now() + timedelta(seconds=delay), error)
