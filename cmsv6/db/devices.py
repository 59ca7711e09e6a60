"""Devices and their sessions: the gateway's and login's registration and
authentication, what users may see (in SQL, by fleet), and ``cmsv6 device add``."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Iterable

import psycopg2
from attrs import frozen
from twisted.internet import defer

from cmsv6.db.fleets import VISIBLE, fleet_id, who
from cmsv6.db.positions import LAST_POSITION, Position
from cmsv6.db.service import AdminError, Database
from cmsv6.db.users import User
from cmsv6.phone import canonical_phone, valid_phone

# 0x8100 results (JT/T 808 table 9).
REGISTERED = 0
VEHICLE_TAKEN = 1
NO_VEHICLE = 2
TERMINAL_TAKEN = 3
NO_TERMINAL = 4


@frozen
class Device:
    id: int
    phone: str
    plate: str | None
    plate_color: int | None
    fleet: str | None  # the fleet's name
    channels: int
    protocol: int | None  # JT/T 808 edition it registered with (2013, 2019), if it has
    last_position: Position | None = None


_COLUMNS = f"d.id, d.phone, d.plate, d.plate_color, f.name, d.channels, d.protocol, {LAST_POSITION}"
_FROM = (
    " FROM devices d LEFT JOIN fleets f ON f.id = d.fleet_id"
    " LEFT JOIN last_positions lp ON lp.device_id = d.id"
)
_SELECT = f"SELECT {_COLUMNS}{_FROM}"
_FIELDS = 7


def _device(row: tuple[Any, ...]) -> Device:
    last = row[_FIELDS:_FIELDS + 11]
    return Device(*row[:_FIELDS], Position(*last) if last[0] is not None else None)


@defer.inlineCallbacks
def find(db: Database, phone: str) -> Any:
    """The device with this phone, or None."""
    rows = yield db.run_query(f"{_SELECT} WHERE d.phone = %s", (canonical_phone(phone),))
    return _device(rows[0]) if rows else None


def _clean(text: str | None, limit: int = 64) -> str | None:
    """Text from a device as PostgreSQL can hold it: no NULs, no lone surrogates, bounded."""
    if text is None:
        return None
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:limit]


@defer.inlineCallbacks
def register(
    db: Database,
    phone: str,
    *,
    manufacturer: str,
    model: str,
    terminal_id: str,
    plate_color: int,
    plate: str,
    protocol: int,
    open_registration: bool,
    now: datetime,
) -> Any:
    """Register a terminal: ``(result, auth_code)``. A known device gets a new auth code;
    an unknown one is added only when registration is open."""
    code = secrets.token_hex(8)
    values = (
        code, _clean(manufacturer), _clean(model), _clean(terminal_id), protocol, now,
        canonical_phone(phone),
    )  # fmt: skip
    rows = yield db.run_query(
        "UPDATE devices SET auth_code = %s, manufacturer = %s, model = %s, terminal_id = %s,"
        " protocol = %s, registered = %s WHERE phone = %s RETURNING id",
        values,
    )
    if rows:
        return REGISTERED, code
    if not open_registration:
        return NO_TERMINAL, None
    yield db.run_operation(
        "INSERT INTO devices (auth_code, manufacturer, model, terminal_id, protocol,"
        " registered, phone, plate, plate_color) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (phone) DO NOTHING",
        (*values, _clean(plate, 32) or None, plate_color),
    )
    return REGISTERED, code


@defer.inlineCallbacks
def authenticate(db: Database, phone: str, code: str) -> Any:
    """The device if ``code`` is its auth code, else None."""
    rows = yield db.run_query(
        f"SELECT d.auth_code, {_COLUMNS}{_FROM} WHERE d.phone = %s",
        (canonical_phone(phone),),
    )
    if not rows or rows[0][0] is None:
        return None
    if not secrets.compare_digest(rows[0][0].encode(), code.strip("\x00 ").encode()):
        return None
    return _device(rows[0][1:])


@defer.inlineCallbacks
def open_session(
    db: Database,
    device_id: int,
    gateway_id: str,
    gateway_address: str,
    device_address: str,
    now: datetime,
) -> Any:
    rows = yield db.run_query(
        "INSERT INTO device_sessions (device_id, gateway_id, gateway_address, device_address,"
        " connected) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (device_id, gateway_id, gateway_address, device_address, now),
    )
    return rows[0][0]


def close_session(db: Database, session_id: int, now: datetime, reason: str) -> Any:
    return db.run_operation(
        "UPDATE device_sessions SET disconnected = %s, reason = %s"
        " WHERE id = %s AND disconnected IS NULL",
        (now, reason[:200], session_id),
    )


def close_gateway_sessions(db: Database, gateway_id: str, now: datetime, reason: str) -> Any:
    """Close what a previous run of this gateway left open (it crashed or was killed)."""
    return db.run_operation(
        "UPDATE device_sessions SET disconnected = %s, reason = %s"
        " WHERE gateway_id = %s AND disconnected IS NULL",
        (now, reason, gateway_id),
    )


# -- what users see ------------------------------------------------------------------------


@defer.inlineCallbacks
def list_devices(db: Database, user: User) -> Any:
    """Every device the user may see, by phone."""
    rows = yield db.run_query(f"{_SELECT} WHERE {VISIBLE} ORDER BY d.phone", who(user))
    return [_device(r) for r in rows]


@defer.inlineCallbacks
def get_device(db: Database, user: User, phone: str) -> Any:
    """The device with this (canonical) phone if the user may see it, else None."""
    rows = yield db.run_query(
        f"{_SELECT} WHERE d.phone = %(phone)s AND {VISIBLE}", who(user, phone=phone)
    )
    return _device(rows[0]) if rows else None


@defer.inlineCallbacks
def visible_devices(db: Database, user: User, phones: Iterable[str]) -> Any:
    """{phone: device id} of those of ``phones`` the user may see."""
    rows = yield db.run_query(
        f"SELECT d.phone, d.id FROM devices d WHERE d.phone = ANY(%(phones)s) AND {VISIBLE}",
        who(user, phones=list(phones)),
    )
    return dict(rows)


# -- cmsv6 device add ----------------------------------------------------------------------


def add_device(
    dsn: str, phone: str, plate: str | None = None, fleet: str | None = None, channels: int = 4
) -> str:
    """Add a device (or update its plate, fleet and channels); its canonical phone."""
    if not valid_phone(phone):
        raise AdminError(f"{phone!r} is not a terminal phone number (up to 20 digits)")
    if not 0 <= channels <= 64:
        raise AdminError("channels must be between 0 and 64")
    canonical = canonical_phone(phone)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        fleet_ref = fleet_id(cur, fleet)
        cur.execute(
            "INSERT INTO devices (phone, plate, fleet_id, channels) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (phone) DO UPDATE SET plate = coalesce(EXCLUDED.plate, devices.plate),"
            " fleet_id = coalesce(EXCLUDED.fleet_id, devices.fleet_id),"
            " channels = EXCLUDED.channels",
            (canonical, plate, fleet_ref, channels),
        )
    conn.close()
    return canonical
