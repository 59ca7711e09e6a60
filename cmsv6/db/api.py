"""Every query of the Open API and the client WebSocket: users and tokens, what a user may
see, devices, positions, alarms, commands, and the WebSocket's poll.

Visibility is decided here, in SQL: an admin sees every device; an operator sees the
devices of the fleets in ``user_fleets``. A device a user may not see is reported exactly
as one that does not exist (None), so the API never leaks its existence.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from attrs import frozen
from twisted.internet import defer

from cmsv6.db.service import Database

ALARM_STATES = ("new", "acknowledged", "handled", "dismissed")


@frozen
class User:
    id: int
    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@frozen
class Credentials:
    user: User
    password_hash: str


@frozen
class Position:
    time: datetime
    received: datetime
    latitude: float
    longitude: float
    altitude: int
    speed: float
    direction: int
    alarm: int
    status: int
    extras: Any
    blind: bool | None = None
    digest: bytes | None = None


@frozen
class DeviceRow:
    id: int
    phone: str
    plate: str | None
    fleet: str | None
    protocol: int | None
    channels: int
    last_position: Position | None


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


# The visibility test on ``devices d`` for the user in %(uid)s / %(admin)s.
_VISIBLE = "(%(admin)s OR d.fleet_id IN (SELECT fleet_id FROM user_fleets WHERE user_id = %(uid)s))"


def _who(user: User, **more: Any) -> dict[str, Any]:
    return {"uid": user.id, "admin": user.admin, **more}


# -- users and tokens ----------------------------------------------------------------------


@defer.inlineCallbacks
def credentials(db: Database, name: str) -> Any:
    """The user called ``name`` with their password hash, or None."""
    rows = yield db.run_query(
        "SELECT id, name, role, password_hash FROM users WHERE name = %s", (name,)
    )
    if not rows:
        return None
    uid, uname, role, password_hash = rows[0]
    return Credentials(User(uid, uname, role), password_hash)


def store_token(
    db: Database, token_hash: bytes, user: User, created: datetime, expires: datetime,
    address: str | None,
) -> defer.Deferred[None]:  # fmt: skip
    return db.run_operation(
        "INSERT INTO api_tokens (token_hash, user_id, created, expires, address)"
        " VALUES (%s, %s, %s, %s, %s)",
        (token_hash, user.id, created, expires, address),
    )


@defer.inlineCallbacks
def user_by_token(db: Database, token_hash: bytes, now: datetime) -> Any:
    """The user holding this (hashed) token if it has not expired, else None."""
    rows = yield db.run_query(
        "SELECT u.id, u.name, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = %s AND t.expires > %s",
        (token_hash, now),
    )
    return User(*rows[0]) if rows else None


@defer.inlineCallbacks
def live_tokens(db: Database, token_hashes: list[bytes], now: datetime) -> Any:
    """Those of these (hashed) tokens that exist and have not expired."""
    if not token_hashes:
        return set()
    rows = yield db.run_query(
        "SELECT token_hash FROM api_tokens WHERE token_hash = ANY(%s) AND expires > %s",
        (token_hashes, now),
    )
    return {bytes(r[0]) for r in rows}


def revoke_token(db: Database, token_hash: bytes) -> defer.Deferred[None]:
    return db.run_operation("DELETE FROM api_tokens WHERE token_hash = %s", (token_hash,))


def delete_expired_tokens(db: Database, now: datetime) -> defer.Deferred[None]:
    return db.run_operation("DELETE FROM api_tokens WHERE expires <= %s", (now,))


# -- devices -------------------------------------------------------------------------------

_DEVICE_SELECT = (
    "SELECT d.id, d.phone, d.plate, f.name, d.protocol, d.channels,"
    " lp.time, lp.received, lp.latitude, lp.longitude, lp.altitude, lp.speed, lp.direction,"
    " lp.alarm, lp.status, lp.extras"
    " FROM devices d LEFT JOIN fleets f ON f.id = d.fleet_id"
    " LEFT JOIN last_positions lp ON lp.device_id = d.id"
)


def _device_row(row: tuple[Any, ...]) -> DeviceRow:
    last = Position(*row[6:16]) if row[6] is not None else None
    return DeviceRow(*row[:6], last)  # type: ignore[call-arg]


@defer.inlineCallbacks
def list_devices(db: Database, user: User) -> Any:
    """Every device the user may see, by phone."""
    rows = yield db.run_query(f"{_DEVICE_SELECT} WHERE {_VISIBLE} ORDER BY d.phone", _who(user))
    return [_device_row(r) for r in rows]


@defer.inlineCallbacks
def get_device(db: Database, user: User, phone: str) -> Any:
    """The device with this (canonical) phone if the user may see it, else None."""
    rows = yield db.run_query(
        f"{_DEVICE_SELECT} WHERE d.phone = %(phone)s AND {_VISIBLE}", _who(user, phone=phone)
    )
    return _device_row(rows[0]) if rows else None


@defer.inlineCallbacks
def visible_devices(db: Database, user: User, phones: Iterable[str]) -> Any:
    """{phone: device id} of those of ``phones`` the user may see."""
    rows = yield db.run_query(
        f"SELECT d.phone, d.id FROM devices d WHERE d.phone = ANY(%(phones)s) AND {_VISIBLE}",
        _who(user, phones=list(phones)),
    )
    return dict(rows)


# -- positions -----------------------------------------------------------------------------


@defer.inlineCallbacks
def positions(
    db: Database,
    device_id: int,
    start: datetime,
    end: datetime,
    limit: int,
    after: tuple[datetime, bytes | None] | None = None,
) -> Any:
    """Positions of a device with ``start <= time < end``, oldest first, at most ``limit``;
    with ``after`` = (time, digest) only those after that one (digest None: after that time)."""
    args: dict[str, Any] = {"dev": device_id, "start": start, "end": end, "limit": limit}
    where = "device_id = %(dev)s AND time >= %(start)s AND time < %(end)s"
    if after is not None:
        args["after"], args["digest"] = after
        if after[1] is None:
            where += " AND time > %(after)s"
        else:
            where += " AND (time, digest) > (%(after)s, %(digest)s)"
    rows = yield db.run_query(
        "SELECT time, received, latitude, longitude, altitude, speed, direction, alarm, status,"
        f" extras, blind, digest FROM positions WHERE {where}"
        " ORDER BY time, digest LIMIT %(limit)s",
        args,
    )
    return [Position(*r[:11], bytes(r[11])) for r in rows]


# -- alarms --------------------------------------------------------------------------------

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
    args = _who(user, start=start, end=end, limit=limit)
    where = f"a.started >= %(start)s AND a.started < %(end)s AND {_VISIBLE}"
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
            f" WHERE a.id = %(id)s AND d.id = a.device_id AND {_VISIBLE} RETURNING a.id",
            _who(user, state=state, now=now, note=note, id=alarm_id),
        )
        if not cur.fetchall():
            return False
        yield cur.execute(
            "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
            (now, user.id, "alarm.handle",
             json.dumps({"alarm": alarm_id, "state": state, "note": note}, ensure_ascii=False)),
        )  # fmt: skip
        return True

    found = yield db.run_interaction(txn)
    if not found:
        return None
    rows = yield db.run_query(f"{_ALARM_SELECT} WHERE a.id = %s", (alarm_id,))
    return Alarm(*rows[0]) if rows else None


# -- commands ------------------------------------------------------------------------------


@defer.inlineCallbacks
def start_command(
    db: Database, user: User, device_id: int, phone: str, msg_id: int, command: Any,
    now: datetime,
) -> Any:  # fmt: skip
    """Record a command about to be sent (status pending) and audit it; its id."""

    @defer.inlineCallbacks
    def txn(cur: Any) -> Any:
        yield cur.execute(
            "INSERT INTO commands (device_id, user_id, msg_id, body, created, status)"
            " VALUES (%s, %s, %s, %s::jsonb, %s, 'pending') RETURNING id",
            (device_id, user.id, msg_id, json.dumps(command, ensure_ascii=False), now),
        )
        (command_id,) = cur.fetchone()
        yield cur.execute(
            "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
            (now, user.id, "command",
             json.dumps({"command": command_id, "phone": phone, "msg_id": f"0x{msg_id:04x}"})),
        )  # fmt: skip
        return command_id

    command_id = yield db.run_interaction(txn)
    return command_id


def finish_command(
    db: Database, command_id: int, status: str, reply: Any, now: datetime
) -> defer.Deferred[None]:
    """A command's outcome: replied / timeout / offline / failed, with the decoded reply."""
    return db.run_operation(
        "UPDATE commands SET status = %s, reply = %s::jsonb, finished = %s WHERE id = %s",
        (status, json.dumps(reply, ensure_ascii=False) if reply is not None else None, now,
         command_id),
    )  # fmt: skip


