"""Devices and their sessions: the gateway's and login's registration and
authentication, what users may see (in SQL, by fleet), and the ``cmsv6 device`` commands
(each audited).

A disabled device (``cmsv6 device disable``) is refused at registration and at
authentication, by login and gateway alike; its rows and history stay. A removed device
(``cmsv6 device remove``) is deleted with its history: positions, last position, alarms,
sessions and the rows of its media files (the files stay on disk); commands sent to it
stay, without the link, and the audit keeps its phone.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any, Iterable, Sequence

import psycopg2
from attrs import frozen
from twisted.internet import defer

from cmsv6.db.fleets import VISIBLE, fleet_id, who
from cmsv6.db.positions import LAST_POSITION, Position
from cmsv6.db.service import DEVICES_CHANNEL, AdminError, Database
from cmsv6.db.users import User, audit
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
    disabled: datetime | None = None  # ``cmsv6 device disable``: refused when it connects


_COLUMNS = (f"d.id, d.phone, d.plate, d.plate_color, f.name, d.channels, d.protocol,"
            f" {LAST_POSITION}, d.disabled")
_FROM = (
    " FROM devices d LEFT JOIN fleets f ON f.id = d.fleet_id"
    " LEFT JOIN last_positions lp ON lp.device_id = d.id"
)
_SELECT = f"SELECT {_COLUMNS}{_FROM}"
_FIELDS = 7


def _device(row: tuple[Any, ...]) -> Device:
    last = row[_FIELDS:_FIELDS + 11]
    return Device(*row[:_FIELDS], Position(*last) if last[0] is not None else None,
                  row[_FIELDS + 11])


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


# -- auth codes -----------------------------------------------------------------------------
#
# A device presents its code on every connect, so checking one must be cheap at fleet
# scale (a reconnect storm is thousands a second): a slow password hash such as scrypt
# would put the gateway's CPU, not the database, in charge of how fast a fleet comes back.
# It is not needed either: the codes we issue are random 128-bit strings (the ones from
# before issue 9, 64-bit), so there is no dictionary to try and a fast hash cannot be
# searched; a per-device random salt keeps one search from covering every device. What
# the table holds, SHA-256(salt || code), lets a copy of it authenticate nobody.


def new_auth_code() -> str:
    """A fresh auth code: 128 random bits as 32 hex digits."""
    return secrets.token_hex(16)


def hash_auth_code(code: str, salt: bytes) -> bytes:
    """What is stored of ``code``: SHA-256(salt || code) (as schema step 3 computes it)."""
    return hashlib.sha256(salt + code.encode("utf-8")).digest()


def _hashed(code: str) -> tuple[bytes, bytes]:
    """(salt, hash) for a new code."""
    salt = secrets.token_bytes(16)
    return salt, hash_auth_code(code, salt)


#: Advisory lock taken while open registration counts and adds (its bounds stay exact
#: with several gateways registering at once).
OPEN_REGISTRATION_LOCK = 0x636D737637


@frozen
class Registration:
    """What ``register`` decided: the 0x8100 result, the code (result 0), and why."""

    result: int
    auth_code: str | None = None
    reason: str = ""


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
    reregister: str = "never",
    open_per_hour: int | None = None,
    open_total: int | None = None,
) -> Any:
    """Register a terminal, in one transaction on a lookup thread (``run_lookup``): a
    ``Registration``.

    A known device without a code (never registered, or reset by ``reset_auth``) gets a
    new one and its metadata is recorded. A disabled device is refused with
    ``NO_TERMINAL`` and left untouched. A device that has a code is refused with
    ``TERMINAL_TAKEN`` and left untouched, unless ``reregister == "terminal_id"`` and the
    registration's terminal id is the one on record. An unknown phone is added only when
    registration is open and its bounds (devices added in the last hour, in all) allow.
    """
    code = new_auth_code()
    salt, digest = _hashed(code)
    canonical = canonical_phone(phone)
    tid = (_clean(terminal_id) or "").strip()
    meta = (_clean(manufacturer), _clean(model), tid or None, protocol, now)

    def txn(cur: Any) -> Registration:
        cur.execute(
            "SELECT id, auth_hash IS NOT NULL, terminal_id, disabled IS NOT NULL FROM devices"
            " WHERE phone = %s FOR UPDATE", (canonical,),
        )  # fmt: skip
        rows = cur.fetchall()
        if rows:
            device_id, has_code, known_tid, disabled = rows[0]
            if disabled:
                return Registration(NO_TERMINAL, reason="disabled (cmsv6 device enable)")
            if has_code:
                if reregister != "terminal_id":
                    return Registration(TERMINAL_TAKEN, reason="already registered")
                if not known_tid or not tid or known_tid.strip() != tid:
                    return Registration(TERMINAL_TAKEN,
                                        reason="already registered; terminal id differs")  # fmt: skip
            cur.execute(
                "UPDATE devices SET auth_salt = %s, auth_hash = %s, manufacturer = %s,"
                " model = %s, terminal_id = coalesce(%s, terminal_id), protocol = %s,"
                " registered = %s WHERE id = %s",
                (salt, digest, *meta, device_id),
            )
            _changed(cur, canonical)  # its old code, cached by any gateway, is void
            return Registration(REGISTERED, code, "re-registered" if has_code else "registered")
        if not open_registration:
            return Registration(NO_TERMINAL, reason="unknown terminal")
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (OPEN_REGISTRATION_LOCK,))
        cur.execute(
            "SELECT count(*) FILTER (WHERE created > %s - interval '1 hour'), count(*)"
            " FROM devices WHERE self_registered", (now,),
        )  # fmt: skip
        last_hour, total = cur.fetchone()
        if open_per_hour is not None and last_hour >= open_per_hour:
            return Registration(NO_TERMINAL, reason=f"open registration added {last_hour}"
                                f" devices in the last hour (open_per_hour)")  # fmt: skip
        if open_total is not None and total >= open_total:
            return Registration(NO_TERMINAL, reason=f"open registration added {total}"
                                " devices in all (open_total)")  # fmt: skip
        cur.execute(
            "INSERT INTO devices (auth_salt, auth_hash, manufacturer, model, terminal_id,"
            " protocol, registered, created, phone, plate, plate_color, self_registered)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, true)"
            " ON CONFLICT (phone) DO NOTHING RETURNING id",
            (salt, digest, *meta, now, canonical, _clean(plate, 32) or None, plate_color),
        )
        if not cur.fetchall():  # registered by another server meanwhile
            return Registration(TERMINAL_TAKEN, reason="already registered")
        return Registration(REGISTERED, code, "added by open registration")

    return db.run_lookup(txn)


@defer.inlineCallbacks
def authenticate(db: Database, phone: str, code: str) -> Any:
    """The device if ``code`` is its auth code and it is not disabled, else None."""
    found = yield check_auth_code(db, phone, code)
    return found if isinstance(found, Device) else None


#: Why ``check_auth_code`` refused: each a ``reason`` of the gateway's login failures.
AUTH_UNKNOWN = "unknown_device"  # no such phone
AUTH_DISABLED = "disabled"  # ``cmsv6 device disable``
AUTH_NOT_REGISTERED = "not_registered"  # it has no auth code: it must register first
AUTH_BAD_CODE = "bad_auth_code"


_AUTH_SELECT = (
    "SELECT d.auth_salt, d.auth_hash, d.disabled IS NOT NULL, d.id, d.phone, d.plate,"
    " d.plate_color, f.name, d.channels, d.protocol"
    " FROM devices d LEFT JOIN fleets f ON f.id = d.fleet_id WHERE d.phone = %s"
)


def _auth_row(cur: Any, phone: str) -> Any:
    cur.execute(_AUTH_SELECT, (phone,))
    return cur.fetchone()


def check_auth_code(db: Database, phone: str, code: str) -> defer.Deferred[Any]:
    """The device if ``code`` is its auth code and it is not disabled, else why not (one
    of the ``AUTH_`` reasons, for the metrics and the log; the device is told only
    "failed"). The device comes without its last position.

    A device that authenticated before is checked against the database's ``auth_cache``
    (``cmsv6.db.service.DeviceCache``) with no round trip: its code's salted hash is
    compared as the table's is. Anything else, a wrong code included, is read from the
    database on a lookup thread (``run_lookup``), and only a success is cached. A change
    of the device (``cmsv6 device disable``, ``remove``, ``reset-auth``, ``add``, a new
    registration) notifies every server (``_changed``), which drops its entry."""
    canonical = canonical_phone(phone)
    code = code.strip("\x00 ")
    cache = getattr(db, "auth_cache", None)
    since = 0
    if cache is not None:
        known = cache.get(canonical)
        if known is not None:
            salt, stored, device = known
            if secrets.compare_digest(stored, hash_auth_code(code, salt)):
                return defer.succeed(device)
            # Wrong, or changed elsewhere and not heard of yet: the database decides.
        since = cache.begin()
    lookup = getattr(db, "run_lookup", None)
    if lookup is not None:
        d = lookup(_auth_row, canonical)
    else:  # a database without lookup threads
        d = db.run_query(_AUTH_SELECT, (canonical,)).addCallback(lambda rows: rows[0] if rows else None)

    def checked(row: Any) -> Any:
        if row is None:
            return AUTH_UNKNOWN
        salt, stored, disabled = row[:3]
        if stored is None:
            return AUTH_NOT_REGISTERED
        salt, stored = bytes(salt), bytes(stored)
        if not secrets.compare_digest(stored, hash_auth_code(code, salt)):
            return AUTH_BAD_CODE
        if disabled:
            return AUTH_DISABLED
        device = Device(*row[3:], None)
        if cache is not None:
            cache.put(canonical, (salt, stored, device), since)
        return device

    return d.addCallback(checked)


def _changed(cur: Any, phone: str) -> None:
    """In a transaction that changes what authenticates as ``phone``: tell every server's
    auth cache, when it commits (``NOTIFY``; nothing if it rolls back)."""
    cur.execute("SELECT pg_notify(%s, %s)", (DEVICES_CHANNEL, phone))


#: Sessions recorded together: each takes its id from the sequence first, so the ids come
#: back in the order the sessions were given, whatever order the INSERT stores them in.
_OPEN_SESSIONS = """
WITH v AS (
    SELECT nextval('device_sessions_id_seq') AS id, d, a, c, n
    FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[]) WITH ORDINALITY AS u(d, a, c, n)
), stored AS (
    INSERT INTO device_sessions (id, device_id, gateway_id, gateway_address, device_address,
                                 connected)
    SELECT id, d, %s, %s, a, c FROM v
)
SELECT id FROM v ORDER BY n
"""


def open_sessions(
    db: Database,
    gateway_id: str,
    gateway_address: str,
    opened: Sequence[tuple[int, str, datetime]],
) -> defer.Deferred[list[int]]:
    """Record several sessions in one statement (one transaction, one commit): ``opened`` is
    (device id, device address, connected) of each; fires with their ids in that order."""
    d = db.run_query(_OPEN_SESSIONS, ([o[0] for o in opened], [o[1] for o in opened],
                                      [o[2] for o in opened], gateway_id, gateway_address))  # fmt: skip
    return d.addCallback(lambda rows: [r[0] for r in rows])


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
def list_devices(db: Database, user: User, limit: int, after: str = "") -> Any:
    """The devices the user may see, by phone: at most ``limit`` of them, after ``after``."""
    rows = yield db.run_query(
        f"{_SELECT} WHERE {VISIBLE} AND d.phone > %(after)s ORDER BY d.phone LIMIT %(limit)s",
        who(user, after=after, limit=limit),
    )
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


# -- the cmsv6 device commands -------------------------------------------------------------


def _phone(phone: str) -> str:
    """The canonical form of a phone given on the command line; AdminError if it is none."""
    if not valid_phone(phone):
        raise AdminError(f"{phone!r} is not a terminal phone number (up to 20 digits)")
    return canonical_phone(phone)


def add_device(
    dsn: str, phone: str, plate: str | None = None, fleet: str | None = None, channels: int = 4,
    terminal_id: str | None = None, *, create_fleet: bool = True, by: str | None = None,
) -> str:
    """Add a device (or update its plate, fleet, channels and terminal id); its canonical
    phone. The terminal id is what ``reregister = "terminal_id"`` compares a new
    registration of an already-registered phone with. A fleet that does not exist is
    made, or with ``create_fleet=False`` refused. With ``by`` (the command line's caller)
    the change is audited; the demo's and tests' setup is not."""
    canonical = _phone(phone)
    if not 0 <= channels <= 64:
        raise AdminError("channels must be between 0 and 64")
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            fleet_ref = fleet_id(cur, fleet, create=create_fleet)
            cur.execute(
                "INSERT INTO devices (phone, plate, fleet_id, channels, terminal_id)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (phone) DO UPDATE SET plate = coalesce(EXCLUDED.plate, devices.plate),"
                " fleet_id = coalesce(EXCLUDED.fleet_id, devices.fleet_id),"
                " channels = EXCLUDED.channels,"
                " terminal_id = coalesce(EXCLUDED.terminal_id, devices.terminal_id)"
                " RETURNING id, xmax = 0",
                (canonical, plate, fleet_ref, channels, _clean(terminal_id) or None),
            )
            device_id, created = cur.fetchone()
            if not created:
                _changed(cur, canonical)  # a cached device's plate, fleet, channels
            if by is not None:
                audit(cur, "device.add" if created else "device.update",
                      {"phone": canonical, "device": device_id, "plate": plate, "fleet": fleet,
                       "channels": channels, "terminal_id": terminal_id}, by)  # fmt: skip
    finally:
        conn.close()
    return canonical


def _change(dsn: str, phone: str, change: Any) -> Any:
    """Run ``change(cur, canonical phone, device id, disabled)`` in one transaction on the
    device with this phone (locked); AdminError if there is none."""
    canonical = _phone(phone)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, disabled FROM devices WHERE phone = %s FOR UPDATE", (canonical,))
            row = cur.fetchone()
            if row is None:
                raise AdminError(f"no device {canonical} (cmsv6 device list)")
            return change(cur, canonical, *row)
    finally:
        conn.close()


def reset_auth(dsn: str, phone: str, operator: str | None = None) -> str:
    """Forget a device's auth code so that its next registration is accepted (a unit
    re-registering after a factory reset), and audit it; its canonical phone. The device's
    open session goes on; its next authentication with the old code fails."""

    def change(cur: psycopg2.extensions.cursor, canonical: str, device_id: int, disabled: Any) -> str:
        cur.execute("UPDATE devices SET auth_salt = NULL, auth_hash = NULL WHERE id = %s",
                    (device_id,))  # fmt: skip
        _changed(cur, canonical)
        audit(cur, "device.reset_auth", {"phone": canonical, "device": device_id}, operator)
        return canonical

    return str(_change(dsn, phone, change))


def disable_device(dsn: str, phone: str, by: str | None = None) -> bool:
    """Disable a device (``cmsv6 device disable``): its registrations and authentications
    are refused from now on; audited. False if it was disabled already. A connection it
    has open goes on until it closes (the database does not reach into the gateways)."""

    def change(cur: psycopg2.extensions.cursor, canonical: str, device_id: int, disabled: Any) -> bool:
        if disabled is not None:
            return False
        cur.execute("UPDATE devices SET disabled = now() WHERE id = %s", (device_id,))
        _changed(cur, canonical)  # refused at once, cached or not
        audit(cur, "device.disable", {"phone": canonical, "device": device_id}, by)
        return True

    return bool(_change(dsn, phone, change))


def enable_device(dsn: str, phone: str, by: str | None = None) -> bool:
    """Let a disabled device authenticate again (``cmsv6 device enable``); audited. False
    if it was not disabled."""

    def change(cur: psycopg2.extensions.cursor, canonical: str, device_id: int, disabled: Any) -> bool:
        if disabled is None:
            return False
        cur.execute("UPDATE devices SET disabled = NULL WHERE id = %s", (device_id,))
        audit(cur, "device.enable", {"phone": canonical, "device": device_id}, by)
        return True

    return bool(_change(dsn, phone, change))


@frozen
class Removed:
    """What ``remove_device`` deleted, and whether the device looked connected."""

    phone: str
    positions: int
    alarms: int
    media_files: int
    connected: bool


def remove_device(dsn: str, phone: str, by: str | None = None) -> Removed:
    """Delete a device and its history (``cmsv6 device remove``), in one transaction;
    audited with what went. Positions have no foreign key (they are partitioned), so they
    are deleted here; the rest follows ``ON DELETE CASCADE``."""

    def change(cur: psycopg2.extensions.cursor, canonical: str, device_id: int, disabled: Any) -> Removed:
        cur.execute(
            "SELECT (SELECT count(*) FROM alarms WHERE device_id = %(d)s),"
            " (SELECT count(*) FROM media_files WHERE device_id = %(d)s),"
            " EXISTS (SELECT 1 FROM device_sessions WHERE device_id = %(d)s"
            "  AND disconnected IS NULL)", {"d": device_id},
        )  # fmt: skip
        alarms, media, connected = cur.fetchone()
        cur.execute("DELETE FROM positions WHERE device_id = %s", (device_id,))
        positions = int(cur.rowcount)
        cur.execute("DELETE FROM devices WHERE id = %s", (device_id,))
        _changed(cur, canonical)
        removed = Removed(canonical, positions, int(alarms), int(media), bool(connected))
        audit(cur, "device.remove", {"phone": canonical, "device": device_id,
                                     "positions": positions, "alarms": removed.alarms,
                                     "media_files": removed.media_files}, by)  # fmt: skip
        return removed

    result: Removed = _change(dsn, phone, change)
    return result


@frozen
class DeviceInfo:
    """What the database knows of a device, for ``cmsv6 device list`` and ``show``. Never
    its auth code: only whether it has one."""

    phone: str
    plate: str | None
    fleet: str | None
    channels: int
    disabled: datetime | None
    online: bool  # its last session is still open (as the gateways last told the database)
    gateway: str | None  # of its last session
    connected: datetime | None  # its last session's start
    disconnected: datetime | None  # its last session's end
    last_position: Position | None
    has_auth_code: bool
    protocol: int | None
    manufacturer: str | None
    model: str | None
    terminal_id: str | None
    registered: datetime | None
    self_registered: bool
    created: datetime
    open_alarms: int | None = None  # counted by ``device_info`` only
    alarms_last_7_days: int | None = None


_INFO_COLUMNS = (
    "d.phone, d.plate, f.name, d.channels, d.disabled, s.connected IS NOT NULL"
    " AND s.disconnected IS NULL, s.gateway_id, s.connected, s.disconnected, d.auth_hash IS NOT NULL,"
    " d.protocol, d.manufacturer, d.model, d.terminal_id, d.registered, d.self_registered,"
    f" d.created, {LAST_POSITION}"
)
_INFO_FROM = (
    " FROM devices d LEFT JOIN fleets f ON f.id = d.fleet_id"
    " LEFT JOIN last_positions lp ON lp.device_id = d.id"
    " LEFT JOIN LATERAL (SELECT gateway_id, connected, disconnected FROM device_sessions s"
    "  WHERE s.device_id = d.id ORDER BY s.connected DESC LIMIT 1) s ON true"
)


def _info(row: tuple[Any, ...], *more: Any) -> DeviceInfo:
    last = row[17:28]
    position = Position(*last) if last[0] is not None else None
    return DeviceInfo(*row[:9], position, *row[9:17], *more)  # type: ignore[misc]


def all_devices(dsn: str, fleet: str | None = None) -> list[DeviceInfo]:
    """Every device by phone (or those of ``fleet``; AdminError if there is no such fleet)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            if fleet is not None:
                fleet_id(cur, fleet, create=False)
            cur.execute(f"SELECT {_INFO_COLUMNS}{_INFO_FROM} WHERE %(fleet)s::text IS NULL OR f.name = %(fleet)s"
                        " ORDER BY d.phone", {"fleet": fleet})  # fmt: skip
            return [_info(row) for row in cur.fetchall()]
    finally:
        conn.close()


def device_info(dsn: str, phone: str) -> DeviceInfo:
    """Everything the database knows of one device, with its alarm counts."""
    canonical = _phone(phone)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT {_INFO_COLUMNS}, a.open, a.recent{_INFO_FROM},"
                " LATERAL (SELECT count(*) FILTER (WHERE a.ended IS NULL) AS open,"
                "  count(*) FILTER (WHERE a.created > now() - interval '7 days') AS recent"
                "  FROM alarms a WHERE a.device_id = d.id) a WHERE d.phone = %s", (canonical,),
            )  # fmt: skip
            row = cur.fetchone()
            if row is None:
                raise AdminError(f"no device {canonical} (cmsv6 device list)")
            return _info(row[:-2], *row[-2:])
    finally:
        conn.close()
