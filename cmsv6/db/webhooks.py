"""Webhooks and their outbox (schema step 0007): registered by admins through the Open API,
filled by triggers, drained by the active login server (``cmsv6.webhooks.dispatcher``).

Times the dispatcher compares (``next_attempt``, ``created``) are given to it by its
clock, so that tests drive back-off with a ``task.Clock``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from attrs import frozen
from twisted.internet import defer

from cmsv6.db.service import Database
from cmsv6.db.users import User


@frozen
class Webhook:
    id: int
    url: str
    events: tuple[str, ...]
    description: str | None
    created: datetime
    created_by: str | None
    pending: int
    dropped: int
    last_error: str | None


@frozen
class Delivery:
    """One event due to one webhook: ``body`` is the exact bytes to POST."""

    id: int
    webhook_id: int
    url: str
    secret: str
    event_id: str
    event: str
    body: bytes
    attempts: int
    created: datetime


_SELECT = (
    "SELECT w.id, w.url, w.events, w.description, w.created, u.name,"
    " (SELECT count(*) FROM webhook_deliveries d WHERE d.webhook_id = w.id), w.dropped,"
    " w.last_error FROM webhooks w LEFT JOIN users u ON u.id = w.created_by"
)


def _webhook(row: Sequence[Any]) -> Webhook:
    return Webhook(row[0], row[1], tuple(row[2]), row[3], row[4], row[5], int(row[6]),
                   int(row[7]), row[8])  # fmt: skip


@defer.inlineCallbacks
def add_webhook(db: Database, user: User, url: str, events: Sequence[str], secret: str,
                description: str | None, now: datetime) -> Any:  # fmt: skip
    """Register a webhook; the Webhook."""

    @defer.inlineCallbacks
    def txn(cur: Any) -> Any:
        yield cur.execute(
            "INSERT INTO webhooks (url, events, secret, description, created, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (url, list(events), secret, description, now, user.id),
        )
        (ident,) = cur.fetchone()
        yield cur.execute(
            "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
            (now, user.id, "webhook.add", _details(ident, url, events)),
        )
        yield cur.execute(f"{_SELECT} WHERE w.id = %s", (ident,))
        return _webhook(cur.fetchone())

    webhook = yield db.run_interaction(txn)
    return webhook


def _details(ident: int, url: str, events: Sequence[str]) -> str:
    import json

    return json.dumps({"webhook": ident, "url": url, "events": list(events)})


@defer.inlineCallbacks
def list_webhooks(db: Database) -> Any:
    rows = yield db.run_query(f"{_SELECT} ORDER BY w.id")
    return [_webhook(r) for r in rows]


@defer.inlineCallbacks
def delete_webhook(db: Database, user: User, ident: int, now: datetime) -> Any:
    """Remove a webhook and its outbox; the Webhook it was, None if there is none."""

    @defer.inlineCallbacks
    def txn(cur: Any) -> Any:
        yield cur.execute(f"{_SELECT} WHERE w.id = %s", (ident,))
        row = cur.fetchone()
        if row is None:
            return None
        webhook = _webhook(row)
        yield cur.execute("DELETE FROM webhooks WHERE id = %s", (ident,))
        yield cur.execute(
            "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
            (now, user.id, "webhook.delete", _details(ident, webhook.url, webhook.events)),
        )
        return webhook

    webhook = yield db.run_interaction(txn)
    return webhook


# -- the dispatcher's ------------------------------------------------------------------------


@defer.inlineCallbacks
def due(db: Database, now: datetime, per_webhook: int, busy: Sequence[int]) -> Any:
    """Deliveries due at ``now``: at most ``per_webhook`` of each webhook (oldest first), so
    that one webhook's backlog never hides another's; none of the ids in ``busy``."""
    rows = yield db.run_query(
        "SELECT d.id, w.id, w.url, w.secret, d.event_id::text, d.event, d.payload::text,"
        " d.attempts, d.created FROM webhooks w CROSS JOIN LATERAL ("
        "  SELECT * FROM webhook_deliveries x WHERE x.webhook_id = w.id"
        "  AND x.next_attempt <= %(now)s AND NOT (x.id = ANY(%(busy)s))"
        "  ORDER BY x.next_attempt, x.id LIMIT %(n)s) d ORDER BY d.id",
        {"now": now, "busy": list(busy), "n": per_webhook},
    )
    return [Delivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6].encode("utf-8"), r[7], r[8])
            for r in rows]  # fmt: skip


def delivered(db: Database, delivery_id: int) -> defer.Deferred[None]:
    return db.run_operation("DELETE FROM webhook_deliveries WHERE id = %s", (delivery_id,))


def failed(db: Database, delivery_id: int, next_attempt: datetime, error: str) -> defer.Deferred[None]:
    """One more failed attempt; the next one at ``next_attempt``."""
    return db.run_operation(
        "WITH d AS (UPDATE webhook_deliveries SET attempts = attempts + 1,"
        " next_attempt = %(next)s, last_error = %(error)s WHERE id = %(id)s RETURNING webhook_id)"
        " UPDATE webhooks SET last_error = %(error)s WHERE id IN (SELECT webhook_id FROM d)",
        {"next": next_attempt, "error": error[:500], "id": delivery_id},
    )


def dropped(db: Database, delivery_id: int, error: str) -> defer.Deferred[None]:
    """Give a delivery up (counted on its webhook)."""
    return db.run_operation(
        "WITH d AS (DELETE FROM webhook_deliveries WHERE id = %(id)s RETURNING webhook_id)"
        " UPDATE webhooks SET dropped = dropped + 1, last_error = %(error)s"
        " WHERE id IN (SELECT webhook_id FROM d)",
        {"id": delivery_id, "error": error[:500]},
    )


@defer.inlineCallbacks
def age_out(db: Database, older_than: datetime, keep: int) -> Any:
    """Drop deliveries recorded before ``older_than``, and each webhook's beyond its newest
    ``keep`` (a dead endpoint's backlog is bounded); how many were dropped."""
    rows = yield db.run_query(
        "WITH gone AS (DELETE FROM webhook_deliveries WHERE id IN ("
        "  SELECT id FROM webhook_deliveries WHERE created < %(old)s"
        "  UNION SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY webhook_id"
        "   ORDER BY id DESC) AS n FROM webhook_deliveries) r WHERE r.n > %(keep)s)"
        " RETURNING webhook_id),"
        " counted AS (SELECT webhook_id, count(*) AS n FROM gone GROUP BY webhook_id),"
        " noted AS (UPDATE webhooks w SET dropped = w.dropped + c.n,"
        "  last_error = 'deliveries given up: too old, or too many waiting'"
        "  FROM counted c WHERE w.id = c.webhook_id RETURNING c.n)"
        " SELECT coalesce(sum(n), 0) FROM noted",
        {"old": older_than, "keep": keep},
    )
    return int(rows[0][0])
