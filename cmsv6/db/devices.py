"""Devices and their sessions (SQL for the gateway and the login server)."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from attrs import frozen
from twisted.internet import defer

from cmsv6.db.service import Database
from cmsv6.phone import canonical_phone

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
    fleet_id: int | None
    channels: int
    auth_code: str | None


_COLUMNS = "id, phone, plate, plate_color, fleet_id, channels, auth_code"


def _device(row: tuple[Any, ...] | None) -> Device | None:
    return Device(*row) if row else None


@defer.inlineCallbacks
def find(db: Database, phone: str) -> Any:
    rows = yield db.run_query(
        f"SELECT {_COLUMNS} FROM devices WHERE phone = %s", (canonical_phone(phone),)
    )
    return _device(rows[0] if rows else None)


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
    device = yield find(db, phone)
    if device is None or device.auth_code is None:
        return None
    if not secrets.compare_digest(device.auth_code.encode(), code.strip("\x00 ").encode()):
        return None
    return device


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
