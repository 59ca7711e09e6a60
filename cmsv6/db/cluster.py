"""The cluster's own reads and writes: which announced phones are devices, and the
``commands`` and ``audit`` rows of every command a gateway sends."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from twisted.internet import defer

from cmsv6.db.service import Database
from cmsv6.phone import canonical_phone


@defer.inlineCallbacks
def known_phones(db: Database, phones: Iterable[str]) -> Any:
    """The set of ``phones`` (canonical) that are devices."""
    wanted = sorted({canonical_phone(p) for p in phones})
    if not wanted:
        return set()
    rows = yield db.run_query("SELECT phone FROM devices WHERE phone = ANY(%s)", (wanted,))
    return {phone for (phone,) in rows}


@defer.inlineCallbacks
def record_sent(
    db: Database, gateway_id: str, phone: str, msg_id: int, body: bytes, by: str,
    command_id: int | None, now: datetime,
) -> Any:  # fmt: skip
    """A command the gateway is about to send: the caller's ``commands`` row (``command_id``,
    when it names a pending one for this device and message) marked sent, else a new row;
    and an ``audit`` row either way. Fires with (row id, whether the row is the gateway's
    own to finish)."""
    phone = canonical_phone(phone)

    @defer.inlineCallbacks
    def txn(cur: Any) -> Any:
        yield cur.execute("SELECT id FROM devices WHERE phone = %s", (phone,))
        row = cur.fetchone()
        device_id = row[0] if row else None
        own, row_id = True, command_id
        if command_id is not None:
            yield cur.execute(
                "UPDATE commands SET status = 'sent' WHERE id = %s AND device_id = %s"
                " AND msg_id = %s AND status = 'pending' RETURNING id",
                (command_id, device_id, msg_id),
            )
            own = cur.fetchone() is None
        if own:
            yield cur.execute(
                "INSERT INTO commands (device_id, msg_id, body, created, status)"
                " VALUES (%s, %s, %s::jsonb, %s, 'sent') RETURNING id",
                (device_id, msg_id, json.dumps({"hex": body.hex(), "by": by}), now),
            )
            (row_id,) = cur.fetchone()
        yield cur.execute(
            "INSERT INTO audit (time, action, details) VALUES (%s, 'gateway command', %s::jsonb)",
            (now, json.dumps({"command": row_id, "gateway": gateway_id, "phone": phone,
                              "msg_id": f"0x{msg_id:04x}", "by": by}, ensure_ascii=False)),
        )  # fmt: skip
        return row_id, own

    result = yield db.run_interaction(txn)
    return result


def finish_sent(db: Database, command_id: int, status: str, reply: Any, now: datetime) -> defer.Deferred[None]:
    """The outcome of a command the gateway recorded itself: replied / timeout / offline / failed."""
    return db.run_operation(
        "UPDATE commands SET status = %s, reply = %s::jsonb, finished = %s WHERE id = %s",
        (status, json.dumps(reply) if reply is not None else None, now, command_id),
    )