@defer.inlineCallbacks
def command_row(db: Database, command_id: int) -> Any:
    """(status, msg_id, reply) of a command (for tests and the audit view)."""
    rows = yield db.run_query(
        "SELECT status, msg_id, reply FROM commands WHERE id = %s", (command_id,)
    )
    return rows[0] if rows else None


# -- the WebSocket's poll ------------------------------------------------------------------


@defer.inlineCallbacks
def changed_positions(db: Database, sent: dict[int, datetime | None]) -> Any:
    """[(device id, phone, Position)] of the devices in ``sent`` whose last position is not
    the one last sent (``received`` differs: each device's rows come from one gateway's
    clock, so this needs no agreement between clocks)."""
    if not sent:
        return []
    ids = list(sent)
    rows = yield db.run_query(
        "SELECT s.id, d.phone, lp.time, lp.received, lp.latitude, lp.longitude, lp.altitude,"
        " lp.speed, lp.direction, lp.alarm, lp.status, lp.extras"
        " FROM unnest(%s::bigint[], %s::timestamptz[]) AS s(id, sent)"
        " JOIN last_positions lp ON lp.device_id = s.id"
        " JOIN devices d ON d.id = s.id"
        " WHERE lp.received IS DISTINCT FROM s.sent",
        (ids, [sent[i] for i in ids]),
    )
    return [(r[0], r[1], Position(*r[2:12])) for r in rows]


@defer.inlineCallbacks
def new_alarms(db: Database, device_ids: list[int], since: datetime | None) -> Any:
    """(database time now, [(device id, Alarm)] of these devices written after ``since``).

    With ``since`` None only the time is read (the first poll starts from now)."""
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
