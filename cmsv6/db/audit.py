"""The audit log, as admins read it: who did what, when (rows written where the thing is
done: ``commands``, ``alarms``, ``cluster``, ``devices``, ``users``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import frozen
from twisted.internet import defer

from cmsv6.db.service import Database


@frozen
class AuditEntry:
    """One audit row. ``user`` is the Open API user who did it; rows of the command line
    and of the gateways have none, and their details say who (``by``)."""

    id: int
    time: datetime
    user: str | None
    action: str
    details: Any


@defer.inlineCallbacks
def entries(
    db: Database,
    start: datetime,
    end: datetime,
    limit: int,
    user: str | None = None,
    phone: str | None = None,
    action: str | None = None,
    after: tuple[datetime, int] | None = None,
) -> Any:
    """Audit rows with times in [start, end), newest first, at most ``limit``; only those
    of ``user`` (the API user, or the ``by`` of the details, a gateway's "gw-1: NAME"
    too), about the device ``phone``
    (canonical) or of ``action``, if given; ``after`` = (time, id) of the last row of the
    previous page."""
    args: dict[str, Any] = {"start": start, "end": end, "limit": limit}
    where = "a.time >= %(start)s AND a.time < %(end)s"
    if user is not None:
        # The command line writes who as ``by``; a gateway as "GATEWAY: WHO".
        where += (" AND (u.name = %(user)s OR a.details->>'by' = %(user)s"
                  " OR right(a.details->>'by', length(%(user)s) + 2) = ': ' || %(user)s)")
        args["user"] = user
    if phone is not None:
        where += " AND a.details->>'phone' = %(phone)s"
        args["phone"] = phone
    if action is not None:
        where += " AND a.action = %(action)s"
        args["action"] = action
    if after is not None:
        where += " AND (a.time, a.id) < (%(after)s, %(after_id)s)"
        args["after"], args["after_id"] = after
    rows = yield db.run_query(
        "SELECT a.id, a.time, u.name, a.action, a.details FROM audit a"
        f" LEFT JOIN users u ON u.id = a.user_id WHERE {where}"
        " ORDER BY a.time DESC, a.id DESC LIMIT %(limit)s",
        args,
    )
    return [AuditEntry(*r) for r in rows]
