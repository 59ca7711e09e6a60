"""Administration from the command line (synchronous psycopg2): devices, users, fleets."""

from __future__ import annotations

import psycopg2

from cmsv6.passwords import hash_password
from cmsv6.phone import canonical_phone, valid_phone


class AdminError(Exception):
    pass


def _fleet_id(cur: psycopg2.extensions.cursor, fleet: str | None) -> int | None:
    if fleet is None:
        return None
    cur.execute(
        "INSERT INTO fleets (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
        " RETURNING id",
        (fleet,),
    )
    return int(cur.fetchone()[0])


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
        fleet_id = _fleet_id(cur, fleet)
        cur.execute(
            "INSERT INTO devices (phone, plate, fleet_id, channels) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (phone) DO UPDATE SET plate = coalesce(EXCLUDED.plate, devices.plate),"
            " fleet_id = coalesce(EXCLUDED.fleet_id, devices.fleet_id),"
            " channels = EXCLUDED.channels",
            (canonical, plate, fleet_id, channels),
        )
    conn.close()
    return canonical


def add_user(
    dsn: str, name: str, password: str, admin: bool = False, fleets: list[str] | None = None
) -> None:
    if not 1 <= len(name) <= 64:
        raise AdminError("user names are 1 to 64 characters")
    if len(password) < 8:
        raise AdminError("passwords must have at least 8 characters")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (name, password_hash, role) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
            " role = EXCLUDED.role RETURNING id",
            (name, hash_password(password), "admin" if admin else "operator"),
        )
        user_id = cur.fetchone()[0]
        for fleet in fleets or []:
            cur.execute(
                "INSERT INTO user_fleets (user_id, fleet_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, _fleet_id(cur, fleet)),
            )
    conn.close()
