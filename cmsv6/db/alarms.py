"""Alarms: opened and closed by the gateway's reports, read and handled by users.

The gateway's changes (``AlarmChange``, ``AlarmReset``) are written in the same
transaction as the positions that carry them (``positions.batch_sql``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from attrs import frozen
from twisted.internet import defer

from cmsv6.db.fleets import VISIBLE, who
from cmsv6.db.service import Database
from cmsv6.db.users import User

ALARM_STATES = ("new", "acknowledged", "handled", "dismissed")


@frozen
class Alarm:
    id: int
    phone: str
    kind: str
    started: datetime
    ended: datetime | None
    latitude: float | None
    longitude: float | None
    details: Any
    state: str
    handled: datetime | None
    handled_by: str | None
    note: str | None
    created: datetime


@frozen
class AlarmChange:
    """An alarm of ``kind`` opened (``opened=True``) or closed at ``time`` on a device.

    ``instant`` alarms (active-safety events) open and close at once.
    """

    device_id: int
    kind: str
    time: datetime
    opened: bool
    latitude: float | None = None
    longitude: float | None = None
    details: str | None = None  # JSON text
    instant: bool = False


@frozen
class AlarmReset:
    """The first report of a session: close the device's open alarm-bit alarms (kinds
    starting ``bit:``) except those still set, whatever happened while it was away."""

    device_id: int
    time: datetime
    keep: tuple[str, ...]


# -- the gateway's changes -----------------------------------------------------------------

_RESET = (
    "UPDATE alarms SET ended = %s WHERE device_id = %s AND ended IS NULL"
    " AND kind LIKE 'bit:%%' AND NOT (kind = ANY(%s::text[]))"
)
_OPEN = (
    "INSERT INTO alarms (device_id, kind, started, ended, latitude, longitude, details)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)"
    " ON CONFLICT (device_id, kind) WHERE ended IS NULL DO NOTHING"
)
_CLOSE = "UPDATE alarms SET ended = %s WHERE device_id = %s AND kind = %s AND ended IS NULL"


def change_statements(changes: list[AlarmChange | AlarmReset]) -> tuple[list[str], list[Any]]:
    """The statements and their arguments that apply ``changes``, in order."""
    statements: list[str] = []
    args: list[Any] = []
    for change in changes:
        if isinstance(change, AlarmReset):
            statements.append(_RESET)
            args += [change.time, change.device_id, list(change.keep)]
        elif change.opened:
            statements.append(_OPEN)
            args += [
                change.device_id, change.kind, change.time,
                change.time if change.instant else None,
                change.latitude, change.longitude, change.details,
            ]  # fmt: skip
        else:
            statements.append(_CLOSE)
            args += [change.time, change.device_id, change.kind]
    return statements, args


# -- what users see and do -----------------------------------------------------------------

_ALARM_SELECT = (
    "SELECT a.id, d.phone, a.kind, a.started, a.ended, a.latitude, a.longitude, a.details,"
    " a.state, a.handled, u.name, a.note, a.created"
    " FROM alarms a JOIN devices d ON d.id = a.device_id"
    " LEFT JOIN users u ON u.id = a.handled_by"
)


@defer.inlineCallbacks
def alarms(
    db: Database,
    user: User,
    start: datetime,
    end: datetime,
    limit: int,
    device_id: int | None = None,
    state: str | None = None,
    after: tuple[datetime, int] | None = None,
) -> Any:
    """Alarms the user may see that started in [start, end), oldest first, at most
    ``limit``; ``after`` = (started, id) of the last one of the previous page."""
    args = who(user, start=start, end=end, limit=limit)
    where = f"a.started >= %(start)s AND a.started < %(end)s AND {VISIBLE}"
    if device_id is not None:
        where += " AND a.device_id = %(dev)s"
        args["dev"] = device_id
    if state is not None:
        where += " AND a.state = %(state)s"
        args["state"] = state
    if after is not None:
        where += " AND (a.started, a.id) > (%(after)s, %(after_id)s)"
        args["after"], args["after_id"] = after
    rows = yield db.run_query(
        f"{_ALARM_SELECT} WHERE {where} ORDER BY a.started, a.id LIMIT %(limit)s", args
    )
    return [Alarm(*r) for r in rows]


@defer.inlineCallbacks
def handle_alarm(
    db: Database, user: User, alarm_id: int, state: str, note: str | None, now: datetime
) -> Any:
    """Set an alarm's handling state (with who, when and a note) and record it in the audit,
    in one transaction. The alarm, or None if the user may not see it."""

    @defer.inlineCallbacks
    def txn(cur: Any) -> Any:
        yield cur.execute(
            "UPDATE alarms a SET state = %(state)s, handled = %(now)s, handled_by = %(uid)s,"
            " note = %(note)s FROM devices d"
            f" WHERE a.id = %(id)s AND d.id = a.device_id AND {VISIBLE} RETURNING d.phone",
            who(user, state=state, now=now, note=note, id=alarm_id),
        )
        found = cur.fetchall()
        if not found:
            return False
        # The phone too: the audit is read by device (GET /api/v1/audit?device=).
        yield cur.execute(
            "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
            (now, user.id, "alarm.handle",
             json.dumps({"alarm": alarm_id, "phone": found[0][0], "state": state, "note": note},
                        ensure_ascii=False)),
        )  # fmt: skip
        return True

    found = yield db.run_interaction(txn)
    if not found:
        return None
    rows = yield db.run_query(f"{_ALARM_SELECT} WHERE a.id = %s", (alarm_id,))
    return Alarm(*rows[0]) if rows else None


@defer.inlineCallbacks
def new_alarms(db: Database, device_ids: list[int], since: datetime | None) -> Any:
    """(database time now, [(device id, Alarm)] of these devices written after ``since``):
    the client WebSocket's poll. With ``since`` None only the time is read (the first poll
    starts from now)."""
    if since is None or not device_ids:
        rows = yield db.run_query("SELECT now()")
        return rows[0][0], []
    rows = yield db.run_query(
        "WITH t AS (SELECT now() AS now)"
        " SELECT t.now, x.* FROM t LEFT JOIN ("
        "   SELECT a.device_id, a.id, d.phone, a.kind, a.started, a.ended, a.latitude,"
        "          a.longitude, a.details, a.state, a.handled, u.name, a.note, a.created"
        "   FROM alarms a JOIN devices d ON d.id = a.device_id"
        "   LEFT JOIN users u ON u.id = a.handled_by"
        "   WHERE a.device_id = ANY(%s::bigint[]) AND a.created > %s"
        "   ORDER BY a.created, a.id LIMIT 5000"
        " ) x ON true",
        (device_ids, since),
    )
    now = rows[0][0]
    return now, [(r[1], Alarm(*r[2:])) for r in rows if r[1] is not None]
